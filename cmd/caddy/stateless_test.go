package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Legacy HTTP+SSE clients in front of servers that speak revision
// 2026-07-28, beyond what the interop suite's scripts do with them
// (go-sdk-2026 and ts-sdk-v2-stateless in interopServers).

// TestStatelessUpstreamGateway checks, with the Go SDK's legacy client
// through the gateway in front of the Go SDK server in Stateless mode,
// what the revision has no operation of its own for: initialize, ping,
// logging/setLevel, list changes and cancellation, and what every
// request carries upstream.
func TestStatelessUpstreamGateway(t *testing.T) {
	up := startStatelessGoServer(t)
	_, addr := startGatewayWith(t, up.url, "", "")

	logs := make(chan string, 8)
	listChanged := make(chan struct{}, 1)
	client := mcp.NewClient(&mcp.Implementation{Name: "legacy-client", Version: "2.0.0"}, &mcp.ClientOptions{
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			logs <- string(req.Params.Level) + " " + req.Params.Data.(string)
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
	t.Run("param headers unlearned", func(t *testing.T) {
		// No tools/list yet: the upstream refuses the call without its
		// Mcp-Param-Region header, and the gateway learns the tools and
		// calls again.
		if got, err := callText(ctx, cs, "region", map[string]any{"region": "eu-west", "text": "first"}); err != nil || got != "eu-west:first" {
			t.Fatalf("region before any tools/list: %q, %v", got, err)
		}
		if h, _ := up.posts("tools/list"); len(h) != 1 {
			t.Errorf("%d tools/list went upstream; want the gateway's one", len(h))
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
		err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "loud"})
		if rpcErr, ok := errors.AsType[*jsonrpc.Error](err); !ok || rpcErr.Code != -32602 {
			t.Errorf("setting the log level loud: %v; want -32602", err)
		}
		if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
			t.Fatalf("setting the log level: %v", err)
		}
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "log"}); err != nil {
			t.Fatalf("calling log: %v", err)
		}
		// The SDK hands notifications to their handler on a goroutine
		// of its own: the log message may come after the call's result.
		select {
		case got := <-logs:
			if got != "info hello from the log tool" {
				t.Errorf("log message %q, want the tool's at info", got)
			}
		case <-ctx.Done():
			t.Fatal("no log message for the call after the level was set")
		}
		if len(logs) != 0 {
			t.Errorf("%d more log messages; want none for the call before the level was set", len(logs))
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
		checkCancel(t, ctx, cs, up)
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

// TestStatelessSubscribeUnsupported subscribes, through the gateway, to a
// resource of a server of revision 2026-07-28 that takes no subscriptions
// (the TypeScript SDK v2 server in its default mode): the client gets
// -32601, as from a 2025 server without the capability, not a silent
// success.
func TestStatelessSubscribeUnsupported(t *testing.T) {
	up := "http://" + startNodeServer(t, "@modelcontextprotocol/server", "ts-sdk-v2-server.mjs") + "/mcp"
	_, addr := startGateway(t, up, "")
	cs := connect(t, "http://"+addr+"/sse", nil, nil)
	err := cs.Subscribe(bounded(t), &mcp.SubscribeParams{URI: "interop://greeting"})
	if rpcErr, ok := errors.AsType[*jsonrpc.Error](err); !ok || rpcErr.Code != -32601 {
		t.Errorf("subscribe: %v; want -32601, the upstream takes no subscriptions", err)
	}
}

// TestStatelessRetryRefused: a protected upstream refuses the retry of a
// call that asked for input (the token expired meanwhile). The POST that
// brought the call was answered long before, so the client gets a
// JSON-RPC error for the call rather than waiting for ever.
func TestStatelessRetryRefused(t *testing.T) {
	const token = "Bearer expires-during-the-call"
	up := startStatelessGoServerWith(t, token)
	_, addr := startGateway(t, up.url, "")
	cs := connect(t, "http://"+addr+"/sse", &mcp.ClientOptions{CreateMessageHandler: answerSampling},
		&http.Client{Transport: headerTransport{"Authorization": token}})
	_, err := callText(bounded(t), cs, "sample", map[string]any{})
	if rpcErr, ok := errors.AsType[*jsonrpc.Error](err); !ok || !strings.Contains(rpcErr.Message, "401") {
		t.Errorf("sample with its retry refused: %v; want a JSON-RPC error naming the 401", err)
	}
}

// TestStatelessListChangedTS: the TypeScript SDK v2 server in reject mode
// says its tool list changed (on its subscriptions/listen streams only);
// the legacy client through the gateway gets notifications/tools/list_changed.
func TestStatelessListChangedTS(t *testing.T) {
	up := "http://" + startNodeServer(t, "@modelcontextprotocol/server", "ts-sdk-v2-server.mjs", "reject") + "/mcp"
	_, addr := startGateway(t, up, "")
	changed := make(chan struct{}, 1)
	cs := connect(t, "http://"+addr+"/sse", &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
	}, nil)
	ctx := bounded(t)
	if got, err := callText(ctx, cs, "change", map[string]any{}); err != nil || got != "changed" {
		t.Fatalf("change: %q, %v", got, err)
	}
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("no notifications/tools/list_changed through the gateway")
	}
}

// TestDiscoverFailureFallsBack: an upstream of an earlier revision that
// fails on server/discover (500) still gets its sessions initialized, as
// before the gateway asked.
func TestDiscoverFailureFallsBack(t *testing.T) {
	up := newTestUpstream(t)
	gate := func(w http.ResponseWriter, r *http.Request) *http.Request {
		if r.Header.Get("Mcp-Method") == "server/discover" {
			http.Error(w, "unknown method", http.StatusInternalServerError)
			return nil
		}
		return r
	}
	up.gate.Store(&gate)
	_, addr := startGateway(t, up.URL, "")
	cs := connect(t, "http://"+addr+"/sse", nil, nil)
	if got, err := callText(bounded(t), cs, "echo", map[string]any{"text": "still"}); err != nil || got != "still" {
		t.Fatalf("echo in front of an upstream that fails server/discover: %q, %v", got, err)
	}
}
