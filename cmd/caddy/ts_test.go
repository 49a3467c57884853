package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// nodeCommand is a command that runs a script of testdata/tsclient
// (installed by `npm ci`), which uses the official TypeScript SDK. Outside
// CI a machine without node or the package skips the test; in CI that is
// a failure.
func nodeCommand(t *testing.T, script string, args ...string) *exec.Cmd {
	t.Helper()
	node := interopNode(t, "testdata/tsclient", "@modelcontextprotocol/sdk")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = "testdata/tsclient"
	cmd.Stderr = os.Stderr
	return cmd
}

// runNode runs a script as nodeCommand has it and returns what it printed.
func runNode(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	stdout, err := nodeCommand(t, script, args...).Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stdout)
	}
	return stdout
}

// TestTypeScriptClient drives the gateway with the official TypeScript
// SDK's SSEClientTransport.
func TestTypeScriptClient(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	checkTSClientRun(t, runNode(t, "client.mjs", gatewayURL+"/sse"), "ts answers: ping?")
}

// checkTSClientRun checks what testdata/tsclient/client.mjs printed: the
// server and its tools, its add, its countdown with progress 1, 2, 3, the
// sampling answer sampled, and its 20 echoes in order.
func checkTSClientRun(t *testing.T, stdout []byte, sampled string) {
	t.Helper()
	var got struct {
		Server    string
		Tools     []string
		Add       string
		Countdown string
		Progress  []float64
		Sampled   string
		Echoes    []string
	}
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("client output %q: %v", stdout, err)
	}
	if got.Server != "mcp-sse-demo" || !slices.Contains(got.Tools, "countdown") {
		t.Errorf("server %q with tools %v", got.Server, got.Tools)
	}
	if got.Add != "42" {
		t.Errorf("add = %q, want 42", got.Add)
	}
	if got.Countdown != "liftoff" || !slices.Equal(got.Progress, []float64{1, 2, 3}) {
		t.Errorf("countdown = %q with progress %v, want liftoff after 1, 2, 3", got.Countdown, got.Progress)
	}
	if got.Sampled != sampled {
		t.Errorf("sampling answer = %q, want %q", got.Sampled, sampled)
	}
	if len(got.Echoes) != 20 {
		t.Errorf("%d echoes, want 20", len(got.Echoes))
	}
	for i, e := range got.Echoes {
		if want := fmt.Sprintf("e%d", i); e != want {
			t.Errorf("echo %d = %q, want %q", i, e, want)
		}
	}
}
