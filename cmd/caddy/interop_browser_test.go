package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/mcp-sse/caddy-mcp-sse/cmd/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A real browser as an MCP client: headless Chromium (Debian's chromium)
// driven over CDP by chromedp, on a page whose script is the official
// TypeScript SDK's Client and SSEClientTransport bundled for the browser
// (testdata/browser), as MCP Inspector's web UI has them. The page runs
// the interop suite's scripts (testdata/interop/README.md) and answers
// sampling, elicitation and roots as every driver does.
//
// Where the page is matters to a browser: the gateway lets a page use its
// endpoints from its own origin or from one that allowed_origins names,
// and the browser lets a page read a server on another origin only when
// the server answers with CORS headers.

// browserRunTimeout bounds one script's run in the page, as driverTimeout
// bounds a Node driver's.
const browserRunTimeout = 60 * time.Second

// chromiumPath returns the chromium to run. Outside CI a machine without
// it skips the test; in CI that is a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		partMissing(t, fmt.Sprintf("chromium is not installed (apt-get install -y chromium): %v", err))
	}
	return path
}

var (
	bundleOnce sync.Once
	bundleDir  string
	bundleErr  error
)

// browserBundle returns a directory with the page: index.html and
// mcp-browser.js, which esbuild bundles from testdata/browser (installed
// by `npm ci`) once per test run, in well under a second.
func browserBundle(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat("testdata/browser/node_modules/esbuild/package.json")
	}
	if err != nil {
		partMissing(t, fmt.Sprintf("the browser page cannot be built: %v (run npm ci in testdata/browser)", err))
	}
	bundleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mcp-sse-browser")
		if err != nil {
			bundleErr = err
			return
		}
		cmd := exec.Command(node, "build.mjs", dir)
		cmd.Dir = "testdata/browser"
		if out, err := cmd.CombinedOutput(); err != nil {
			bundleErr = fmt.Errorf("bundling the page: %v\n%s", err, out)
			return
		}
		bundleDir = dir
	})
	if bundleErr != nil {
		t.Fatal(bundleErr)
	}
	return bundleDir
}

// browser is a headless Chromium with one tab, and what the tab's network
// and console reported.
type browser struct {
	ctx context.Context

	mu       sync.Mutex
	requests map[network.RequestID]*browserRequest
	order    []network.RequestID
	console  []string
	// recorded has a value after the tab reported something new.
	recorded chan struct{}
}

// browserRequest is one request the tab sent (preflights included) and
// what became of it.
type browserRequest struct {
	Method string
	URL    string
	// Type is the kind the browser gave it: "Preflight" for a CORS
	// preflight, "EventSource", "Fetch", "Document", "Script".
	Type network.ResourceType
	// Headers are the request's headers as sent; a preflight's include
	// Access-Control-Request-Method and -Headers.
	Headers network.Headers
	// Status is the answer's status, 0 before it (or when the browser
	// reported none).
	Status int64
	// ResponseHeaders are the answer's headers.
	ResponseHeaders network.Headers
	// Failed is the browser's error for a request that failed, CORS
	// names what the browser's CORS check refused.
	Failed string
	CORS   string
}

// startBrowser runs headless Chromium for the test, with a temporary
// profile, as root without the sandbox (Chromium refuses to run as root
// with it). It is stopped at the end of the test.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &browser{ctx: ctx, requests: make(map[network.RequestID]*browserRequest), recorded: make(chan struct{}, 1)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("browser console:\n%s", strings.Join(b.consoleLines(), "\n"))
		}
		stop, done := context.WithTimeout(ctx, 10*time.Second)
		defer done()
		if err := chromedp.Cancel(stop); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("closing the browser: %v", err)
		}
		cancel()
		cancelAlloc()
	})
	// Listen starts the browser and opens the tab.
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	err := chromedp.Do(ctx, func(ctx context.Context, tab *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tab, network.Enable, network.EnableParams{})
		return chromedp.Void{}, err
	})
	if err != nil {
		t.Fatalf("enabling the network domain: %v", err)
	}
	return b
}

// record keeps what the tab reports; it runs in chromedp's read loop.
// The extra info of a request may come before the request itself.
func (b *browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() {
		select {
		case b.recorded <- struct{}{}:
		default:
		}
	}()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		r := b.request(ev.RequestID)
		r.Method, r.URL, r.Type, r.Headers = ev.Request.Method, ev.Request.URL, ev.Type, ev.Request.Headers
	case *network.EventResponseReceived:
		r := b.request(ev.RequestID)
		r.Status, r.ResponseHeaders = ev.Response.Status, ev.Response.Headers
		if ev.Type != "" {
			r.Type = ev.Type
		}
	case *network.EventResponseReceivedExtraInfo:
		// The status and headers the browser got, also for an answer its
		// CORS check hid from the page (which then has no
		// responseReceived), and for one whose responseReceived is still
		// to come when the test looks.
		if r := b.request(ev.RequestID); r.Status == 0 {
			r.Status, r.ResponseHeaders = ev.StatusCode, ev.Headers
		}
	case *network.EventLoadingFailed:
		r := b.request(ev.RequestID)
		r.Failed = ev.ErrorText
		if ev.CorsErrorStatus != nil {
			r.CORS = string(ev.CorsErrorStatus.CorsError)
		}
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			if a.Value != nil {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		b.console = append(b.console, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		b.console = append(b.console, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, text))
	}
}

// request returns the record of the request id, new if need be.
func (b *browser) request(id network.RequestID) *browserRequest {
	r := b.requests[id]
	if r == nil {
		r = new(browserRequest)
		b.requests[id] = r
		b.order = append(b.order, id)
	}
	return r
}

// consoleLines returns what the page logged so far.
func (b *browser) consoleLines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// sent returns the requests the tab sent since the last call, in order.
func (b *browser) sent() []browserRequest {
	out := b.peek()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.order = nil
	clear(b.requests)
	return out
}

// sentUntil is sent once enough says the requests are all there, or after
// 10 s: the tab reports a request's events on its own schedule, some after
// the page's script learned how it ended.
func (b *browser) sentUntil(enough func([]browserRequest) bool) []browserRequest {
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for !enough(b.peek()) {
		select {
		case <-b.recorded:
		case <-deadline.C:
			return b.sent()
		}
	}
	return b.sent()
}

// peek returns the requests the tab sent since the last call to sent.
func (b *browser) peek() []browserRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]browserRequest, 0, len(b.order))
	for _, id := range b.order {
		out = append(out, *b.requests[id])
	}
	return out
}

// open loads the page and waits until its client is ready. What the tab
// sent before is forgotten.
func (b *browser) open(t *testing.T, pageURL string) {
	t.Helper()
	b.sent()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("loading %s: %v", pageURL, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.mcpBrowser !== undefined`)); err != nil {
		t.Fatalf("the page at %s never got ready: %v\n%s", pageURL, err, strings.Join(b.consoleLines(), "\n"))
	}
}

// pageRun is what the page's client reports of a script's run.
type pageRun struct {
	Connected bool       `json:"connected"`
	Error     string     `json:"error"`
	Results   []opResult `json:"results"`
}

// String is the report as JSON, for messages.
func (r pageRun) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// run has the open page's client connect to mcpURL over transport and run
// ops, a script's JSON array, with headers (if any) on every request.
func (b *browser) run(t *testing.T, mcpURL, transport string, ops []byte, headers map[string]string) pageRun {
	t.Helper()
	run, err := b.tryRun(t, mcpURL, transport, ops, headers)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// tryRun is run, with an error when the page could not run the script at
// all (it hung, or broke).
func (b *browser) tryRun(t *testing.T, mcpURL, transport string, ops []byte, headers map[string]string) (pageRun, error) {
	t.Helper()
	h, _ := json.Marshal(headers)
	out, err := b.eval(t, fmt.Sprintf(`mcpBrowser.run(%s, %s, %s, %s)`, jsString(mcpURL), jsString(transport), ops, h))
	var run pageRun
	if err == nil {
		err = json.Unmarshal(out, &run)
	}
	if err != nil {
		return run, fmt.Errorf("running the script in the page: %v (it reported %s)\n%s", err, out, strings.Join(b.consoleLines(), "\n"))
	}
	return run, nil
}

// native has the open page open a session by hand, with the browser's own
// EventSource and fetch, and returns what it saw.
func (b *browser) native(t *testing.T, sseURL string) (endpoint, server, failure string) {
	t.Helper()
	out, err := b.eval(t, fmt.Sprintf(`mcpBrowser.native(%s)`, jsString(sseURL)))
	if err != nil {
		t.Fatalf("opening a session with EventSource: %v", err)
	}
	var got struct{ Endpoint, Server, Error string }
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("the page's report %s: %v", out, err)
	}
	return got.Endpoint, got.Server, got.Error
}

// eval evaluates expr in the page, awaits the promise it gives, and
// returns the value as JSON.
func (b *browser) eval(t *testing.T, expr string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserRunTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// pageHost starts an origin on a free loopback port that serves the page
// at /browser/. With a target, it passes every other request to the
// target's origin, keeping the Host header as Caddy's reverse_proxy does:
// the page and the MCP server then share one origin, as when one site
// serves both. It returns the origin.
func pageHost(t *testing.T, target *url.URL) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/browser/", http.StripPrefix("/browser/", http.FileServer(http.Dir(browserBundle(t)))))
	if target != nil {
		origin := &url.URL{Scheme: target.Scheme, Host: target.Host}
		mux.Handle("/", &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(origin)
				r.Out.Host = r.In.Host
			},
			FlushInterval: -1,
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL
}

// pagePath is where an origin serves the page.
const pagePath = "/browser/index.html"

// pageSite is the Caddyfile handle that serves the page on a site, at
// pagePath.
func pageSite(t *testing.T) string {
	return fmt.Sprintf("handle_path /browser/* {\n\t\troot * %s\n\t\tfile_server\n\t}", browserBundle(t))
}

// onOrigin returns u on origin, with u's path and query.
func onOrigin(origin string, u *url.URL) string {
	return origin + u.RequestURI()
}

// scriptOps reads the interop script at path as the JSON the page takes.
func scriptOps(t *testing.T, path string) []byte {
	t.Helper()
	ops, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// demoBothWays serves the demo MCP server both ways on one loopback
// origin: Streamable HTTP at /mcp, for the gateway, and the Go SDK's
// legacy SSE handler at /sse, for a run without it.
func demoBothWays(t *testing.T) (upstream, direct string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/mcp", demo.NewHandler())
	mux.Handle("/sse", mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return demo.NewServer() }, nil))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL + "/mcp", srv.URL + "/sse"
}

// browserScript is what TestBrowser's page does with the demo server: a
// call of each kind, progress and sampling included.
const browserScript = `[
	{"op": "listTools"},
	{"op": "callTool", "name": "echo", "arguments": {"text": "héllo\u2028<b>"}},
	{"op": "callTool", "name": "add", "arguments": {"a": 20, "b": 22}},
	{"op": "callTool", "name": "countdown", "arguments": {"steps": 3, "interval_ms": 50}, "progress": true},
	{"op": "callTool", "name": "ask_model", "arguments": {"question": "ping?"}},
	{"op": "ping"}
]`

// browserWant is what a user sees of browserScript's run.
var browserWant = map[string]string{
	"listTools":          `["add","ask_model","countdown","echo","sleep"]`,
	"callTool echo":      `{"content":[{"type":"text","text":"héllo\u2028<b>"}],"isError":false}`,
	"callTool add":       `{"content":[{"type":"text","text":"42"}],"isError":false}`,
	"callTool countdown": `{"content":[{"type":"text","text":"liftoff"}],"isError":false,"progress":3}`,
	"callTool ask_model": `{"content":[{"type":"text","text":"sampled: ping?"}],"isError":false}`,
	"ping":               `{}`,
}

// TestBrowser runs the TypeScript SDK's SSE client in headless Chromium
// against the built Caddy in front of the demo server (Go SDK), from pages
// on three origins: the gateway's own site, a site that allowed_origins
// names, and one it does not. Directly, the page reaches the Go SDK's own
// SSE handler from the server's origin (through a plain reverse proxy
// that also serves the page): the SDK sends no CORS headers, so that is
// the only way a page can use it without the gateway.
func TestBrowser(t *testing.T) {
	b := startBrowser(t)
	upstream, direct := demoBothWays(t)
	gw, allowed, foreign := "http://"+freeAddr(t), "http://"+freeAddr(t), "http://"+freeAddr(t)
	startCaddy(t, fmt.Sprintf(`{
	admin off
	persist_config off
}
%[1]s {
	bind 127.0.0.1
	mcp_sse {
		upstream %[4]s
		allowed_origins %[2]s
	}
	%[5]s
	respond "up" 200
}
%[2]s, %[3]s {
	bind 127.0.0.1
	%[5]s
}
`, gw, allowed, foreign, upstream, pageSite(t)), gw+"/up")
	ops := []byte(browserScript)

	// A run's results as a user reads them: every call succeeded with what
	// the demo server answers.
	checkResults := func(t *testing.T, run pageRun) {
		t.Helper()
		if !run.Connected {
			t.Fatalf("the page could not connect: %s (%s)", run.Error, corsRefusal(b.sent()))
		}
		if len(run.Results) != len(browserWant) {
			t.Fatalf("%d results for %d operations: %v", len(run.Results), len(browserWant), run)
		}
		for _, r := range run.Results {
			if !r.OK || !sameJSON(r.Result, browserWant[r.Op]) {
				t.Errorf("%s: ok=%v %s %s, want %s", r.Op, r.OK, r.Result, r.Error, browserWant[r.Op])
			}
		}
	}

	t.Run("direct", func(t *testing.T) {
		host := pageHost(t, mustParseURL(t, direct))
		b.open(t, host+pagePath)
		checkResults(t, b.run(t, onOrigin(host, mustParseURL(t, direct)), "sse", ops, nil))
	})

	t.Run("same origin", func(t *testing.T) {
		b.open(t, gw+pagePath)
		checkResults(t, b.run(t, gw+"/sse", "sse", ops, nil))
		sent := b.sent()
		checkStream(t, sent, gw, "")
		if pre := preflights(sent); len(pre) > 0 {
			t.Errorf("a same-origin page sent preflights: %+v", pre)
		}
		checkNative(t, b, gw+"/sse")
	})

	t.Run("allowed origin", func(t *testing.T) {
		b.open(t, allowed+pagePath)
		checkResults(t, b.run(t, gw+"/sse", "sse", ops, nil))
		sent := b.sent()
		checkStream(t, sent, gw, allowed)
		// The SDK's GET carries Accept only, which needs no preflight;
		// its POSTs carry Content-Type: application/json, which does.
		checkPreflights(t, sent, allowed, "POST")

		// A page with a token sends Authorization on the GET too, which
		// is then preflighted.
		checkResults(t, b.run(t, gw+"/sse", "sse", ops, map[string]string{"Authorization": "Bearer browser-token"}))
		sent = b.sent()
		checkStream(t, sent, gw, allowed)
		checkPreflights(t, sent, allowed, "GET", "POST")

		checkNative(t, b, gw+"/sse")
	})

	t.Run("foreign origin", func(t *testing.T) {
		b.open(t, foreign+pagePath)
		if run := b.run(t, gw+"/sse", "sse", ops, nil); run.Connected || run.Error == "" {
			t.Errorf("a page on an origin not allowed connected: %v", run)
		}
		_, _, failure := b.native(t, gw+"/sse")
		if failure == "" {
			t.Error("EventSource from an origin not allowed opened a session")
		}
		// Its POST, had it learned an endpoint, is refused at the preflight.
		posted, err := b.eval(t, fmt.Sprintf(`fetch(%s, {method: "POST", headers: {"content-type": "application/json"}, body: "{}"}).then(r => "answered " + r.status, e => "refused: " + e.message)`,
			jsString(gw+"/message?sessionId=00000000-0000-4000-8000-000000000000")))
		if err != nil || !strings.Contains(string(posted), "refused") {
			t.Errorf("a POST from an origin not allowed: %s %v", posted, err)
		}
		// Requests counted once the browser told how they ended: a
		// stream request by its failure, a preflight by its status.
		counts := func(sent []browserRequest) (streams, pre int) {
			for _, r := range sent {
				switch {
				case strings.HasPrefix(r.URL, gw+"/sse") && r.Method == "GET" && r.Failed != "":
					streams++
				case r.Type == network.ResourceTypePreflight && r.Status != 0:
					pre++
				}
			}
			return streams, pre
		}
		sent := b.sentUntil(func(sent []browserRequest) bool {
			streams, pre := counts(sent)
			return streams >= 2 && pre >= 1
		})
		streams, pre := counts(sent)
		for _, r := range sent {
			switch {
			case strings.HasPrefix(r.URL, gw+"/sse") && r.Method == "GET":
				if r.Status != http.StatusForbidden || r.CORS == "" {
					t.Errorf("GET /sse from an origin not allowed: %d, CORS error %q; want 403 that the browser hides", r.Status, r.CORS)
				}
			case r.Type == network.ResourceTypePreflight:
				if r.Status != http.StatusForbidden {
					t.Errorf("the preflight of a POST from an origin not allowed: %d, want 403", r.Status)
				}
			}
		}
		if streams < 2 || pre < 1 {
			t.Errorf("%d stream requests and %d preflights, want 2 and 1", streams, pre)
		}
	})
}

// checkNative checks that the open page opens a session with the demo
// server at sseURL with the browser's own EventSource and fetch.
func checkNative(t *testing.T, b *browser, sseURL string) {
	t.Helper()
	endpoint, server, failure := b.native(t, sseURL)
	if failure != "" || !strings.HasPrefix(endpoint, "/message?sessionId=") || server != "mcp-sse-demo" {
		t.Errorf("EventSource and fetch by hand: endpoint %q, server %q, error %q", endpoint, server, failure)
	}
}

// checkStream checks what the browser saw of a session with the gateway
// at gw from a page on origin (empty for the gateway's own): one stream
// request answered with an event stream, POSTs to the announced endpoint
// all answered 202, and, across origins, each answer readable by the page.
func checkStream(t *testing.T, sent []browserRequest, gw, origin string) {
	t.Helper()
	var streams, posts int
	for _, r := range sent {
		if r.Type == network.ResourceTypePreflight || !strings.HasPrefix(r.URL, gw+"/") {
			continue
		}
		switch {
		case r.Method == "GET" && r.URL == gw+"/sse":
			streams++
			if r.Status != http.StatusOK || cdpHeader(r.ResponseHeaders, "Content-Type") != "text/event-stream" {
				t.Errorf("the stream: %d %v", r.Status, r.ResponseHeaders)
			}
		case r.Method == "POST" && strings.HasPrefix(r.URL, gw+"/message?sessionId="):
			posts++
			if r.Status != http.StatusAccepted {
				t.Errorf("POST %s: %d", r.URL, r.Status)
			}
		default:
			continue
		}
		if origin != "" && (cdpHeader(r.ResponseHeaders, "Access-Control-Allow-Origin") != origin || r.CORS != "") {
			t.Errorf("%s %s: Access-Control-Allow-Origin %q, CORS error %q", r.Method, r.URL, cdpHeader(r.ResponseHeaders, "Access-Control-Allow-Origin"), r.CORS)
		}
	}
	if streams != 1 || posts < len(browserWant) {
		t.Errorf("%d stream requests and %d POSTs to the gateway, want 1 and at least %d", streams, posts, len(browserWant))
	}
}

// checkPreflights checks that the browser preflighted requests of each of
// methods and that the gateway allowed every preflight for the page's
// origin with 204.
func checkPreflights(t *testing.T, sent []browserRequest, origin string, methods ...string) {
	t.Helper()
	seen := make(map[string]bool)
	for _, r := range preflights(sent) {
		method := cdpHeader(r.Headers, "Access-Control-Request-Method")
		seen[method] = true
		if r.Status != http.StatusNoContent || cdpHeader(r.ResponseHeaders, "Access-Control-Allow-Origin") != origin || r.CORS != "" {
			t.Errorf("preflight of %s %s (headers %q): %d %v, CORS error %q", method, r.URL,
				cdpHeader(r.Headers, "Access-Control-Request-Headers"), r.Status, r.ResponseHeaders, r.CORS)
		}
	}
	for _, method := range methods {
		if !seen[method] {
			t.Errorf("no preflight of a %s; the browser sent %+v", method, preflights(sent))
		}
	}
}

// preflights returns the CORS preflights among sent.
func preflights(sent []browserRequest) []browserRequest {
	var out []browserRequest
	for _, r := range sent {
		if r.Type == network.ResourceTypePreflight {
			out = append(out, r)
		}
	}
	return out
}

// cdpHeader returns the value of a header the browser reported, whatever the
// case of its name.
func cdpHeader(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// sameJSON reports whether got and want are the same JSON value.
func sameJSON(got json.RawMessage, want string) bool {
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}

// mustParseURL parses s.
func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// The browser in the interop matrix: the page, either on the origin of
// what it connects to ("chromium") or on an origin of its own
// ("chromium-cross-origin"). The matrix runs a client directly, then calls
// its gateway function and runs it through the gateway, in one test.
//
// The same-origin page is served, through the gateway, by the gateway's
// own site; directly, by a plain reverse proxy in front of the server,
// which keeps the Host header as Caddy's reverse_proxy does: one site that
// serves a page and the MCP endpoints.
//
// The cross-origin page is on an origin of its own, the same for both
// runs, and connects to the URL it is given. Through the gateway that
// takes allowed_origins naming the page's origin. Directly it works when
// the server answers with CORS headers (the everything server allows any
// origin); a server with no CORS support at all (the Go SDK's handlers,
// the TypeScript SDK v2's) cannot be used by a page on another origin, so
// directly the page then runs the script from the server's own origin, as
// the same-origin page does, and the results are compared with what the
// cross-origin page got through the gateway.
func init() {
	interopClients = append(interopClients,
		interopClient{name: "chromium", run: runSameOriginPage, gateway: sameOriginGateway},
		interopClient{name: "chromium-cross-origin", run: runCrossOriginPage, gateway: crossOriginGateway},
	)
}

// browserTests is the state of each test that runs a browser client.
var browserTests sync.Map // *testing.T → *browserTest

// browserTest is what the two runs of a browser client in one test share.
type browserTest struct {
	b *browser
	// crossOrigin is the origin of the cross-origin page, once started.
	crossOrigin string
	// throughGateway is set by the client's gateway function: the runs
	// from then on are through the gateway.
	throughGateway bool
}

// browserTestFor returns the state of the test, with its browser started.
func browserTestFor(t *testing.T) *browserTest {
	t.Helper()
	if bt, ok := browserTests.Load(t); ok {
		return bt.(*browserTest)
	}
	bt := &browserTest{b: startBrowser(t)}
	browserTests.Store(t, bt)
	t.Cleanup(func() { browserTests.Delete(t) })
	return bt
}

// crossOriginPage returns the origin of the test's cross-origin page,
// started on first use.
func (bt *browserTest) crossOriginPage(t *testing.T) string {
	t.Helper()
	if bt.crossOrigin == "" {
		bt.crossOrigin = pageHost(t, nil)
	}
	return bt.crossOrigin
}

// sameOriginGateway has the gateway's site serve the page.
func sameOriginGateway(t *testing.T) (subdirectives, site string) {
	t.Helper()
	browserTestFor(t).throughGateway = true
	return "", pageSite(t)
}

// crossOriginGateway has the gateway allow the cross-origin page's origin.
func crossOriginGateway(t *testing.T) (subdirectives, site string) {
	t.Helper()
	bt := browserTestFor(t)
	bt.throughGateway = true
	return "allowed_origins " + bt.crossOriginPage(t), ""
}

// runSameOriginPage is the run of the "chromium" client.
func runSameOriginPage(t *testing.T, mcpURL, transport, script string) []opResult {
	t.Helper()
	bt := browserTestFor(t)
	target := mustParseURL(t, mcpURL)
	if bt.throughGateway {
		return runPage(t, bt.b, target.Scheme+"://"+target.Host, mcpURL, transport, script)
	}
	origin := pageHost(t, target)
	return runPage(t, bt.b, origin, onOrigin(origin, target), transport, script)
}

// runCrossOriginPage is the run of the "chromium-cross-origin" client.
func runCrossOriginPage(t *testing.T, mcpURL, transport, script string) []opResult {
	t.Helper()
	bt := browserTestFor(t)
	origin := bt.crossOriginPage(t)
	run, err := loadAndRun(t, bt.b, origin, mcpURL, transport, script)
	switch {
	case err != nil:
		return failAll(loadScript(t, script), err)
	case run.Connected:
		return run.Results
	}
	refused := corsRefusal(bt.b.sent())
	if !bt.throughGateway {
		if none, answer := noCORS(t, mcpURL, origin); none {
			t.Logf("the page on %s cannot use %s, which has no CORS (%s; %s; its preflight answer: %s): running it on the server's own origin", origin, mcpURL, run.Error, refused, answer)
			target := mustParseURL(t, mcpURL)
			host := pageHost(t, target)
			return runPage(t, bt.b, host, onOrigin(host, target), transport, script)
		}
	}
	return failAll(loadScript(t, script), fmt.Errorf("the page on %s could not connect to %s: %s (%s)", origin, mcpURL, run.Error, refused))
}

// runPage runs the script at path in the page on origin, connected to
// mcpURL, and returns its results, or the script's operations all failed
// when it could not run it.
func runPage(t *testing.T, b *browser, origin, mcpURL, transport, script string) []opResult {
	t.Helper()
	run, err := loadAndRun(t, b, origin, mcpURL, transport, script)
	if err == nil && !run.Connected {
		err = fmt.Errorf("the page on %s could not connect to %s: %s (%s)", origin, mcpURL, run.Error, corsRefusal(b.sent()))
	}
	if err != nil {
		return failAll(loadScript(t, script), err)
	}
	return run.Results
}

// loadAndRun loads the page from origin and has it run the script at path
// against mcpURL.
func loadAndRun(t *testing.T, b *browser, origin, mcpURL, transport, script string) (pageRun, error) {
	t.Helper()
	b.open(t, origin+pagePath)
	return b.tryRun(t, mcpURL, transport, scriptOps(t, script), nil)
}

// noCORS reports whether mcpURL has no CORS support at all: it answers a
// preflight, as a browser sends before a POST from a page on origin, with
// 405 Method Not Allowed, as the Go SDK's and the TypeScript SDK v2's
// handlers do. (The gateway answers a preflight with 204 or 403.) It also
// returns the answer, for the log.
func noCORS(t *testing.T, mcpURL, origin string) (bool, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, mcpURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("preflight of %s: %v", mcpURL, err)
	}
	resp.Body.Close()
	none := resp.StatusCode == http.StatusMethodNotAllowed && resp.Header.Get("Access-Control-Allow-Origin") == ""
	return none, fmt.Sprintf("%s %v", resp.Status, resp.Header)
}

// corsRefusal describes the answers that the browser hid from the page
// for CORS.
func corsRefusal(sent []browserRequest) string {
	var out []string
	for _, r := range sent {
		if r.CORS != "" {
			out = append(out, fmt.Sprintf("%s %s answered %d: %s", r.Method, r.URL, r.Status, r.CORS))
		}
	}
	if len(out) == 0 {
		return "no CORS refusal"
	}
	return strings.Join(out, "; ")
}
