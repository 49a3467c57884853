package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Legacy HTTP+SSE clients in front of servers that speak revision
// 2026-07-28: every operation gives through the gateway what a client of
// that revision gets from the server directly.

// statelessPair is a server of revision 2026-07-28 with its script and
// the client of that revision that reaches it directly.
type statelessPair struct {
	name   string
	script string
	start  func(t *testing.T) string // the server's URL
	direct func(t *testing.T, url, script string) []opResult
}

var statelessPairs = []statelessPair{
	{
		name:   "go-sdk-2026",
		script: "go-sdk-2026",
		start:  func(t *testing.T) string { return startStatelessGoServer(t).url },
		direct: func(t *testing.T, url, script string) []opResult {
			return runGoSDKClient(t, url, "streamable", script)
		},
	},
	{
		name:   "ts-sdk-v2-stateless",
		script: "ts-sdk-v2-stateless",
		start: func(t *testing.T) string {
			return "http://" + startNodeServer(t, "@modelcontextprotocol/server", "ts-sdk-v2-server.mjs", "reject") + "/mcp"
		},
		direct: func(t *testing.T, url, script string) []opResult {
			return runNodeDriver(t, interopDir, "@modelcontextprotocol/client", "ts-sdk-v2-client.mjs", url, "streamable", script)
		},
	},
}

// TestStatelessUpstreams runs the Go SDK and TypeScript SDK legacy
// clients through the gateway against each server of statelessPairs, and
// compares every operation with the server's own revision's client
// reaching it directly.
//
// With STATELESS_TABLE set, it writes their compatibility table to that
// file.
func TestStatelessUpstreams(t *testing.T) {
	table := newCompatTable()
	if path := os.Getenv("STATELESS_TABLE"); path != "" {
		t.Cleanup(func() {
			if err := os.WriteFile(path, []byte(table.markdown()), 0o644); err != nil {
				t.Errorf("writing the compatibility table: %v", err)
			}
		})
	}
	legacy := []interopClient{
		{name: "go-sdk", run: runGoSDKClient},
		{name: "ts-sdk", run: runTSSDKClient},
	}
	for _, pair := range statelessPairs {
		t.Run(pair.name, func(t *testing.T) {
			t.Parallel()
			script := scriptPath(t, pair.script)
			ops := loadScript(t, script)
			upstream := pair.start(t)
			direct := pair.direct(t, upstream, script)
			_, addr := startGatewayWith(t, upstream, "", "")
			for _, client := range legacy {
				t.Run(client.name, func(t *testing.T) {
					gateway := client.run(t, "http://"+addr+"/sse", "sse", script)
					if len(direct) != len(ops) || len(gateway) != len(ops) {
						t.Fatalf("%d operations, %d results directly, %d through the gateway", len(ops), len(direct), len(gateway))
					}
					for i, op := range ops {
						t.Logf("%s: directly %s; through the gateway %s", op.label(), describe(direct[i]), describe(gateway[i]))
						table.set(pair.name, client.name, i, judgeOp(t, pair.name+"/"+client.name, op, direct[i], gateway[i]))
					}
				})
			}
		})
	}
}

// TestStatelessUpstreamGateway checks, with the Go SDK's legacy client
// through the gateway in front of the Go SDK server in Stateless mode,
// what the revision has no operation of its own for: initialize, ping,
// logging/setLevel, list changes and cancellation, and what every
// request carries upstream.
func TestStatelessUpstreamGateway(t *testing.T) {
	up := startStatelessGoServer(t)
	_, addr := startGatewayWith(t, up.url, "", "")

	var mu sync.Mutex
	var logs []string
	listChanged := make(chan struct{}, 1)
	client := mcp.NewClient(&mcp.Implementation{Name: "legacy-client", Version: "2.0.0"}, &mcp.ClientOptions{
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			mu.Lock()
			logs = append(logs, string(req.Params.Level)+" "+req.Params.Data.(string))
			mu.Unlock()
		},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case listChanged <- struct{}{}:
			default:
			}
		},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: "http://" + addr + "/sse"}, nil)
	if err != nil {
		t.Fatalf("connecting through the gateway: %v", err)
	}
	defer cs.Close()

	t.Run("initialize", func(t *testing.T) {
		init := cs.InitializeResult()
		if init.ServerInfo == nil || init.ServerInfo.Name != "mcp-sse-demo" {
			t.Errorf("server info %+v, want the upstream's (mcp-sse-demo)", init.ServerInfo)
		}
		if init.ProtocolVersion != "2025-11-25" {
			t.Errorf("protocol version %q, want 2025-11-25, the version the client asked for", init.ProtocolVersion)
		}
		if init.Capabilities == nil || init.Capabilities.Tools == nil || init.Capabilities.Resources == nil || !init.Capabilities.Resources.Subscribe {
			t.Errorf("capabilities %+v, want the upstream's tools and subscribable resources", init.Capabilities)
		}
		if headers, _ := up.posts("initialize"); len(headers) != 0 {
			t.Errorf("%d initialize requests went upstream; the revision has none", len(headers))
		}
	})
	t.Run("ping", func(t *testing.T) {
		if err := cs.Ping(ctx, nil); err != nil {
			t.Errorf("ping: %v", err)
		}
	})
	t.Run("log level", func(t *testing.T) {
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "log"}); err != nil {
			t.Fatalf("calling log: %v", err)
		}
		if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
			t.Fatalf("setting the log level: %v", err)
		}
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "log"}); err != nil {
			t.Fatalf("calling log: %v", err)
		}
		// The SDK hands notifications to their handler on a goroutine
		// of its own: the log message may come after the call's result.
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			got := strings.Join(logs, "; ")
			mu.Unlock()
			if got == "info hello from the log tool" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("log messages %q, want one, for the call after the level was set", got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("list changed", func(t *testing.T) {
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "change"}); err != nil {
			t.Fatalf("calling change: %v", err)
		}
		select {
		case <-listChanged:
		case <-ctx.Done():
			t.Fatal("no notifications/tools/list_changed after the tool list changed")
		}
		tools, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(toolNames(tools), "added") {
			t.Errorf("tools %s, want the added one", toolNames(tools))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		callCtx, cancelCall := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := cs.CallTool(callCtx, &mcp.CallToolParams{Name: "wait"})
			done <- err
		}()
		// Once the upstream has the call, the client cancels it.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, bodies := up.posts("tools/call"); strings.Contains(strings.Join(bodies, ""), `"wait"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the call never reached the upstream")
			}
		}
		cancelCall()
		<-done
		select {
		case <-up.cancelled:
		case <-ctx.Done():
			t.Fatal("the upstream's call went on after the client cancelled it")
		}
	})
	t.Run("headers and meta", func(t *testing.T) {
		headers, bodies := up.posts("tools/call")
		if len(headers) == 0 {
			t.Fatal("no tools/call went upstream")
		}
		h := headers[0]
		if h.Get("Mcp-Protocol-Version") != "2026-07-28" || h.Get("Mcp-Name") == "" || h.Get("Mcp-Session-Id") != "" {
			t.Errorf("headers %v: want MCP-Protocol-Version 2026-07-28, Mcp-Name, no Mcp-Session-Id", h)
		}
		var req struct {
			Params struct {
				Meta map[string]json.RawMessage `json:"_meta"`
			} `json:"params"`
		}
		if err := json.Unmarshal([]byte(bodies[0]), &req); err != nil {
			t.Fatal(err)
		}
		var info mcp.Implementation
		_ = json.Unmarshal(req.Params.Meta["io.modelcontextprotocol/clientInfo"], &info)
		if string(req.Params.Meta["io.modelcontextprotocol/protocolVersion"]) != `"2026-07-28"` || info.Name != "legacy-client" ||
			req.Params.Meta["io.modelcontextprotocol/clientCapabilities"] == nil {
			t.Errorf("_meta %s: want the revision, the client's info and capabilities", bodies[0])
		}
	})
}

func toolNames(res *mcp.ListToolsResult) string {
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return strings.Join(names, ",")
}

// TestUpstreamProtocolSetting checks what upstream_protocol pins: sessions
// initialized upstream even in front of a server that offers 2026-07-28,
// and no session at all in front of one that does not.
func TestUpstreamProtocolSetting(t *testing.T) {
	t.Run("2025-11-25", func(t *testing.T) {
		up := startStatelessGoServer(t)
		_, addr := startGateway(t, up.url, "upstream_protocol 2025-11-25")
		cs := connect(t, "http://"+addr+"/sse", nil, nil)
		if got, err := callText(bounded(t), cs, "echo", map[string]any{"text": "pinned"}); err != nil || got != "pinned" {
			t.Fatalf("echo: %q, %v", got, err)
		}
		if h, _ := up.posts("initialize"); len(h) != 0 {
			t.Errorf("initialize went out with Mcp-Method; want the client's revision's request")
		}
		if h, _ := up.posts("server/discover"); len(h) != 0 {
			t.Errorf("%d server/discover requests went upstream; want none", len(h))
		}
		up.mu.Lock()
		first := up.bodies[0]
		up.mu.Unlock()
		if !strings.Contains(first, `"method":"initialize"`) {
			t.Errorf("the first upstream request was %s; want the client's initialize", first)
		}
	})
	t.Run("2026-07-28", func(t *testing.T) {
		up := newTestUpstream(t)
		_, addr := startGateway(t, up.URL, "upstream_protocol 2026-07-28")
		client := mcp.NewClient(&mcp.Implementation{Name: "pinned", Version: "1"}, nil)
		_, err := client.Connect(bounded(t), &mcp.SSEClientTransport{Endpoint: "http://" + addr + "/sse"}, nil)
		if err == nil || !strings.Contains(err.Error(), "does not offer protocol revision 2026-07-28") {
			t.Errorf("connecting in front of an upstream without 2026-07-28: %v; want the initialize refused with why", err)
		}
	})
}
