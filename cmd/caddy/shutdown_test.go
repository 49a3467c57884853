package main

import (
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestShutdownEndsStreamsPromptly opens 1,000 initialized sessions on a
// Caddy process and stops it with SIGTERM under Caddy's default, eternal
// grace period: every stream must end, every upstream session must be
// deleted, and the process must exit, within the 5 seconds the module
// promises (a handler that ended streams only in Cleanup would hang here
// forever).
func TestShutdownEndsStreamsPromptly(t *testing.T) {
	const sessions = 1000
	up := newTestUpstream(t)
	caddy, addr := startGateway(t, up.URL, "")
	streams := openSessions(t, "http://"+addr, sessions)
	stopWithin(t, caddy, 5*time.Second)
	for i, s := range streams {
		if _, err := io.Copy(io.Discard, s.resp.Body); err != nil {
			t.Errorf("stream %d broke instead of ending: %v", i, err)
			break
		}
	}
	if n := len(up.deleted); n != sessions {
		t.Errorf("%d upstream sessions deleted, want %d", n, sessions)
	}
}

// TestShutdownWithSilentUpstreamIsBounded stops Caddy with 10,000
// initialized sessions whose upstream takes every DELETE and never answers
// it: Caddy still exits within 5 seconds, and says in its log how many
// upstream sessions it could not delete.
func TestShutdownWithSilentUpstreamIsBounded(t *testing.T) {
	const sessions = 10000
	up := newTestUpstream(t)
	up.holdDeletes.Store(true)
	caddy, addr := startGateway(t, up.URL, "upstream_stream off")
	openSessions(t, "http://"+addr, sessions)
	stopWithin(t, caddy, 5*time.Second)
	ended := caddy.logged(t, "sessions ended")
	if len(ended) != 1 {
		t.Fatalf("logged %d summaries of the ended sessions, want 1", len(ended))
	}
	if n := ended[0]["upstream_sessions_not_deleted"]; n != float64(sessions) {
		t.Errorf("logged %v upstream sessions not deleted, want %d: %v", n, sessions, ended[0])
	}
}

// openSessions opens n initialized sessions on the gateway at base, each
// stream on a connection of its own.
func openSessions(t *testing.T, base string, n int) []*rawStream {
	t.Helper()
	streamClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	postClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	streams := make([]*rawStream, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 50)
	for i := range streams {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			req, err := http.NewRequest(http.MethodGet, base+"/sse", nil)
			var s *rawStream
			if err == nil {
				s, err = openStream(streamClient, req)
			}
			if err == nil {
				err = s.initialize(postClient, base)
			}
			streams[i] = s
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("opening sessions: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, s := range streams {
			s.resp.Body.Close()
		}
	})
	// Connections the clients opened but never sent a request on would
	// hold Go's server Shutdown for 5 seconds, whatever the handler does.
	postClient.CloseIdleConnections()
	streamClient.CloseIdleConnections()
	return streams
}

// stopWithin sends SIGTERM to Caddy and fails unless it exits cleanly
// within d, under Caddy's default, eternal grace period.
func stopWithin(t *testing.T, caddy *caddyProcess, d time.Duration) {
	t.Helper()
	start := time.Now()
	if err := caddy.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- caddy.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("caddy exited with %v", err)
		}
	case <-time.After(d):
		t.Fatalf("caddy still running %v after SIGTERM", d)
	}
	t.Logf("caddy exited %v after SIGTERM", time.Since(start))
}
