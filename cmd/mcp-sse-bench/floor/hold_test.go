package floor

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// serve runs h behind an httptest server, with its Caddy error as the status.
func serve(t *testing.T, h *Hold) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var he caddyhttp.HandlerError
		if err := h.ServeHTTP(w, r, nil); errors.As(err, &he) {
			w.WriteHeader(he.StatusCode)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestHoldStream: a GET gets the endpoint event, then pings, until the
// client leaves.
func TestHoldStream(t *testing.T) {
	h := &Hold{PingInterval: caddy.Duration(20 * time.Millisecond)}
	srv := serve(t, h)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("got %s, %q; want 200 text/event-stream", resp.Status, ct)
	}
	r := bufio.NewReader(resp.Body)
	var got strings.Builder
	for !strings.HasSuffix(got.String(), string(pingComment)+string(pingComment)) {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream after %q: %v", got.String(), err)
		}
		got.WriteString(line)
	}
	if want := string(endpointEvent) + string(pingComment); !strings.HasPrefix(got.String(), want) {
		t.Errorf("stream began %q, want %q", got.String(), want)
	}
}

// TestHoldStopping: the stream ends when the config stops.
func TestHoldStopping(t *testing.T) {
	h := &Hold{PingInterval: caddy.Duration(time.Hour), stopping: make(chan struct{})}
	srv := serve(t, h)
	resp, err := http.Get(srv.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for range strings.Count(string(endpointEvent), "\n") {
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	close(h.stopping)
	if line, err := r.ReadString('\n'); err == nil {
		t.Errorf("the stream went on with %q after stopping", line)
	}
}

// TestHoldTakesPOST: a message is read and accepted, one over the limit
// refused; other methods are refused.
func TestHoldTakesPOST(t *testing.T) {
	srv := serve(t, &Hold{PingInterval: caddy.Duration(time.Second)})
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, http.StatusAccepted},
		{strings.Repeat(" ", maxMessage+1), http.StatusBadRequest},
	} {
		resp, err := http.Post(srv.URL+"/message?sessionId=x", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST of %d bytes got %s, want %d", len(tc.body), resp.Status, tc.want)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/message?sessionId=x", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, POST" {
		t.Errorf("DELETE got %s, Allow %q; want 405, Allow GET, POST", resp.Status, resp.Header.Get("Allow"))
	}
}

// TestUntilPing: a connection's pings fall on its phase of the grid.
func TestUntilPing(t *testing.T) {
	interval := 15 * time.Second
	for _, conn := range []uint64{0, 1, 7_000_000_000, 1 << 63} {
		d := untilPing(conn, interval)
		if d <= 0 || d > interval {
			t.Fatalf("conn %d: next ping in %v, want within (0, %v]", conn, d, interval)
		}
		at := time.Since(pingEpoch) + d
		phase := time.Duration(conn % uint64(interval))
		if off := ((at-phase)%interval + interval) % interval; off > 50*time.Millisecond && off < interval-50*time.Millisecond {
			t.Errorf("conn %d: ping %v into the grid, off its phase %v", conn, at%interval, phase)
		}
	}
}
