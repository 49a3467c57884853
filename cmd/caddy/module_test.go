package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestToolsThroughGateway(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	ctx := bounded(t)

	if got := cs.InitializeResult().ServerInfo.Name; got != "mcp-sse-demo" {
		t.Errorf("server name = %q, want mcp-sse-demo", got)
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	for _, want := range []string{"add", "ask_model", "countdown", "echo", "sleep"} {
		if !slices.Contains(names, want) {
			t.Errorf("tools/list lacks %q: %v", want, names)
		}
	}
	sum, err := callText(ctx, cs, "add", map[string]any{"a": 2, "b": 40})
	if err != nil || sum != "42" {
		t.Errorf("add(2, 40) = %q, %v; want 42", sum, err)
	}
}

func TestProgressArrivesBeforeResult(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	for _, body := range []string{
		initializeRequest,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"countdown","arguments":{"steps":3},"_meta":{"progressToken":"p"}}}`,
	} {
		if code := stream.post(t, body); code != http.StatusAccepted {
			t.Fatalf("POST answered %d, want 202", code)
		}
	}
	var got []string
	for len(got) < 5 {
		ev, err := stream.nextMessage()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Progress float64 `json:"progress"`
			} `json:"params"`
		}
		if err := json.Unmarshal(ev.data, &m); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		switch {
		case m.Method == "notifications/progress":
			got = append(got, fmt.Sprintf("progress %v", m.Params.Progress))
		case m.Method != "":
			continue // other notifications the server may send
		default:
			got = append(got, "response "+string(m.ID))
		}
	}
	want := []string{"response 1", "progress 1", "progress 2", "progress 3", "response 2"}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestSamplingRequestAnsweredByClient(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	var asked string
	cs := connect(t, gatewayURL+"/sse", &mcp.ClientOptions{
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			asked = req.Params.Messages[0].Content.(*mcp.TextContent).Text
			return &mcp.CreateMessageResult{Model: "test", Role: "assistant", Content: &mcp.TextContent{Text: "forty-two"}}, nil
		},
	}, nil)
	answer, err := callText(bounded(t), cs, "ask_model", map[string]any{"question": "meaning of life?"})
	if err != nil {
		t.Fatalf("ask_model: %v", err)
	}
	if answer != "forty-two" || asked != "meaning of life?" {
		t.Errorf("the model was asked %q and answered %q; want the question relayed and forty-two back", asked, answer)
	}
}

func TestConcurrentCallsDoNotWaitForSlowOnes(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	ctx := bounded(t)

	blocked := make(chan error, 1)
	go func() {
		_, err := callText(ctx, cs, "block", nil)
		blocked <- err
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			want := fmt.Sprintf("call %d", i)
			got, err := callText(ctx, cs, "echo", map[string]any{"text": want})
			if err == nil && got != want {
				err = fmt.Errorf("echo(%q) = %q", want, got)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	select {
	case err := <-blocked:
		t.Fatalf("the blocking call returned before it was released: %v", err)
	default:
	}
	close(up.release)
	if err := <-blocked; err != nil {
		t.Errorf("the blocking call: %v", err)
	}
}

func TestMessagesNotTiedToARequestArrive(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	changed := make(chan struct{}, 1)
	cs := connect(t, gatewayURL+"/sse", &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			changed <- struct{}{}
		},
	}, nil)
	select {
	case <-up.listened:
	case <-bounded(t).Done():
		t.Fatal("the gateway never opened the upstream's GET stream")
	}
	// Adding a tool makes the upstream announce it on its GET stream.
	mcp.AddTool(up.server, &mcp.Tool{Name: "late"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{}, nil, nil
	})
	select {
	case <-changed:
	case <-bounded(t).Done():
		t.Fatal("notifications/tools/list_changed never reached the client")
	}
	if _, err := cs.CallTool(bounded(t), &mcp.CallToolParams{Name: "late"}); err != nil {
		t.Errorf("calling the announced tool: %v", err)
	}
}

// TestGetStreamOpensBeforeTheNextRequest runs an upstream that is slow to
// answer its GET stream, and a client that calls a tool right after
// notifications/initialized: the call reaches the upstream only once the
// GET stream is open, so a request the upstream sends on it during the
// call has a way to the client.
func TestGetStreamOpensBeforeTheNextRequest(t *testing.T) {
	up := newTestUpstream(t)
	var open atomic.Bool
	gate := func(_ http.ResponseWriter, r *http.Request) *http.Request {
		if r.Method == http.MethodGet {
			time.Sleep(300 * time.Millisecond) // the upstream's own slowness, not the test's
			open.Store(true)
		}
		return r
	}
	up.gate.Store(&gate)
	up.answerCalls("get_open", func(w http.ResponseWriter, r *http.Request) {
		var call struct {
			ID json.RawMessage `json:"id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&call)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"%v"}]}}`, call.ID, open.Load())
	})
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	if err := stream.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatal(err)
	}
	stream.post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	stream.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_open"}}`)
	ev, err := stream.nextMessage()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ev.data), `"text":"true"`) {
		t.Errorf("the call reached the upstream before its GET stream was open: %s", ev.data)
	}
}

// TestOddAnswerToInitializedStillOpensGetStream runs an upstream that
// answers notifications/initialized with 200 and a JSON body that is no
// message: the session still gets the upstream's GET stream.
func TestOddAnswerToInitializedStillOpensGetStream(t *testing.T) {
	up := newTestUpstream(t)
	odd := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := peekBody(r)
		if !bytes.Contains(body, []byte(`"notifications/initialized"`)) {
			up.handler.ServeHTTP(w, r)
			return
		}
		up.handler.ServeHTTP(httptest.NewRecorder(), r) // the server is initialized all the same
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","result":{}}`)
	})
	up.posts.Store(&odd)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	connect(t, gatewayURL+"/sse", nil, nil)
	select {
	case <-up.listened:
	case <-bounded(t).Done():
		t.Fatal("the gateway never opened the upstream's GET stream")
	}
}

// TestUpstreamStreamOff: with upstream_stream off, sessions work without
// the upstream's GET stream.
func TestUpstreamStreamOff(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "upstream_stream off"))
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	// The call follows notifications/initialized, after which the
	// gateway would open the stream.
	if got, err := callText(bounded(t), cs, "echo", map[string]any{"text": "hi"}); err != nil || got != "hi" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	if _, err := cs.ListTools(bounded(t), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(up.listened); n != 0 {
		t.Errorf("the gateway opened %d upstream GET streams", n)
	}
}

func TestCloseDeletesUpstreamSession(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "resume_window off"))
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	if _, err := cs.ListTools(bounded(t), nil); err != nil {
		t.Fatal(err)
	}
	sessionID := up.lastPostHeader().Get(headerSessionID)
	if sessionID == "" {
		t.Fatal("the gateway sent no Mcp-Session-Id after initialize")
	}
	cs.Close()
	if got := up.waitDeleted(t); got != sessionID {
		t.Errorf("DELETE for session %q, want %q", got, sessionID)
	}
}

func TestHeadersGoUpstreamLikeReverseProxy(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	client := &http.Client{Transport: headerTransport{
		"Authorization": "Bearer secret-token",
		"Connection":    "X-Hop",
		"X-Hop":         "must not pass",
	}}
	cs := connect(t, gatewayURL+"/sse", nil, client)
	if _, err := cs.ListTools(bounded(t), nil); err != nil {
		t.Fatal(err)
	}
	h := up.lastPostHeader()
	checks := map[string]string{
		"Authorization":       "Bearer secret-token",
		"X-Forwarded-For":     "127.0.0.1",
		"X-Forwarded-Proto":   "http",
		"X-Forwarded-Host":    "127.0.0.1:9080",
		"X-Hop":               "",
		headerProtocolVersion: "2025-11-25",
		"Content-Type":        "application/json",
		"Accept":              "application/json, text/event-stream",
	}
	for name, want := range checks {
		if got := h.Get(name); got != want {
			t.Errorf("upstream got %s: %q, want %q", name, got, want)
		}
	}
	if h.Get(headerSessionID) == "" {
		t.Error("upstream got no Mcp-Session-Id")
	}
}

// headerTransport adds headers to every request.
type headerTransport map[string]string

func (ht headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range ht {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestStatusCodes(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	if ct := stream.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("stream Content-Type = %q", ct)
	}
	if cc := stream.resp.Header.Get("Cache-Control"); cc != "no-cache, no-transform" {
		t.Errorf("stream Cache-Control = %q", cc)
	}
	if xa := stream.resp.Header.Get("X-Accel-Buffering"); xa != "no" {
		t.Errorf("stream X-Accel-Buffering = %q", xa)
	}
	if !strings.HasPrefix(stream.endpoint, "/message?sessionId=") {
		t.Fatalf("endpoint = %q, want a path /message?sessionId=<id>", stream.endpoint)
	}

	tests := []struct {
		name, method, path, body string
		status                   int
		allow                    string
		rpcCode                  int
	}{
		{"accepted", "POST", stream.endpoint, initializeRequest, 202, "", 0},
		{"no session id", "POST", "/message", initializeRequest, 400, "", codeInvalidRequest},
		{"unknown session", "POST", "/message?sessionId=00000000-0000-4000-8000-000000000000", initializeRequest, 404, "", 0},
		{"malformed JSON", "POST", stream.endpoint, `{"jsonrpc":`, 400, "", codeParseError},
		{"GET message", "GET", stream.endpoint, "", 405, "POST", 0},
		{"POST stream", "POST", "/sse", "{}", 405, "GET", 0},
		{"other path", "GET", "/elsewhere", "", 200, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, gatewayURL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if tc.rpcCode != 0 {
				var e errorMessage
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.rpcCode || e.JSONRPC != "2.0" {
					t.Errorf("body %q, want a JSON-RPC error %d", body, tc.rpcCode)
				}
			}
		})
	}
	// The accepted initialize is answered on the stream.
	ev, err := stream.nextMessage()
	if err != nil || !strings.Contains(string(ev.data), `"id":1,"result"`) {
		t.Errorf("stream event %q, %v; want the initialize response", ev.data, err)
	}
}

func TestBatchEachMessageAnswered(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	if err := stream.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatal(err)
	}
	batch := `[{"jsonrpc":"2.0","method":"notifications/initialized"},
		{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"A"}}},
		{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"echo","arguments":{"text":"B"}}}]`
	if code := stream.post(t, batch); code != http.StatusAccepted {
		t.Fatalf("batch POST answered %d", code)
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		ev, err := stream.nextMessage()
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			ID     string `json:"id"`
			Result struct {
				Content []struct{ Text string } `json:"content"`
			} `json:"result"`
		}
		if json.Unmarshal(ev.data, &m) == nil && m.ID != "" {
			seen[m.ID+"="+m.Result.Content[0].Text] = true
		}
	}
	if !seen["a=A"] || !seen["b=B"] {
		t.Errorf("answers %v, want a=A and b=B", seen)
	}
}

func TestPingsAndFraming(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "ping_interval 50ms"))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	ev, err := stream.next()
	if err != nil || ev.comment != "ping" || len(ev.lines) != 1 {
		t.Fatalf("got %+v, %v; want a lone `: ping` comment", ev, err)
	}
	stream.post(t, initializeRequest)
	ev, err = stream.nextMessage()
	if err != nil {
		t.Fatal(err)
	}
	sessionID := strings.TrimPrefix(stream.endpoint, "/message?sessionId=")
	if ev.name != "message" || ev.id != sessionID+":1" || len(ev.lines) != 3 {
		t.Errorf("event lines %q; want id %s:1, event message and one data line", ev.lines, sessionID)
	}
}

func TestMaxLifetimeEndsStreamCleanly(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "max_lifetime 300ms\n\t\tresume_window off"))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	stream.post(t, initializeRequest)
	for {
		_, err := stream.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the stream broke instead of ending cleanly: %v", err)
		}
	}
	up.waitDeleted(t)
	if code := stream.post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); code != http.StatusNotFound {
		t.Errorf("POST to the ended session answered %d, want 404", code)
	}
}

func TestUnreachableUpstreamAnswersWithError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + l.Addr().String() + "/mcp"
	l.Close()
	loadCaddyfile(t, gatewaySite(deadURL, ""))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	_, err = client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: gatewayURL + "/sse"}, nil)
	if err == nil || !strings.Contains(err.Error(), "upstream") || ctx.Err() != nil {
		t.Errorf("initialize with a dead upstream: %v; want a prompt JSON-RPC error naming the upstream", err)
	}
}

func TestReloadKeepsSessions(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "ping_interval 10s"))
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	raw := openRaw(t, nil, gatewayURL+"/sse", nil)

	loadCaddyfile(t, gatewaySite(up.URL, "ping_interval 50ms"))
	got, err := callText(bounded(t), cs, "echo", map[string]any{"text": "after reload"})
	if err != nil || got != "after reload" {
		t.Errorf("call after reload: %q, %v", got, err)
	}
	// The stream opened before the reload follows the new ping interval.
	ev, err := raw.next()
	if err != nil || ev.comment != "ping" {
		t.Errorf("old stream after reload: %+v, %v; want a ping", ev, err)
	}
}

func TestReloadRemovingHandlerEndsSessions(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	loadCaddyfile(t, `http://127.0.0.1:9080 {
	bind 127.0.0.1
	respond "gone" 200
}`)
	done := make(chan error, 1)
	go func() { done <- cs.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the session outlived its handler")
	}
	up.waitDeleted(t)
}

func TestHandlersDoNotShareSessions(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	mcp_sse {
		upstream %[1]s
		prefix /a
	}
	mcp_sse {
		upstream %[1]s
		prefix /b
	}
}`, up.URL))
	a := openRaw(t, nil, gatewayURL+"/a/sse", nil)
	if !strings.HasPrefix(a.endpoint, "/a/message?") {
		t.Fatalf("endpoint %q, want /a/message?…", a.endpoint)
	}
	other := &rawStream{endpoint: strings.Replace(a.endpoint, "/a/", "/b/", 1)}
	if code := other.post(t, initializeRequest); code != http.StatusNotFound {
		t.Errorf("handler b took handler a's session: %d, want 404", code)
	}
	if code := a.post(t, initializeRequest); code != http.StatusAccepted {
		t.Errorf("handler a refused its own session: %d", code)
	}
}

func TestPrefixUnderHandlePath(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	handle_path /tenant/* {
		mcp_sse {
			upstream %s
			prefix /api
		}
	}
}`, up.URL))
	raw := openRaw(t, nil, gatewayURL+"/tenant/api/sse", nil)
	if !strings.HasPrefix(raw.endpoint, "/tenant/api/message?sessionId=") {
		t.Errorf("endpoint %q, want /tenant/api/message?sessionId=…", raw.endpoint)
	}
	cs := connect(t, gatewayURL+"/tenant/api/sse", nil, nil)
	if got, err := callText(bounded(t), cs, "echo", map[string]any{"text": "hi"}); err != nil || got != "hi" {
		t.Errorf("echo under handle_path: %q, %v", got, err)
	}
}

func TestEncodeDoesNotHoldEvents(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	encode zstd gzip
	mcp_sse {
		upstream %s
	}
}`, up.URL))
	// Reading the endpoint event and then each answer, with nothing more
	// written after it, proves that no encoder buffers them.
	raw := openRaw(t, nil, gatewayURL+"/sse", http.Header{"Accept-Encoding": {"zstd, gzip"}})
	if ce := raw.resp.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("the stream is encoded with %q", ce)
	}
	raw.post(t, initializeRequest)
	if ev, err := raw.nextMessage(); err != nil || !strings.Contains(string(ev.data), `"id":1`) {
		t.Fatalf("initialize answer: %q, %v", ev.data, err)
	}
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	if got, err := callText(bounded(t), cs, "echo", map[string]any{"text": "zipped?"}); err != nil || got != "zipped?" {
		t.Errorf("echo behind encode: %q, %v", got, err)
	}
}

func TestTLSOverHTTP2(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, fmt.Sprintf(`https://localhost:9443 {
	bind 127.0.0.1
	tls internal
	mcp_sse {
		upstream %s
	}
}`, up.URL))
	client := &http.Client{Transport: &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: caddyLocalRoots(t), ServerName: "localhost"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:9443")
		},
	}}
	// The internal issuer signs the site's certificate in the background.
	waitFor(t, func() error {
		resp, err := client.Get("https://localhost:9443/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	raw := openRaw(t, client, "https://localhost:9443/sse", nil)
	if raw.resp.ProtoMajor != 2 {
		t.Errorf("stream served over %s, want HTTP/2", raw.resp.Proto)
	}
	cs := connect(t, "https://localhost:9443/sse", nil, client)
	if got, err := callText(bounded(t), cs, "add", map[string]any{"a": 1, "b": 1}); err != nil || got != "2" {
		t.Errorf("add over TLS: %q, %v", got, err)
	}
}

// caddyLocalRoots returns the root of Caddy's internal CA, which signs the
// certificates of `tls internal` sites.
func caddyLocalRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := http.Get(adminURL + "/pki/ca/local")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ca struct {
		Root string `json:"root_certificate"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ca); err != nil {
		t.Fatalf("reading the local CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(ca.Root)) {
		t.Fatal("no root certificate from the local CA")
	}
	return pool
}
