package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// TestSessionsLeaveNoGoroutines opens 1,000 initialized sessions, each with
// its upstream GET stream, and ends them in every way a session ends: the
// client leaves, max_lifetime passes (each followed by the resume window),
// a reload removes the handler, the client leaves while the upstream fails
// every DELETE. Once the gateway is
// gone, no goroutine the test did not find at its start may be left.
func TestSessionsLeaveNoGoroutines(t *testing.T) {
	const perWay = 250
	up := newTestUpstream(t)
	failing := newTestUpstream(t)
	failing.failDeletes.Store(true)
	handlers := map[string]string{
		"/gone":    handler(up.URL, "/gone", ""),
		"/life":    handler(up.URL, "/life", "max_lifetime 2s"), // long enough to open 1,000 sessions under -race
		"/removed": handler(up.URL, "/removed", ""),
		"/faildel": handler(failing.URL, "/faildel", ""),
	}
	site := func(prefixes ...string) string {
		s := "http://127.0.0.1:9080 {\n\tbind 127.0.0.1\n"
		for _, p := range prefixes {
			s += "\t" + handlers[p] + "\n"
		}
		return s + "\trespond \"next\" 200\n}\n"
	}
	// Caddy's own servers and the clients' pools are not what this test
	// is about: it starts from a running config and ends on one, and
	// ignores what those hold.
	loadCaddyfile(t, site())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	before := goleak.IgnoreCurrent()

	loadCaddyfile(t, site("/gone", "/life", "/removed", "/faildel"))
	streams := map[string][]*rawStream{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	errs := make(chan error, 4*perWay)
	for _, prefix := range []string{"/gone", "/life", "/removed", "/faildel"} {
		for range perWay {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				s, err := openInitialized(client, prefix)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				streams[prefix] = append(streams[prefix], s)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("opening sessions: %v", err)
	}

	for _, s := range streams["/gone"] {
		s.resp.Body.Close()
	}
	for _, s := range streams["/faildel"] {
		s.resp.Body.Close()
	}
	loadCaddyfile(t, site("/gone", "/life", "/faildel"))
	for _, prefix := range []string{"/life", "/removed"} {
		for _, s := range streams[prefix] {
			if _, err := io.Copy(io.Discard, s.resp.Body); err != nil {
				t.Errorf("a %s stream broke instead of ending: %v", prefix, err)
			}
			s.resp.Body.Close()
		}
	}
	for range 3 * perWay {
		up.waitDeleted(t)
	}
	for range perWay {
		failing.waitDeleted(t)
	}

	loadCaddyfile(t, site())
	// The upstream whose DELETEs failed still holds its sessions; that
	// is the test's server, not the gateway.
	for ss := range failing.server.Sessions() {
		_ = ss.Close()
	}
	// caddytest talks to the admin endpoint with the default transport.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	client.CloseIdleConnections()
	// An old server's Shutdown waits up to 5 s for connections a client
	// opened and never used (Go's transport dials such spares), so the
	// check runs until it passes or waitFor gives up.
	waitFor(t, func() error {
		return leftSince(before)
	})
}

// leftSince returns an error naming the goroutines started since before
// that are still running, besides what the last config load started.
func leftSince(before goleak.Option) error {
	return goleak.Find(before,
		goleak.IgnoreAnyFunction("net/http.(*Server).Serve"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/caddy/v2/modules/caddypki.(*PKI).maintenanceForCA"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/caddy/v2/modules/caddytls.(*TLS).keepStorageClean.func1"),
	)
}

// handler is an mcp_sse directive whose sessions wait briefly for their
// clients to come back, so that the test sees them end.
func handler(upstream, prefix, more string) string {
	return fmt.Sprintf("mcp_sse {\n\t\tupstream %s\n\t\tprefix %s\n\t\tresume_window 200ms\n\t\t%s\n\t}", upstream, prefix, more)
}

// openInitialized opens a session under prefix and initializes it, with
// the notifications/initialized that makes the gateway open the upstream's
// GET stream too.
func openInitialized(client *http.Client, prefix string) (*rawStream, error) {
	req, err := http.NewRequest(http.MethodGet, gatewayURL+prefix+"/sse", nil)
	if err != nil {
		return nil, err
	}
	s, err := openStream(client, req)
	if err != nil {
		return nil, err
	}
	if err := s.initialize(client, gatewayURL); err != nil {
		s.resp.Body.Close()
		return nil, err
	}
	resp, err := client.Post(gatewayURL+s.endpoint, "application/json", strings.NewReader(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		s.resp.Body.Close()
		return nil, err
	}
	resp.Body.Close()
	return s, nil
}

// TestStatelessSessionsLeaveNoGoroutines opens sessions in front of a
// server of revision 2026-07-28, each with its subscriptions/listen
// stream (the server announces tool list changes), a resource
// subscription, and a call still waiting upstream when the client leaves;
// once the sessions have ended and the handler is gone, no goroutine the
// test did not find at its start may be left.
func TestStatelessSessionsLeaveNoGoroutines(t *testing.T) {
	const sessions = 50
	up := startStatelessGoServer(t)
	site := func(withHandler bool) string {
		s := "http://127.0.0.1:9080 {\n\tbind 127.0.0.1\n"
		if withHandler {
			s += "\t" + handler(up.url, "/s", "") + "\n"
		}
		return s + "\trespond \"next\" 200\n}\n"
	}
	loadCaddyfile(t, site(false))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	before := goleak.IgnoreCurrent()

	loadCaddyfile(t, site(true))
	for i := range sessions {
		s, err := openInitialized(client, "/s")
		if err != nil {
			t.Fatalf("opening session %d: %v", i, err)
		}
		s.post(t, `{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"interop://greeting"}}`)
		s.post(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"wait","arguments":{}}}`)
		s.resp.Body.Close()
	}
	loadCaddyfile(t, site(false))

	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	client.CloseIdleConnections()
	waitFor(t, func() error { return leftSince(before) })
}
