package mcpsse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/mcp-sse/caddy-mcp-sse/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The in-process Caddy that caddytest runs serves these.
const (
	gatewayURL = "http://127.0.0.1:9080"
	adminURL   = "http://localhost:2999"
)

// loadCaddyfile loads site blocks into the in-process Caddy as a new config
// (a reload when one is running), with the global options every test uses.
func loadCaddyfile(t *testing.T, sites string) {
	t.Helper()
	loadCaddyfileWith(t, "", sites)
}

// loadCaddyfileWith is loadCaddyfile with more global options.
func loadCaddyfileWith(t *testing.T, globals, sites string) {
	t.Helper()
	tester := caddytest.NewTester(t)
	tester.InitServer(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	skip_install_trust
	local_certs
`+globals+`
}
`+sites, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// caddyLog is a file the in-process Caddy writes its logs to as JSON lines.
type caddyLog struct {
	path string
}

// logEntry is one line of a caddyLog, with every field kept.
type logEntry map[string]any

func (e logEntry) String() string {
	b, _ := json.Marshal(map[string]any(e))
	return string(b)
}

// newCaddyLog returns a log file for the test and the global option that
// makes Caddy write the logs of the given loggers at level and above to it.
func newCaddyLog(t *testing.T, level string, loggers ...string) (*caddyLog, string) {
	l := &caddyLog{path: filepath.Join(t.TempDir(), "caddy.log")}
	include := ""
	if len(loggers) > 0 {
		include = "include " + strings.Join(loggers, " ")
	}
	return l, fmt.Sprintf(`log {
	output file %s
	format json
	level %s
	%s
}`, l.path, level, include)
}

// entries returns what was logged so far.
func (l *caddyLog) entries(t *testing.T) []logEntry {
	t.Helper()
	data, err := os.ReadFile(l.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []logEntry
	for line := range strings.Lines(string(data)) {
		var e logEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// gatewaySite is a site on gatewayURL with one mcp_sse handler for upstream
// and the given extra subdirectives; other paths answer "next".
func gatewaySite(upstream, subdirectives string) string {
	return fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	mcp_sse {
		upstream %s
		%s
	}
	respond "next" 200
}
`, upstream, subdirectives)
}

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
	// listened receives the session ID of every GET stream request.
	listened chan string

	// handler is the MCP server's; posts, once set, answers POSTs in
	// its place, to misbehave or reframe in a test's own way.
	handler http.Handler
	posts   atomic.Pointer[http.HandlerFunc]
	// failDeletes makes every DELETE fail with 502, after it is recorded.
	failDeletes atomic.Bool

	mu          sync.Mutex
	postHeaders []http.Header
	protos      map[string]string // the protocol of each client connection, by remote address
}

// newTestUpstream starts a test upstream that speaks HTTP/1.1 only.
func newTestUpstream(t *testing.T) *testUpstream {
	t.Helper()
	return startTestUpstream(t, false)
}

// newH2CTestUpstream starts a test upstream that also takes h2c.
func newH2CTestUpstream(t *testing.T) *testUpstream {
	t.Helper()
	return startTestUpstream(t, true)
}

func startTestUpstream(t *testing.T, h2c bool) *testUpstream {
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
	u.handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		if r.Method != "PRI" { // an HTTP/1.1 server hands the h2c probe to its handler
			u.protos[r.RemoteAddr] = r.Proto
		}
		if r.Method == http.MethodPost {
			u.postHeaders = append(u.postHeaders, r.Header.Clone())
		}
		u.mu.Unlock()
		if r.Method == http.MethodPost {
			if posts := u.posts.Load(); posts != nil {
				(*posts)(w, r)
				return
			}
		}
		switch r.Method {
		case http.MethodDelete:
			u.deleted <- r.Header.Get(headerSessionID)
			if u.failDeletes.Load() {
				http.Error(w, "deletes fail today", http.StatusBadGateway)
				return
			}
		case http.MethodGet:
			u.listened <- r.Header.Get(headerSessionID)
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
		body, err := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err == nil && bytes.Contains(body, name) {
			answer(w, r)
			return
		}
		u.handler.ServeHTTP(w, r)
	})
	u.posts.Store(&h)
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

// connect opens an MCP session through the gateway with the official Go
// SDK's SSE client transport.
func connect(t *testing.T, endpoint string, opts *mcp.ClientOptions, httpClient *http.Client) *mcp.ClientSession {
	t.Helper()
	// The SSE transport ties its stream to this context, so it must
	// outlive the connect call.
	client := mcp.NewClient(&mcp.Implementation{Name: "gateway-test", Version: "1.0.0"}, opts)
	cs, err := client.Connect(t.Context(), &mcp.SSEClientTransport{Endpoint: endpoint, HTTPClient: httpClient}, nil)
	if err != nil {
		t.Fatalf("connecting to %s: %v", endpoint, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// callText calls a tool and returns the text of its result.
func callText(ctx context.Context, cs *mcp.ClientSession, name string, args map[string]any) (string, error) {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return "", err
	}
	if res.IsError || len(res.Content) != 1 {
		return "", fmt.Errorf("tool %s failed: %+v", name, res.Content)
	}
	txt, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		return "", fmt.Errorf("tool %s returned %T", name, res.Content[0])
	}
	return txt.Text, nil
}

// rawStream is an SSE client that reads the gateway's stream line by line,
// for what the SDK clients hide: comments, ids, framing.
type rawStream struct {
	resp     *http.Response
	lines    *bufio.Reader
	endpoint string
}

// openRaw opens a stream and reads its endpoint event.
func openRaw(t *testing.T, client *http.Client, url string, header http.Header) *rawStream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	s, err := openStream(client, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.resp.Body.Close() })
	return s
}

// openStream opens a stream and reads its endpoint event; it fails no test,
// for use in goroutines.
func openStream(client *http.Client, req *http.Request) (*rawStream, error) {
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	s := &rawStream{resp: resp, lines: bufio.NewReader(resp.Body)}
	ev, err := s.next()
	if err == nil && ev.name != "endpoint" {
		err = fmt.Errorf("first event is %q, want endpoint", ev.name)
	}
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("reading the endpoint event: %w", err)
	}
	s.endpoint = string(ev.data)
	return s, nil
}

// rawEvent is one event or comment as it came over the wire.
type rawEvent struct {
	name, id string
	data     []byte
	comment  string
	lines    []string
}

// next reads the next event or comment block.
func (s *rawStream) next() (rawEvent, error) {
	var ev rawEvent
	for {
		line, err := s.lines.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" && len(ev.lines) == 0 {
				return ev, io.EOF
			}
			return ev, fmt.Errorf("reading stream: %w (partial %q)", err, line)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if len(ev.lines) == 0 {
				continue
			}
			return ev, nil
		}
		ev.lines = append(ev.lines, line)
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			ev.comment = value
		case "event":
			ev.name = value
		case "id":
			ev.id = value
		case "data":
			ev.data = append(ev.data, value...)
		}
	}
}

// nextMessage skips comments and returns the next message event.
func (s *rawStream) nextMessage() (rawEvent, error) {
	for {
		ev, err := s.next()
		if err != nil || ev.comment == "" {
			return ev, err
		}
	}
}

// post sends body to the stream's message endpoint and returns the status.
func (s *rawStream) post(t *testing.T, body string) int {
	t.Helper()
	resp, err := http.Post(gatewayURL+s.endpoint, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", s.endpoint, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// initialize sends initialize and waits for its answer on the stream.
func (s *rawStream) initialize(client *http.Client, base string) error {
	resp, err := client.Post(base+s.endpoint, "application/json", strings.NewReader(initializeRequest))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("initialize answered %s", resp.Status)
	}
	ev, err := s.nextMessage()
	if err != nil {
		return err
	}
	if !strings.Contains(string(ev.data), `"result"`) {
		return errors.New("initialize failed: " + string(ev.data))
	}
	return nil
}

const initializeRequest = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// bounded returns a context for calls that must not hang the test run.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it returns nil, for states that announce
// themselves by no signal a test can wait on.
func waitFor(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
