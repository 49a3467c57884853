package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sse/caddy-mcp-sse/cmd/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Servers that speak revision 2026-07-28, whose tools ask for the client's
// input the way that revision has it (input_required results), for the
// tests of the gateway in front of them.

// statelessUpstream is a Go SDK v1.8 server in Stateless mode, and what
// it saw.
type statelessUpstream struct {
	url string
	// waiting is closed once a call of the tool wait began, cancelled
	// once one ended because its request was cancelled.
	waiting, cancelled chan struct{}
	mu                 sync.Mutex
	requests           []*http.Request // the POSTs it took, bodies read into bodies
	bodies             []string
}

// posts returns the headers and bodies of the POSTs of method it took.
func (u *statelessUpstream) posts(method string) (headers []http.Header, bodies []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, r := range u.requests {
		if r.Header.Get("Mcp-Method") == method {
			headers = append(headers, r.Header)
			bodies = append(bodies, u.bodies[i])
		}
	}
	return headers, bodies
}

// startStatelessGoServer starts the Go SDK server with Stateless: true on
// /mcp: the demo tools, and
//   - sample, elicit and roots, which ask the client through
//     input_required, and answer with what it said;
//   - log, which logs "hello from the log tool" at info;
//   - region, whose argument region travels in the header Mcp-Param-Region;
//   - change, which adds a tool, so that the tool list changes;
//   - wait, which waits until its request is cancelled;
//   - the resource interop://greeting, which takes subscriptions and is
//     updated every 200ms.
//
// The handler cancels a call whose request the client closed, which is
// the revision's cancellation (PropagateRequestCancellation: the Go SDK
// does not by default).
func startStatelessGoServer(t *testing.T) *statelessUpstream {
	return startStatelessGoServerWith(t, "")
}

// startStatelessGoServerWith is startStatelessGoServer, protected if
// staleOnRetry is set: a request without Authorization gets 401, and so
// does a call's retry with inputResponses whose Authorization is
// staleOnRetry (a token that expired during the call).
func startStatelessGoServerWith(t *testing.T, staleOnRetry string) *statelessUpstream {
	u := &statelessUpstream{waiting: make(chan struct{}), cancelled: make(chan struct{})}
	s := demo.NewServerWith(&mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	s.AddTool(&mcp.Tool{Name: "sample", Description: "Asks the client's model.", InputSchema: emptySchema}, sampleInput)
	s.AddTool(&mcp.Tool{Name: "elicit", Description: "Asks the user.", InputSchema: emptySchema}, elicitInput)
	s.AddTool(&mcp.Tool{Name: "roots", Description: "Lists the client's roots.", InputSchema: emptySchema}, rootsInput)
	s.AddTool(&mcp.Tool{Name: "log", Description: "Logs at info.", InputSchema: emptySchema},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: "hello from the log tool"})
			return textResult("logged"), err
		})
	s.AddTool(&mcp.Tool{Name: "region", Description: "Returns region:text.", InputSchema: map[string]any{
		"type": "object",
		"properties": map[string]any{
			"region": map[string]any{"type": "string", "x-mcp-header": "Region"},
			"text":   map[string]any{"type": "string"},
		},
		"required": []string{"region", "text"},
	}}, func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct{ Region, Text string }
		if err := json.Unmarshal(req.Params.Arguments, &args); err != nil {
			return nil, err
		}
		return textResult(args.Region + ":" + args.Text), nil
	})
	s.AddTool(&mcp.Tool{Name: "change", Description: "Adds a tool.", InputSchema: emptySchema},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			s.AddTool(&mcp.Tool{Name: "added", InputSchema: emptySchema},
				func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return textResult("added"), nil
				})
			return textResult("changed"), nil
		})
	var began, ended sync.Once
	s.AddTool(&mcp.Tool{Name: "wait", Description: "Waits until cancelled.", InputSchema: emptySchema},
		func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			began.Do(func() { close(u.waiting) })
			select {
			case <-ctx.Done():
				ended.Do(func() { close(u.cancelled) })
				return nil, ctx.Err()
			case <-time.After(time.Minute):
				return textResult("not cancelled"), nil
			}
		})
	s.AddResource(&mcp.Resource{URI: "interop://greeting", Name: "greeting", MIMEType: "text/plain"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{
				{URI: req.Params.URI, MIMEType: "text/plain", Text: "hello from the Go SDK"},
			}}, nil
		})
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = s.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: "interop://greeting"})
			}
		}
	}()
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true, PropagateRequestCancellation: true})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if staleOnRetry != "" && auth == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="interop"`)
			http.Error(w, "no credential", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			body := readAndRestore(t, r)
			if staleOnRetry != "" && auth == staleOnRetry && strings.Contains(body, `"inputResponses"`) {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				http.Error(w, "expired", http.StatusUnauthorized)
				return
			}
			u.mu.Lock()
			u.requests = append(u.requests, r.Clone(context.Background()))
			u.bodies = append(u.bodies, body)
			u.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		stop()
		srv.CloseClientConnections()
		srv.Close()
	})
	u.url = srv.URL + "/mcp"
	return u
}

// checkCancel calls the tool wait through cs and cancels the call once
// the upstream runs it: the upstream's call must end, its request closed.
func checkCancel(t *testing.T, ctx context.Context, cs *mcp.ClientSession, up *statelessUpstream) {
	t.Helper()
	callCtx, cancelCall := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(callCtx, &mcp.CallToolParams{Name: "wait", Arguments: map[string]any{}})
		done <- err
	}()
	select {
	case <-up.waiting:
	case <-ctx.Done():
		t.Fatal("the call never reached the upstream")
	}
	cancelCall()
	<-done
	select {
	case <-up.cancelled:
	case <-ctx.Done():
		t.Fatal("the upstream's call went on after the client cancelled it")
	}
}

// readAndRestore reads r's body and leaves it to be read again.
func readAndRestore(t *testing.T, r *http.Request) string {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("reading a request body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return string(b)
}

var emptySchema = map[string]any{"type": "object"}

// sampleInput asks the client's model "Say hello" and returns
// "sampled: <its answer>".
func sampleInput(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	answer, ok := req.Params.InputResponses["llm"].(*mcp.CreateMessageWithToolsResult)
	if !ok {
		return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{"llm": &mcp.CreateMessageParams{
			Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "Say hello"}}},
			MaxTokens: 50,
		}}, RequestState: "sample:1"}, nil
	}
	if req.Params.RequestState != "sample:1" {
		return nil, fmt.Errorf("request state %q, want sample:1", req.Params.RequestState)
	}
	text := ""
	for _, c := range answer.Content {
		if txt, ok := c.(*mcp.TextContent); ok {
			text += txt.Text
		}
	}
	return textResult("sampled: " + text), nil
}

// elicitInput asks the user for a name and an age, and returns the action
// and the answers as JSON.
func elicitInput(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	answer, ok := req.Params.InputResponses["who"].(*mcp.ElicitResult)
	if !ok {
		return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{"who": &mcp.ElicitParams{
			Message: "Who are you?",
			RequestedSchema: map[string]any{
				"type": "object",
				"properties": map[string]any{
					"name": map[string]any{"type": "string"},
					"age":  map[string]any{"type": "integer"},
				},
				"required": []string{"name"},
			},
		}}, RequestState: "elicit:1"}, nil
	}
	b, err := json.Marshal(map[string]any{"action": answer.Action, "content": answer.Content})
	return textResult(string(b)), err
}

// rootsInput asks the client for its roots and returns them, "uri name"
// a line.
func rootsInput(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	answer, ok := req.Params.InputResponses["roots"].(*mcp.ListRootsResult)
	if !ok {
		return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{"roots": &mcp.ListRootsParams{}}}, nil
	}
	return textResult(rootLines(answer.Roots)), nil
}
