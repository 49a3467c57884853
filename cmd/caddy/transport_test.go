package main

import (
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

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

// TestIdleUpstreamStreamsHoldNoGoroutine: over h2c, the relay of a
// session's upstream GET stream parks while the stream is idle, with no
// goroutine waiting on it, and goes on when the upstream sends: every
// client gets each message sent on the streams, in rounds, and between
// rounds no goroutine waits on one.
func TestIdleUpstreamStreamsHoldNoGoroutine(t *testing.T) {
	const sessions = 20
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	changed := make(chan struct{}, 2*sessions)
	opts := &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			changed <- struct{}{}
		},
	}
	clients := make([]*mcp.ClientSession, sessions)
	for i := range clients {
		clients[i] = connect(t, gatewayURL+"/sse", opts, nil)
	}
	for range sessions {
		select {
		case <-up.listened:
		case <-bounded(t).Done():
			t.Fatal("the gateway did not open every upstream GET stream")
		}
	}
	for round := range 2 {
		waitFor(t, readersWaitingOnStreams)
		// Adding a tool makes the upstream announce it on every GET
		// stream.
		mcp.AddTool(up.server, &mcp.Tool{Name: fmt.Sprintf("late%d", round)}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{}, nil, nil
		})
		for range sessions {
			select {
			case <-changed:
			case <-bounded(t).Done():
				t.Fatalf("round %d: notifications/tools/list_changed did not reach every client", round)
			}
		}
	}
	waitFor(t, readersWaitingOnStreams)
	if got, err := callText(bounded(t), clients[0], "echo", map[string]any{"text": "hi"}); err != nil || got != "hi" {
		t.Errorf("echo = %q, %v", got, err)
	}
}

// readersWaitingOnStreams fails while a goroutine of the process waits
// in the read of a stream of the gateway's own HTTP/2 connections: with
// no call in flight, only a GET stream's relay could.
func readersWaitingOnStreams() error {
	var dump bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&dump, 2); err != nil {
		return err
	}
	n := 0
	for g := range strings.SplitSeq(dump.String(), "\n\n") {
		if strings.Contains(g, "caddy-mcp-sse.(*h2Stream).Read(") {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("%d goroutines wait to read an upstream stream", n)
	}
	return nil
}
