package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The interop suite's parts: third-party MCP servers put behind the
// gateway, third-party MCP clients put in front of it, and the script of
// operations each client runs against each server, once directly and once
// through the gateway. testdata/interop/README.md describes the protocol
// between the Go side and the client drivers.

// interopServer is an MCP server the suite runs.
type interopServer struct {
	// name names the server in test names and the compatibility table.
	name string
	// start runs the server for one test, bound to 127.0.0.1, and stops
	// it at the test's end.
	start func(t *testing.T) interopEndpoints
	// script is what a client does with the server: its name in
	// testdata/interop/scripts, without .json.
	script string
}

// interopEndpoints are the URLs of a running server.
type interopEndpoints struct {
	// upstream is its Streamable HTTP endpoint, which the gateway
	// bridges to.
	upstream string
	// direct is what a client reaches it on without the gateway: its own
	// legacy SSE endpoint (directTransport "sse"), or its Streamable HTTP
	// endpoint (directTransport "streamable") for a server without one.
	direct          string
	directTransport string
	// ownClient, if set, is the client that reaches the server directly
	// in place of the client the suite runs through the gateway: the
	// client of revision 2026-07-28, for a server that speaks no
	// revision a legacy client can.
	ownClient func(t *testing.T, url, script string) []opResult
}

// interopClient is an MCP client the suite drives.
type interopClient struct {
	// name names the client in test names and the compatibility table.
	name string
	// run connects to url with transport ("sse" or "streamable"), runs
	// the script (the absolute path of its JSON file), and returns what
	// each operation gave, one result per operation in script order.
	run func(t *testing.T, url, transport, script string) []opResult
	// gateway, if set, says what the client needs of the gateway for the
	// run through it, called with that run's test before the gateway
	// starts: subdirectives for its mcp_sse block, directives for its
	// site (a page to serve).
	gateway func(t *testing.T) (subdirectives, site string)
}

// opResult is what one operation of a script gave a client: the
// normalized result on success, the error's text on failure.
type opResult struct {
	Op     string          `json:"op"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	// Skipped says why the client cannot do the operation at all.
	Skipped string `json:"skipped,omitempty"`
}

// interopClients are the clients the suite drives; each interop_*_test.go
// file that has a client adds it in an init function.
var interopClients []interopClient

// interopOp is one operation of a script, with the fields of every kind
// of operation (testdata/interop/README.md).
type interopOp struct {
	Op        string         `json:"op"`
	Name      string         `json:"name,omitempty"`
	URI       string         `json:"uri,omitempty"`
	Arguments map[string]any `json:"arguments,omitempty"`
	Progress  bool           `json:"progress,omitempty"`
	Level     string         `json:"level,omitempty"`
	Ref       map[string]any `json:"ref,omitempty"`
	Argument  map[string]any `json:"argument,omitempty"`
	// Redact are regular expressions for the parts of the result that
	// differ from one session to the next (a session ID, a time); the
	// comparison replaces them before it compares. Drivers ignore it.
	Redact []string `json:"redact,omitempty"`
}

// label is the operation's name in the output: op, and its name or uri.
func (op interopOp) label() string {
	switch {
	case op.Name != "":
		return op.Op + " " + op.Name
	case op.URI != "":
		return op.Op + " " + op.URI
	}
	return op.Op
}

// interopDir is the npm package of the suite's Node parts.
const interopDir = "testdata/interop"

// scriptFile is the path of the script named name, relative to the
// package.
func scriptFile(name string) string {
	return filepath.Join(interopDir, "scripts", name+".json")
}

// scriptPath is the absolute path of the script named name.
func scriptPath(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(scriptFile(name))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// loadScript reads the script at path.
func loadScript(t *testing.T, path string) []interopOp {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ops []interopOp
	if err := json.Unmarshal(data, &ops); err != nil {
		t.Fatalf("script %s: %v", path, err)
	}
	return ops
}

// partMissing skips a test for a part of the suite that is not installed
// (a Node package, chromium), or fails it in CI, where every part must be.
func partMissing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// interopNode returns the path of node, after checking that the npm
// package in dir has installed pkg (`npm ci --prefix dir`). Outside CI a
// machine without either skips the test; in CI that is a failure.
func interopNode(t *testing.T, dir, pkg string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json"))
	}
	if err != nil {
		partMissing(t, fmt.Sprintf("%s cannot run: %v (run npm ci --prefix cmd/caddy/%s)", pkg, err, dir))
	}
	return node
}

// driverTimeout bounds one run of a client driver over a whole script.
const driverTimeout = 60 * time.Second

// runNodeDriver runs a Node client driver, `node <dir>/<driver> <url>
// <transport> <script>`, and returns what it printed. A driver that
// cannot run the script at all (it exits non-zero, prints no results, or
// outlives driverTimeout) fails every operation with what it said.
func runNodeDriver(t *testing.T, dir, pkg, driver, url, transport, script string) []opResult {
	t.Helper()
	node := interopNode(t, dir, pkg)
	ctx, cancel := context.WithTimeout(t.Context(), driverTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, driver, url, transport, script)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var results []opResult
	if err == nil {
		err = json.Unmarshal(stdout.Bytes(), &results)
	}
	if err != nil {
		return failAll(loadScript(t, script), fmt.Errorf("%s: %v\nstdout: %s\nstderr: %s", driver, err, stdout.Bytes(), stderr.Bytes()))
	}
	return results
}

// failAll is the results of a script that could not run at all.
func failAll(ops []interopOp, err error) []opResult {
	out := make([]opResult, len(ops))
	for i, op := range ops {
		out[i] = opResult{Op: op.label(), Error: err.Error()}
	}
	return out
}
