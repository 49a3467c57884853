package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// post sends body with a content type to the gateway and returns the
// status and body of the answer.
func post(t *testing.T, path, contentType, body string, header http.Header) (int, string) {
	t.Helper()
	return postBody(t, path, contentType, strings.NewReader(body), header)
}

// postChunked is post with a body of no declared length, sent chunked.
func postChunked(t *testing.T, path, contentType, body string) (int, string) {
	t.Helper()
	return postBody(t, path, contentType, io.MultiReader(strings.NewReader(body)), nil)
}

func postBody(t *testing.T, path, contentType string, body io.Reader, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gatewayURL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBadMessagesAreRefusedAndSessionStaysUsable(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "max_message_size 1KiB"))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	if err := stream.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatal(err)
	}
	up.mu.Lock()
	postsBefore := len(up.postHeaders)
	up.mu.Unlock()

	tests := []struct {
		name, contentType, body string
		status, rpcCode         int
		chunked                 bool
	}{
		{"form content type", "application/x-www-form-urlencoded", `{"jsonrpc":"2.0","method":"a"}`, 415, 0, false},
		{"text content type", "text/plain", `{"jsonrpc":"2.0","method":"a"}`, 415, 0, false},
		{"malformed JSON", "application/json", `{"jsonrpc"`, 400, codeParseError, false},
		{"a number", "application/json", `42`, 400, codeInvalidRequest, false},
		{"empty object", "application/json", `{}`, 400, codeInvalidRequest, false},
		{"wrong jsonrpc", "application/json", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, 400, codeInvalidRequest, false},
		{"over max_message_size", "application/json", `{"jsonrpc":"2.0","method":"x","params":{"pad":"` + strings.Repeat("x", 2048) + `"}}`, 413, 0, false},
		{"over max_message_size, chunked", "application/json", `{"jsonrpc":"2.0","method":"x","params":{"pad":"` + strings.Repeat("x", 2048) + `"}}`, 413, 0, true},
		{"malformed JSON, chunked", "application/json", `{"jsonrpc"`, 400, codeParseError, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, stream.endpoint, tc.contentType, tc.body, nil)
			if tc.chunked {
				status, body = postChunked(t, stream.endpoint, tc.contentType, tc.body)
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d (body %q)", status, tc.status, body)
			}
			if tc.rpcCode != 0 {
				var e errorMessage
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != tc.rpcCode {
					t.Errorf("body %q, want JSON-RPC error %d", body, tc.rpcCode)
				}
			}
		})
	}
	up.mu.Lock()
	leaked := len(up.postHeaders) - postsBefore
	up.mu.Unlock()
	if leaked != 0 {
		t.Errorf("%d refused messages reached the upstream", leaked)
	}
	status, _ := post(t, stream.endpoint, "application/json", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"still here"}}}`, nil)
	ev, err := stream.nextMessage()
	if status != http.StatusAccepted || err != nil || !strings.Contains(string(ev.data), "still here") {
		t.Errorf("after refused messages: %d, %q, %v; want the session to work", status, ev.data, err)
	}
	status, _ = postChunked(t, stream.endpoint, "application/json", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"text":"chunked"}}}`)
	ev, err = stream.nextMessage()
	if status != http.StatusAccepted || err != nil || !strings.Contains(string(ev.data), `"chunked"`) {
		t.Errorf("a chunked message: %d, %q, %v; want its answer", status, ev.data, err)
	}
}

func TestMaxSessions(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "max_sessions 2"))
	openRaw(t, nil, gatewayURL+"/sse", nil)
	openRaw(t, nil, gatewayURL+"/sse", nil)
	resp, err := http.Get(gatewayURL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third stream: %s with Retry-After %q; want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
}

func TestForeignOriginsRefused(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "allowed_origins https://app.example.com"))
	stream := openRaw(t, nil, gatewayURL+"/sse", http.Header{"Origin": {"https://app.example.com"}})
	tests := []struct {
		origin string
		status int
	}{
		{"", http.StatusAccepted},
		{"http://127.0.0.1:9080", http.StatusAccepted},
		{"https://app.example.com", http.StatusAccepted},
		{"https://evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
	}
	for _, tc := range tests {
		var h http.Header
		if tc.origin != "" {
			h = http.Header{"Origin": {tc.origin}}
		}
		if status, _ := post(t, stream.endpoint, "application/json", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h); status != tc.status {
			t.Errorf("POST with Origin %q: %d, want %d", tc.origin, status, tc.status)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/sse", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("stream with a foreign Origin: %s, want 403", resp.Status)
	}
}

func TestSessionsBelongToTheirUser(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	basic_auth {
		alice %s
		bob %s
	}
	mcp_sse {
		upstream %s
	}
}`, bcryptHash(t, "alice-pw"), bcryptHash(t, "bob-pw"), up.URL))
	alice := http.Header{"Authorization": {basicAuth("alice", "alice-pw")}}
	bob := http.Header{"Authorization": {basicAuth("bob", "bob-pw")}}
	stream := openRaw(t, nil, gatewayURL+"/sse", alice)
	if status, _ := post(t, stream.endpoint, "application/json", initializeRequest, bob); status != http.StatusNotFound {
		t.Errorf("bob posting to alice's session: %d, want 404", status)
	}
	if status, _ := post(t, stream.endpoint, "application/json", initializeRequest, alice); status != http.StatusAccepted {
		t.Errorf("alice posting to her session: %d, want 202", status)
	}
	if ev, err := stream.nextMessage(); err != nil || !strings.Contains(string(ev.data), `"id":1,"result"`) {
		t.Errorf("alice's answer: %q, %v", ev.data, err)
	}
}

// bcryptHash hashes a password for basic_auth at the lowest cost, to keep
// the tests quick.
func bcryptHash(t *testing.T, password string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// smallReceiveBuffer makes a client socket that fills up quickly.
func smallReceiveBuffer(_, _ string, c syscall.RawConn) error {
	var sockErr error
	err := c.Control(func(fd uintptr) {
		sockErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return sockErr
}

func basicAuth(user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return req.Header.Get("Authorization")
}

func TestSlowClientIsDisconnected(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "send_timeout 300ms\n\t\tqueue_size 2"))

	// A client that never reads its stream, with a small receive buffer.
	dialer := &net.Dialer{Control: smallReceiveBuffer}
	stuckClient := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	stuck := openRaw(t, stuckClient, gatewayURL+"/sse", nil)
	if err := stuck.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1<<20)
	for i := range 16 {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":%q}}}`, i+2, big)
		if status, _ := post(t, stuck.endpoint, "application/json", body, nil); status != http.StatusAccepted {
			// The session may already be gone: that is the point.
			break
		}
	}
	up.waitDeleted(t)
	if status := stuck.post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); status != http.StatusNotFound {
		t.Errorf("the stuck session still takes messages: %d", status)
	}
	// Other sessions keep working.
	cs := connect(t, gatewayURL+"/sse", nil, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if got, err := callText(ctx, cs, "echo", map[string]any{"text": "fine"}); err != nil || got != "fine" {
		t.Errorf("another session: %q, %v", got, err)
	}
}

// TestMessagesInFlightAreBounded posts 1,000 calls of a tool that blocks
// to one session: the first max_in_flight (64 by default) go upstream, the
// rest get 429 with Retry-After and a JSON-RPC error for their id, so the
// upstream never holds more than 64 of them (over HTTP/1.1, 64
// connections). Once the calls return, the session takes messages again.
func TestMessagesInFlightAreBounded(t *testing.T) {
	const calls, inFlight = 1000, defaultMaxInFlight
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	if err := stream.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatal(err)
	}
	stream.post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	waitFor(t, func() error {
		if n := adminSessions(t)[0].MessagesInFlight; n != 0 {
			return fmt.Errorf("%d messages still in flight", n)
		}
		return nil
	})

	accepted := 0
	for i := range calls {
		id := 100 + i
		status, body := post(t, stream.endpoint, "application/json",
			fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"block"}}`, id), nil)
		switch status {
		case http.StatusAccepted:
			accepted++
		case http.StatusTooManyRequests:
			var answer struct {
				ID    int `json:"id"`
				Error struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.ID != id || answer.Error.Code != codeServerBusy {
				t.Fatalf("call %d: 429 with body %q, want a JSON-RPC error for id %d", i, body, id)
			}
		default:
			t.Fatalf("call %d: %d %s", i, status, body)
		}
	}
	if accepted != inFlight {
		t.Errorf("%d calls accepted, want %d", accepted, inFlight)
	}
	resp, err := http.Post(gatewayURL+stream.endpoint, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("one more while full: %s with Retry-After %q, want 429 with one", resp.Status, resp.Header.Get("Retry-After"))
	}
	// The server/discover (whose event stream the gateway stops reading
	// at its response), the initialize, the GET stream and one spare
	// beside the calls.
	if n := len(up.connections()); n > inFlight+4 {
		t.Errorf("the upstream was called on %d connections for %d calls in flight", n, inFlight)
	}

	close(up.release)
	for range accepted {
		ev, err := stream.nextMessage()
		if err != nil || !strings.Contains(string(ev.data), "released") {
			t.Fatalf("answer %q, %v", ev.data, err)
		}
	}
	waitFor(t, func() error {
		if code := stream.post(t, `{"jsonrpc":"2.0","id":2,"method":"ping"}`); code != http.StatusAccepted {
			return fmt.Errorf("a ping after the calls returned: %d", code)
		}
		return nil
	})
}
