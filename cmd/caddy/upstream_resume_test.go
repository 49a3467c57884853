package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Upstream streams that break off or end early are resumed with
// Last-Event-ID, as 2025-11-25 servers expect of their clients: the client
// of the gateway loses nothing and gets nothing twice.

// recordLastEventIDs makes the upstream record the Last-Event-ID of every
// GET it gets, "" for none.
func recordLastEventIDs(u *testUpstream) func() []string {
	var mu sync.Mutex
	var ids []string
	gate := func(_ http.ResponseWriter, r *http.Request) *http.Request {
		if r.Method == http.MethodGet {
			mu.Lock()
			ids = append(ids, r.Header.Get("Last-Event-ID"))
			mu.Unlock()
		}
		return r
	}
	u.gate.Store(&gate)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), ids...)
	}
}

// openInitializedStream is openInitialized at the root, for a test.
func openInitializedStream(t *testing.T) *rawStream {
	t.Helper()
	s, err := openInitialized(http.DefaultClient, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.resp.Body.Close() })
	return s
}

// nextJSON reads the next message event of s and decodes it.
func nextJSON(t *testing.T, s *rawStream) map[string]any {
	t.Helper()
	ev, err := s.nextMessage()
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(ev.data, &m); err != nil {
		t.Fatalf("message %q: %v", ev.data, err)
	}
	return m
}

// resultText is the text of a tools/call response, or fails the test.
func resultText(t *testing.T, m map[string]any) string {
	t.Helper()
	result, _ := m["result"].(map[string]any)
	content, _ := result["content"].([]any)
	if len(content) != 1 || result["isError"] == true {
		t.Fatalf("want a tool result, got %v", m)
	}
	text, _ := content[0].(map[string]any)["text"].(string)
	return text
}

func textResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}

func TestUpstreamAnswerThatBrokeOffIsResumed(t *testing.T) {
	up := newResumableTestUpstream(t)
	reached, proceed := make(chan struct{}), make(chan struct{})
	mcp.AddTool(up.server, &mcp.Tool{Name: "outlast"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			token := req.Params.GetProgressToken()
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 1}); err != nil {
				return nil, nil, err
			}
			close(reached)
			select {
			case <-proceed:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 2}); err != nil {
				return nil, nil, err
			}
			return textResult("outlasted"), nil, nil
		})
	lastEventIDs := recordLastEventIDs(up)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	const resumes = "caddy_mcp_sse_upstream_answers_resumed_total"
	before := scrape(t, adminURL+"/metrics")[resumes]
	s := openInitializedStream(t)

	s.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"outlast","arguments":{},"_meta":{"progressToken":"p"}}}`)
	select {
	case <-reached:
	case <-bounded(t).Done():
		t.Fatal("the call never reached the tool")
	}
	if m := nextJSON(t, s); m["method"] != "notifications/progress" {
		t.Fatalf("want the first progress, got %v", m)
	}
	// Whatever stood between them (a proxy that timed out, say) cut the
	// upstream's answer, and its GET stream with it.
	up.CloseClientConnections()
	close(proceed)

	m := nextJSON(t, s)
	if params, _ := m["params"].(map[string]any); m["method"] != "notifications/progress" || params["progress"] != 2.0 {
		t.Fatalf("after the cut, want the second progress and nothing twice, got %v", m)
	}
	if text := resultText(t, nextJSON(t, s)); text != "outlasted" {
		t.Errorf("result %q", text)
	}
	if !hasResumption(lastEventIDs()) {
		t.Errorf("GETs with Last-Event-ID %q, want one that resumed the answer", lastEventIDs())
	}
	if after := scrape(t, adminURL+"/metrics")[resumes]; after != before+1 {
		t.Errorf("%s went from %v to %v, want one more", resumes, before, after)
	}
}

// hasResumption reports whether one of the Last-Event-IDs resumed a stream.
func hasResumption(ids []string) bool {
	for _, id := range ids {
		if id != "" {
			return true
		}
	}
	return false
}

func TestUpstreamClosingItsAnswerEarlyIsFollowed(t *testing.T) {
	up := newResumableTestUpstream(t)
	mcp.AddTool(up.server, &mcp.Tool{Name: "poll"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			// The 2025-11-25 way to free a connection during a long
			// call: close the stream, tell the client when to come back.
			req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 20 * time.Millisecond})
			return textResult("polled"), nil, nil
		})
	lastEventIDs := recordLastEventIDs(up)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	s := openInitializedStream(t)

	s.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"poll","arguments":{}}}`)
	if text := resultText(t, nextJSON(t, s)); text != "polled" {
		t.Errorf("result %q", text)
	}
	if !hasResumption(lastEventIDs()) {
		t.Errorf("GETs with Last-Event-ID %q, want one that resumed the answer", lastEventIDs())
	}
}

func TestUpstreamGETStreamResumesAfterItsLastEvent(t *testing.T) {
	up := newResumableTestUpstream(t)
	lastEventIDs := recordLastEventIDs(up)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	s := openInitializedStream(t)
	select {
	case <-up.listened:
	case <-bounded(t).Done():
		t.Fatal("the gateway never opened the upstream's GET stream")
	}
	noop := func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return textResult(""), nil, nil
	}
	mcp.AddTool(up.server, &mcp.Tool{Name: "first"}, noop)
	if m := nextJSON(t, s); m["method"] != "notifications/tools/list_changed" {
		t.Fatalf("want tools/list_changed, got %v", m)
	}

	up.CloseClientConnections()
	mcp.AddTool(up.server, &mcp.Tool{Name: "second"}, noop)
	if m := nextJSON(t, s); m["method"] != "notifications/tools/list_changed" {
		t.Fatalf("want the second tools/list_changed, got %v", m)
	}
	// Anything resent would come before the answer to a request sent now.
	s.post(t, `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	for {
		m := nextJSON(t, s)
		if m["id"] == 3.0 {
			break
		}
		t.Errorf("after the second notification, got %v", m)
	}
	ids := lastEventIDs()
	if len(ids) < 2 || ids[0] != "" || !strings.HasSuffix(ids[len(ids)-1], "_0") {
		t.Errorf("GETs with Last-Event-ID %q, want the first without, a later one after event _0", ids)
	}
}

// TestResumingGivesUpWithoutProgress checks the bound on resumptions: an
// upstream that gives its answer an event id and then keeps ending the
// stream without sending anything more is asked 5 times, and the client
// gets the JSON-RPC error of an answer without a response.
func TestResumingGivesUpWithoutProgress(t *testing.T) {
	up := newTestUpstream(t)
	var resumes atomic.Int64
	up.answerCalls("stall", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "id: stall_0\nretry: 10\ndata: \n\n")
	})
	gate := func(w http.ResponseWriter, r *http.Request) *http.Request {
		if r.Method != http.MethodGet || r.Header.Get("Last-Event-ID") != "stall_0" {
			return r
		}
		resumes.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		return nil // the stream ends at once, with nothing new
	}
	up.gate.Store(&gate)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	s := openInitializedStream(t)

	s.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"stall","arguments":{}}}`)
	m := nextJSON(t, s)
	rpcErr, _ := m["error"].(map[string]any)
	if m["id"] != 2.0 || rpcErr["message"] != "upstream answer ended without a response to the request" {
		t.Fatalf("want the call's error, got %v", m)
	}
	if n := resumes.Load(); n != 5 {
		t.Errorf("%d resumptions, want 5", n)
	}
}

// TestUpstreamGETStreamStartsAfreshWhenItCannotResume checks that a GET
// stream whose resumption the upstream refuses with 400 (its event store
// lost the event, say) is opened again without Last-Event-ID, not given up.
func TestUpstreamGETStreamStartsAfreshWhenItCannotResume(t *testing.T) {
	up := newResumableTestUpstream(t)
	var mu sync.Mutex
	var ids []string
	gate := func(w http.ResponseWriter, r *http.Request) *http.Request {
		if r.Method != http.MethodGet || r.Header.Get(headerSessionID) == "" {
			return r
		}
		id := r.Header.Get("Last-Event-ID")
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
		if id != "" {
			http.Error(w, "failed to replay events", http.StatusBadRequest)
			return nil
		}
		return r
	}
	up.gate.Store(&gate)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	s := openInitializedStream(t)
	mcp.AddTool(up.server, &mcp.Tool{Name: "first"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return textResult(""), nil, nil
	})
	if m := nextJSON(t, s); m["method"] != "notifications/tools/list_changed" {
		t.Fatalf("want tools/list_changed, got %v", m)
	}
	up.CloseClientConnections()
	waitFor(t, func() error {
		mu.Lock()
		defer mu.Unlock()
		if n := len(ids); n < 3 || ids[n-2] == "" || ids[n-1] != "" {
			return fmt.Errorf("GETs with Last-Event-ID %q, want a refused resumption and a fresh GET after it", ids)
		}
		return nil
	})
}
