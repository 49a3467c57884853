package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestUpstreamGetsLatestCredentials runs an upstream that takes one token
// at a time on its GET stream, as a resource server does once a token has
// expired. The client opens its session with token one and then posts with
// token two: the GET stream, which the upstream cut and then refused for
// token one, opens again with token two, and the DELETE carries token two.
func TestUpstreamGetsLatestCredentials(t *testing.T) {
	up := newTestUpstream(t)
	var valid atomic.Value
	valid.Store("Bearer one")
	gets := make(chan string, 64)
	deletes := make(chan string, 4)
	var mu sync.Mutex
	var cutGet context.CancelFunc
	gate := func(w http.ResponseWriter, r *http.Request) *http.Request {
		auth := r.Header.Get("Authorization")
		switch r.Method {
		case http.MethodDelete:
			deletes <- auth
		case http.MethodGet:
			gets <- auth
			if auth != valid.Load() {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				http.Error(w, "token expired", http.StatusUnauthorized)
				return nil
			}
			ctx, cancel := context.WithCancel(r.Context())
			mu.Lock()
			cutGet = cancel
			mu.Unlock()
			return r.WithContext(ctx)
		}
		return r
	}
	up.gate.Store(&gate)
	loadCaddyfile(t, gatewaySite(up.URL, "resume_window off"))

	one := &http.Client{Transport: headerTransport{"Authorization": "Bearer one"}}
	two := &http.Client{Transport: headerTransport{"Authorization": "Bearer two"}}
	stream := openRaw(t, one, gatewayURL+"/sse", nil)
	if err := stream.initialize(one, gatewayURL); err != nil {
		t.Fatal(err)
	}
	stream.postVia(t, one, gatewayURL, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	waitGet := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case got := <-gets:
				if got == want {
					return
				}
			case <-timeout:
				t.Fatalf("the upstream GET stream never came with %q", want)
			}
		}
	}
	waitGet("Bearer one")

	valid.Store("Bearer two")
	mu.Lock()
	cutGet()
	mu.Unlock()
	// The gateway opens the cut stream again, still with token one, and
	// is refused.
	waitGet("Bearer one")

	if code := stream.postVia(t, two, gatewayURL, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"two"}}}`); code != http.StatusAccepted {
		t.Fatalf("POST with token two: %d", code)
	}
	if ev, err := stream.nextMessage(); err != nil || !strings.Contains(string(ev.data), `"two"`) {
		t.Fatalf("answer %q, %v", ev.data, err)
	}
	waitGet("Bearer two")

	stream.resp.Body.Close()
	select {
	case got := <-deletes:
		if got != "Bearer two" {
			t.Errorf("the DELETE carried %q, want the latest token", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream session was never deleted")
	}
}
