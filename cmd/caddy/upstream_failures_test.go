package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-sse/caddy-mcp-sse/cmd/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// rpcAnswer is a JSON-RPC message as a client reads it.
type rpcAnswer struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *errorObject    `json:"error"`
}

// awaitAnswer reads the stream until the response with the given id and
// returns it with the messages that came before it. It gives up after 10
// seconds by closing the stream.
func (s *rawStream) awaitAnswer(t *testing.T, id string) (rpcAnswer, []rpcAnswer) {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { s.resp.Body.Close() })
	defer timer.Stop()
	var before []rpcAnswer
	for {
		ev, err := s.nextMessage()
		if err != nil {
			t.Fatalf("waiting for the answer to %s, after %d messages: %v", id, len(before), err)
		}
		var m rpcAnswer
		if err := json.Unmarshal(ev.data, &m); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		if string(m.ID) == id && m.Method == "" {
			return m, before
		}
		before = append(before, m)
	}
}

// awaitPings reads the stream until n pings came, so that a test knows the
// stream lived on for n ping intervals.
func (s *rawStream) awaitPings(t *testing.T, n int) {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { s.resp.Body.Close() })
	defer timer.Stop()
	for n > 0 {
		ev, err := s.next()
		if err != nil {
			t.Fatalf("waiting for pings: %v", err)
		}
		if ev.comment == "ping" {
			n--
		}
	}
}

// TestFailingUpstreamAnswersTheRequest makes a real MCP server misbehave on
// one tool call in each way an upstream fails: the client gets a JSON-RPC
// error with the call's id on its stream, the gateway logs the cause once at
// warn however many pings pass, and the session goes on working.
func TestFailingUpstreamAnswersTheRequest(t *testing.T) {
	tests := []struct {
		name    string
		fail    http.HandlerFunc
		reason  string // logged
		message string // what the client reads
		partial bool   // a notification comes through before the failure
	}{
		{
			name:    "5xx",
			fail:    func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "overloaded", 503) },
			reason:  "status",
			message: "upstream answered 503 Service Unavailable",
		},
		{
			name: "HTML with 200",
			fail: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte("<html>a captive portal</html>"))
			},
			reason:  "not_mcp",
			message: errNotMCP.Error(),
		},
		{
			name: "JSON that is not JSON-RPC",
			fail: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"status":"ok"}`))
			},
			reason:  "not_mcp",
			message: errNotMCP.Error(),
		},
		{
			name:    "headers slower than upstream_timeout",
			fail:    func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			reason:  "timeout",
			message: errHeaderTimeout.Error(),
		},
		{
			name: "event stream cut mid-way",
			fail: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = w.Write([]byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"half way\"}}\n\ndata: {\"jsonrpc\":"))
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			},
			reason:  "broken",
			message: errBrokenAnswer.Error(),
			partial: true,
		},
		{
			name: "event stream ended without the response",
			fail: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = w.Write([]byte(": nothing to say\n\n"))
			},
			reason:  "no_response",
			message: errNoResponse.Error(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newTestUpstream(t)
			up.answerCalls("broken", tt.fail)
			logs, globals := newCaddyLog(t, "WARN", "http.handlers.mcp_sse")
			loadCaddyfileWith(t, globals, gatewaySite(up.URL, "upstream_timeout 1s\n\t\tping_interval 50ms"))
			stream := openRaw(t, nil, gatewayURL+"/sse", nil)
			if err := stream.initialize(http.DefaultClient, gatewayURL); err != nil {
				t.Fatal(err)
			}
			stream.post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
			stream.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"broken","arguments":{}}}`)

			answer, before := stream.awaitAnswer(t, "2")
			if answer.Error == nil || answer.Error.Code != codeInternalError || answer.Error.Message != tt.message {
				t.Errorf("answer %+v, want error %d %q", answer, codeInternalError, tt.message)
			}
			if tt.partial && (len(before) != 1 || before[0].Method != "notifications/message") {
				t.Errorf("before the error came %+v, want the notification sent before the cut", before)
			}

			stream.awaitPings(t, 3)
			var warns []logEntry
			for _, e := range logs.entries(t) {
				if e["level"] == "warn" {
					warns = append(warns, e)
				}
			}
			if len(warns) != 1 || warns[0]["msg"] != "upstream exchange failed" || warns[0]["reason"] != tt.reason {
				t.Errorf("warnings %v, want one upstream exchange failure with reason %q", warns, tt.reason)
			}

			stream.post(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"still here"}}}`)
			if answer, _ := stream.awaitAnswer(t, "3"); !strings.Contains(string(answer.Result), "still here") {
				t.Errorf("the next call got %+v, want its echo", answer)
			}
		})
	}
}

// restartableUpstream is the demo MCP server on a fixed address that a
// test can stop and start again, as a fresh process that knows no sessions.
type restartableUpstream struct {
	addr string
	srv  *httptest.Server
}

func (u *restartableUpstream) start(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", u.addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := demo.NewServer()
	u.srv = httptest.NewUnstartedServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	u.srv.Listener = l
	u.srv.Start()
}

func (u *restartableUpstream) stop() {
	u.srv.CloseClientConnections()
	u.srv.Close()
}

// TestUpstreamRestart stops the upstream under an open session and starts
// it again: a call made meanwhile gets a prompt JSON-RPC error; the next
// call after the restart succeeds, on an upstream session the gateway
// initialized again when the upstream answered 404 for the forgotten one.
func TestUpstreamRestart(t *testing.T) {
	up := &restartableUpstream{addr: freeAddr(t)}
	up.start(t)
	t.Cleanup(func() { up.stop() })
	logs, globals := newCaddyLog(t, "WARN", "http.handlers.mcp_sse")
	loadCaddyfileWith(t, globals, gatewaySite("http://"+up.addr+"/mcp", ""))
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	ctx := bounded(t)
	if _, err := callText(ctx, cs, "echo", map[string]any{"text": "before"}); err != nil {
		t.Fatal(err)
	}

	up.stop()
	if _, err := callText(ctx, cs, "echo", map[string]any{"text": "down"}); err == nil || !strings.Contains(err.Error(), errUnreachable.Error()) {
		t.Errorf("call while the upstream is down: %v, want %q", err, errUnreachable)
	}
	up.start(t)
	if got, err := callText(ctx, cs, "echo", map[string]any{"text": "after"}); err != nil || got != "after" {
		t.Errorf("call after the restart: %q, %v", got, err)
	}
	// The notifications/initialized of the session may still be on its
	// way when the upstream stops, and fail too; count the calls.
	failedCalls := 0
	for _, e := range logs.entries(t) {
		if e["msg"] == "upstream exchange failed" && e["method"] == "tools/call" {
			failedCalls++
		}
	}
	if failedCalls != 1 {
		t.Errorf("%d call failures logged, want one for the failed call: %v", failedCalls, logs.entries(t))
	}

	fresh := connect(t, gatewayURL+"/sse", nil, nil)
	if got, err := callText(ctx, fresh, "echo", map[string]any{"text": "new"}); err != nil || got != "new" {
		t.Errorf("a new session after the restart: %q, %v", got, err)
	}
}

// TestForgottenSessionIsNotSentAgain makes the upstream forget the
// session and come back stateless, as a server does that was redeployed
// without sessions: it answers 404 to the old Mcp-Session-Id and gives no
// new one. The gateway initializes again and resends the call without the
// stale ID, so the call succeeds.
func TestForgottenSessionIsNotSentAgain(t *testing.T) {
	up := newTestUpstream(t)
	stateless := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up.server }, &mcp.StreamableHTTPOptions{Stateless: true})
	var forgotten atomic.Value
	gate := func(w http.ResponseWriter, r *http.Request) *http.Request {
		stale, _ := forgotten.Load().(string)
		switch {
		case stale == "":
			return r
		case r.Header.Get(headerSessionID) == stale:
			http.Error(w, "session not found", http.StatusNotFound)
		default:
			stateless.ServeHTTP(w, r)
		}
		return nil
	}
	up.gate.Store(&gate)
	loadCaddyfile(t, gatewaySite(up.URL, "upstream_stream off"))
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	ctx := bounded(t)
	if _, err := callText(ctx, cs, "echo", map[string]any{"text": "before"}); err != nil {
		t.Fatal(err)
	}
	ids := up.upstreamSessions()
	if len(ids) != 1 {
		t.Fatalf("the upstream saw sessions %v, want one", ids)
	}
	for id := range ids {
		forgotten.Store(id)
	}
	if got, err := callText(ctx, cs, "echo", map[string]any{"text": "after"}); err != nil || got != "after" {
		t.Errorf("a call after the upstream forgot the session: %q, %v", got, err)
	}
}
