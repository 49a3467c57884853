package main

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-sse/caddy-mcp-sse/cmd/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The test upstream: the demo MCP server behind httptest, with a record of
// what the gateway sent it.

// testUpstream is the demo MCP server behind httptest, with a test-only
// tool and a record of what the gateway sent it.
type testUpstream struct {
	*httptest.Server
	URL    string
	server *mcp.Server

	// release lets every pending call of the block tool return.
	release chan struct{}
	// deleted receives the session ID of every DELETE.
	deleted chan string
	// listened receives the session ID of every GET stream request of a
	// session.
	listened chan string

	// handler is the MCP server's; posts, once set, answers POSTs in
	// its place, to misbehave or reframe in a test's own way.
	handler http.Handler
	posts   atomic.Pointer[http.HandlerFunc]
	// failDeletes makes every DELETE fail with 502, after it is recorded.
	failDeletes atomic.Bool
	// holdDeletes makes every DELETE wait, after it is recorded, until
	// the gateway gives up on it: an upstream that never answers one.
	holdDeletes atomic.Bool
	// gate, once set, sees every request first: it answers it itself
	// and returns nil, or returns the request to serve as usual.
	gate atomic.Pointer[func(http.ResponseWriter, *http.Request) *http.Request]

	mu          sync.Mutex
	postHeaders []http.Header
	protos      map[string]string // the protocol of each client connection, by remote address
}

// newTestUpstream starts a test upstream that takes h2c besides HTTP/1.1,
// so that the gateway's GET streams go over its own HTTP/2 connections
// (h2Streams), and its POSTs over net/http's. The third-party servers of
// the interop tests take HTTP/1.1 only, and cover that path.
func newTestUpstream(t *testing.T) *testUpstream {
	t.Helper()
	return startTestUpstream(t, true, nil)
}

// newHTTP1TestUpstream starts a test upstream that speaks HTTP/1.1 only.
func newHTTP1TestUpstream(t *testing.T) *testUpstream {
	t.Helper()
	return startTestUpstream(t, false, nil)
}

// newResumableTestUpstream starts a test upstream that keeps the events of
// its streams, so that a client resumes a stream that broke off with
// Last-Event-ID, and gives them IDs (for protocol 2025-11-25 on).
func newResumableTestUpstream(t *testing.T) *testUpstream {
	t.Helper()
	return startTestUpstream(t, true, &mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
}

func startTestUpstream(t *testing.T, h2c bool, opts *mcp.StreamableHTTPOptions) *testUpstream {
	t.Helper()
	u := &testUpstream{
		release:  make(chan struct{}),
		deleted:  make(chan string, 4096),
		listened: make(chan string, 4096),
		protos:   make(map[string]string),
	}
	srv := demo.NewServer()
	u.server = srv
	mcp.AddTool(srv, &mcp.Tool{Name: "block", Description: "Waits until the test releases it."},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			select {
			case <-u.release:
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "released"}}}, nil, nil
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		})
	u.handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, opts)
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		if r.Method != "PRI" { // an HTTP/1.1 server hands the h2c probe to its handler
			u.protos[r.RemoteAddr] = r.Proto
		}
		if r.Method == http.MethodPost {
			u.postHeaders = append(u.postHeaders, r.Header.Clone())
		}
		u.mu.Unlock()
		if gate := u.gate.Load(); gate != nil {
			if r = (*gate)(w, r); r == nil {
				return
			}
		}
		if r.Method == http.MethodPost {
			if posts := u.posts.Load(); posts != nil {
				(*posts)(w, r)
				return
			}
		}
		switch r.Method {
		case http.MethodDelete:
			u.deleted <- r.Header.Get(headerSessionID)
			if u.holdDeletes.Load() {
				<-r.Context().Done()
				return
			}
			if u.failDeletes.Load() {
				http.Error(w, "deletes fail today", http.StatusBadGateway)
				return
			}
		case http.MethodGet:
			// A GET without session is the gateway asking whether the
			// upstream requires authorization, not a session's stream.
			if id := r.Header.Get(headerSessionID); id != "" {
				u.listened <- id
			}
		}
		u.handler.ServeHTTP(w, r)
	}))
	if h2c {
		u.Config.Protocols = new(http.Protocols)
		u.Config.Protocols.SetHTTP1(true)
		u.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	u.Start()
	u.URL = u.Server.URL + "/mcp"
	// Sessions outlive a test in their resume window, with the upstream's
	// GET stream open: cut it, or Close waits for them.
	t.Cleanup(func() {
		u.CloseClientConnections()
		u.Close()
	})
	return u
}

// answerCalls makes the upstream answer the calls of tool with answer, and
// everything else as the MCP server does.
func (u *testUpstream) answerCalls(tool string, answer http.HandlerFunc) {
	name := []byte(`"name":"` + tool + `"`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bytes.Contains(peekBody(r), name) {
			answer(w, r)
			return
		}
		u.handler.ServeHTTP(w, r)
	})
	u.posts.Store(&h)
}

// peekBody reads r's body and puts it back for the handler after.
func peekBody(r *http.Request) []byte {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body
}

// lastPostHeader returns the headers of the last POST the upstream got.
func (u *testUpstream) lastPostHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.postHeaders) == 0 {
		return nil
	}
	return u.postHeaders[len(u.postHeaders)-1]
}

// connections returns the protocols of the connections the upstream was
// called on, by remote address.
func (u *testUpstream) connections() map[string]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return maps.Clone(u.protos)
}

// waitDeleted waits for the DELETE of one upstream session.
func (u *testUpstream) waitDeleted(t *testing.T) string {
	t.Helper()
	select {
	case id := <-u.deleted:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream session was never deleted")
		return ""
	}
}
