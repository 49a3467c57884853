package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The interop matrix: every client against every server, directly and
// through the gateway, operation by operation.

func init() {
	interopClients = append(interopClients, interopClient{name: "ts-sdk", run: runTSSDKClient})
}

// runTSSDKClient runs a script with the TypeScript SDK v1 client
// (testdata/interop/ts-sdk.mjs).
func runTSSDKClient(t *testing.T, url, transport, script string) []opResult {
	return runNodeDriver(t, interopDir, "@modelcontextprotocol/sdk", "ts-sdk.mjs", url, transport, script)
}

// knownDirectFailures are the operations that fail without the gateway,
// by "server/client/op" ("server/*/op": whatever the client), with the
// reason: the client's or the server's own failures. An operation that fails directly and is not listed here
// fails the test, and so does one listed here that passes directly.
var knownDirectFailures = map[string]string{
	"ts-sdk-v2/go-sdk/setLevel": goSDKNoEnvelope,
	"ts-sdk-v2/go-sdk/ping":     goSDKNoEnvelope,
	// The server's own revision's client reaches it directly, whatever
	// the client through the gateway ("*").
	"ts-sdk-v2-stateless/*/ping": noPingIn2026,
}

// noPingIn2026 is why the TypeScript SDK v2 client does not ping a server
// it speaks revision 2026-07-28 with: the revision has no ping, and the
// client refuses to send one. Legacy clients' pings through the gateway
// are answered by the gateway.
const noPingIn2026 = "revision 2026-07-28 has no ping; the TypeScript SDK v2 client refuses to send it"

// goSDKNoEnvelope is why the Go SDK client fails some requests to the
// TypeScript SDK v2 server directly (over Streamable HTTP): they agree on
// revision 2026-07-28 through server/discover, and then Ping and
// SetLoggingLevel of go-sdk v1.8.0, unlike its other calls, send no
// per-request _meta envelope, which the server rejects (-32602).
const goSDKNoEnvelope = "go-sdk v1.8.0 sends ping and logging/setLevel without the 2026-07-28 _meta envelope it negotiated; the server rejects them"

// TestInterop runs every client of interopClients against every server of
// interopServers, directly and through the gateway: each operation that
// works directly must work through the gateway, with an equal result.
// With INTEROP_TABLE set, it writes the compatibility table to that file.
func TestInterop(t *testing.T) {
	table := newCompatTable()
	if path := os.Getenv("INTEROP_TABLE"); path != "" {
		t.Cleanup(func() {
			if err := os.WriteFile(path, []byte(table.markdown()), 0o644); err != nil {
				t.Errorf("writing the compatibility table: %v", err)
			}
		})
	}
	for _, server := range interopServers {
		t.Run(server.name, func(t *testing.T) {
			t.Parallel()
			for _, client := range interopClients {
				t.Run(client.name, func(t *testing.T) {
					t.Parallel()
					runInteropPair(t, server, client, table)
				})
			}
		})
	}
}

// runInteropPair runs one client against one server, directly and
// through the gateway, and compares what each operation gave.
func runInteropPair(t *testing.T, server interopServer, client interopClient, table *compatTable) {
	compared := false
	t.Cleanup(func() {
		if !compared {
			why := "not compared: the test stopped first (see its log)"
			if t.Skipped() {
				why = "not run: a Node package is missing"
			}
			table.notRun(server.name, client.name, why)
		}
	})
	script := scriptPath(t, server.script)
	ops := loadScript(t, script)
	endpoints := server.start(t)
	var direct []opResult
	if endpoints.ownClient != nil {
		direct = endpoints.ownClient(t, endpoints.direct, script)
	} else {
		direct = client.run(t, endpoints.direct, endpoints.directTransport, script)
	}
	addr := startInteropGateway(t, endpoints.upstream, client)
	gateway := client.run(t, "http://"+addr+"/sse", "sse", script)
	if len(direct) != len(ops) || len(gateway) != len(ops) {
		t.Fatalf("%d operations in the script, %d results directly, %d through the gateway", len(ops), len(direct), len(gateway))
	}
	for i, op := range ops {
		t.Logf("%s: directly %s", op.label(), describe(direct[i]))
		table.set(server.name, client.name, i, judgeOp(t, server.name+"/"+client.name, op, direct[i], gateway[i]))
	}
	compared = true
}

// startInteropGateway starts the gateway in front of upstream for a run
// of client through it, and returns its address: the built Caddy as
// startGateway runs it, with what the client needs of it.
func startInteropGateway(t *testing.T, upstream string, client interopClient) string {
	subdirectives, site := "", ""
	if client.gateway != nil {
		subdirectives, site = client.gateway(t)
	}
	_, addr := startGatewayWith(t, upstream, subdirectives, site)
	return addr
}

// judgeOp compares what one operation gave directly and through the
// gateway, fails the test for a gateway failure or an unlisted direct
// failure, and returns the operation's cell in the compatibility table.
func judgeOp(t *testing.T, pair string, op interopOp, direct, gateway opResult) string {
	t.Helper()
	label := op.label()
	if direct.Op != label || gateway.Op != label {
		t.Errorf("%s: results for %q directly and %q through the gateway", label, direct.Op, gateway.Op)
		return "**results out of order**"
	}
	reason, known := knownDirectFailures[pair+"/"+label]
	if server, _, _ := strings.Cut(pair, "/"); !known {
		reason, known = knownDirectFailures[server+"/*/"+label]
	}
	if gap, ok := knownClientGaps[pair+"/"+label]; ok {
		if equal, _ := sameResult(direct.Result, gateway.Result, op.Redact); direct.OK && gateway.OK && equal {
			t.Errorf("%s is listed in knownClientGaps (%s) but passes through the gateway: take it off the list", label, gap)
		}
		t.Logf("%s: the client cannot, %s; through the gateway: %s", label, gap, describe(gateway))
		return "the client cannot (" + gap + ")"
	}
	switch {
	case gateway.Skipped != "" && direct.Skipped == "":
		t.Errorf("%s: the client cannot do it through the gateway (%s), but can directly", label, gateway.Skipped)
		return "**cannot through the gateway**"
	case gateway.Skipped != "":
		return "n/a (" + gateway.Skipped + ")"
	case direct.Skipped != "":
		// Some clients reach a server only through the gateway (a page on
		// another origin, and a server without CORS).
		t.Logf("%s: the client cannot do it directly (%s); through the gateway: %s", label, direct.Skipped, describe(gateway))
		if !gateway.OK {
			return "n/a (" + direct.Skipped + "); fails through the gateway too"
		}
		return "n/a directly (" + direct.Skipped + "); works through the gateway"
	case !direct.OK:
		if !known {
			t.Errorf("%s fails directly, without the gateway: %s\n(if that is the client's or the server's own failure, list it in knownDirectFailures with the reason)", label, direct.Error)
			return "**fails directly, unexplained**"
		}
		t.Logf("%s fails directly, %s: %s; through the gateway: %s", label, reason, direct.Error, describe(gateway))
		if gateway.OK {
			return "fails directly (" + reason + "), passes through the gateway"
		}
		return "fails directly too (" + reason + ")"
	case known:
		t.Errorf("%s is listed in knownDirectFailures (%s) but passes directly: take it off the list", label, reason)
	}
	if !gateway.OK {
		t.Errorf("gateway failure: %s passes directly, fails through the gateway: %s", label, gateway.Error)
		return "**fails through the gateway**"
	}
	equal, err := sameResult(direct.Result, gateway.Result, op.Redact)
	if err != nil {
		t.Errorf("%s: %v", label, err)
		return "**unreadable result**"
	}
	if !equal {
		t.Errorf("gateway failure: %s gives another result through the gateway:\ndirect:  %s\ngateway: %s", label, direct.Result, gateway.Result)
		return "**differs through the gateway**"
	}
	return "pass"
}

// sameResult reports whether two results are equal as JSON values once
// the parts that redact matches are replaced in both.
func sameResult(a, b json.RawMessage, redact []string) (bool, error) {
	for _, pattern := range redact {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return false, fmt.Errorf("redact pattern %q: %w", pattern, err)
		}
		a = re.ReplaceAll(a, []byte("(redacted)"))
		b = re.ReplaceAll(b, []byte("(redacted)"))
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		return false, fmt.Errorf("result %s: %w", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		return false, fmt.Errorf("result %s: %w", b, err)
	}
	return reflect.DeepEqual(va, vb), nil
}

// summary is the operation as the table names it: its label, and what
// it completes.
func (op interopOp) summary() string {
	if op.Op != "complete" {
		return op.label()
	}
	return fmt.Sprintf("complete %v %v", cmp.Or(op.Ref["name"], op.Ref["uri"]), op.Argument["name"])
}

// describe is a result as the test log shows it.
func describe(r opResult) string {
	if r.OK {
		return "ok, " + string(r.Result)
	}
	return "error, " + r.Error
}

// compatTable is what each operation gave each client with each server,
// as cells of the compatibility table; safe for concurrent use.
type compatTable struct {
	mu    sync.Mutex
	cells map[compatCell]string
	// pairs that did not run, with why
	notRunPairs map[[2]string]string
}

// compatCell names a cell: a server, a client, and the index of an
// operation in the server's script (labels need not be unique).
type compatCell struct {
	server, client string
	op             int
}

func newCompatTable() *compatTable {
	return &compatTable{cells: map[compatCell]string{}, notRunPairs: map[[2]string]string{}}
}

func (c *compatTable) set(server, client string, op int, cell string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cells[compatCell{server, client, op}] = cell
}

func (c *compatTable) notRun(server, client, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notRunPairs[[2]string{server, client}] = why
}

// markdown is the table: a section per server, a row per operation of its
// script, a column per client.
func (c *compatTable) markdown() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	b.WriteString("# Interop: each client directly and through mcp_sse\n\n")
	b.WriteString("pass: works through the gateway as it does directly. fails directly too: the client or the server fails without the gateway as well. n/a: the client cannot do it.\n")
	for _, server := range interopServers {
		fmt.Fprintf(&b, "\n## %s\n\n| operation |", server.name)
		for _, client := range interopClients {
			fmt.Fprintf(&b, " %s |", client.name)
		}
		b.WriteString("\n|---|")
		for range interopClients {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		ops, err := os.ReadFile(scriptFile(server.script))
		var script []interopOp
		if err == nil {
			err = json.Unmarshal(ops, &script)
		}
		if err != nil {
			fmt.Fprintf(&b, "| (script unreadable: %v) |\n", err)
			continue
		}
		for i, op := range script {
			fmt.Fprintf(&b, "| `%s` |", op.summary())
			for _, client := range interopClients {
				cell, ok := c.cells[compatCell{server.name, client.name, i}]
				if !ok {
					cell = cmp.Or(c.notRunPairs[[2]string{server.name, client.name}], "not run")
				}
				fmt.Fprintf(&b, " %s |", strings.ReplaceAll(cell, "|", "\\|"))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
