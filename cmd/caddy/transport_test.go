package main

import (
	"fmt"
	"testing"

	"golang.org/x/sync/errgroup"
)

// TestUpstreamMultiplexedOverH2C: with an upstream that takes h2c, the
// sessions' POSTs and GET streams share one HTTP/2 connection.
func TestUpstreamMultiplexedOverH2C(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	callEachSession(t, 40)

	conns := up.connections()
	if len(conns) != 1 {
		t.Errorf("the upstream was called on %d connections, want 1: %v", len(conns), conns)
	}
	for addr, proto := range conns {
		if proto != "HTTP/2.0" {
			t.Errorf("connection %s spoke %s, want HTTP/2.0", addr, proto)
		}
	}
}

// TestUpstreamHTTP1Only: an upstream that does not take h2c is called over
// HTTP/1.1, and works.
func TestUpstreamHTTP1Only(t *testing.T) {
	up := newHTTP1TestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	callEachSession(t, 5)

	conns := up.connections()
	if len(conns) == 0 {
		t.Fatal("the upstream was never called")
	}
	for addr, proto := range conns {
		if proto != "HTTP/1.1" {
			t.Errorf("connection %s spoke %s, want HTTP/1.1", addr, proto)
		}
	}
}

// callEachSession opens n sessions through the gateway at once and calls
// echo on each.
func callEachSession(t *testing.T, n int) {
	t.Helper()
	ctx := bounded(t)
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			cs := connect(t, gatewayURL+"/sse", nil, nil)
			want := fmt.Sprint("session ", i)
			got, err := callText(ctx, cs, "echo", map[string]any{"text": want})
			if err != nil || got != want {
				return fmt.Errorf("echo(%q) = %q, %v", want, got, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}
