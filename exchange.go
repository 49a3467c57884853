package mcpsse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// exchange POSTs m upstream under ctx and relays the answer; v, if a POST
// waits for it, learns the status the upstream answered with. written runs
// once m has been written upstream; for initialize only once its response
// is in, since every later message needs the session ID and protocol
// version it brings; for notifications/initialized only once the
// upstream's GET stream is open, so that a message the upstream sends on
// it during the next request is not lost.
//
// The gateway answers a client's server/discover itself. A client's
// initialize first asks which revision the upstream speaks (unless
// upstream_protocol pins 2025-11-25); for one of revisionStateless the
// gateway answers it, and every later message of the session goes to
// exchangeStateless instead.
func (s *session) exchange(ctx context.Context, m message, header http.Header, written func(), cfg *settings, v *verdict) error {
	initialize := m.kind == kindRequest && m.method == "initialize"
	switch {
	case m.kind == kindRequest && m.method == "server/discover":
		// The client's side of the gateway is a 2024-11-05 transport
		// whose sessions initialize, as a server of that revision has
		// it: the client falls back to initialize, whatever revision the
		// gateway speaks upstream.
		v.give(nil)
		s.answer(ctx, errorResponse(m.id, codeMethodNotFound, "method not found: "+m.method))
		written()
		return nil
	case initialize && cfg.upstreamProtocol != upstreamProtocolSession:
		if answered, err := s.initializeStateless(ctx, m, header, written, cfg, v); answered {
			return err
		}
	case s.isStateless():
		return s.exchangeStateless(ctx, m, header, written, cfg, v)
	}
	initialized := m.kind == kindNotification && m.method == "notifications/initialized"
	onWritten := written
	if initialize || initialized {
		onWritten = nil
	}
	header.Set("Content-Type", "application/json")
	header.Set("Accept", "application/json, text/event-stream")
	header = s.upstreamHeader(header)
	up := s.store.upstream
	defer observeDuration(http.MethodPost, time.Now())
	resp, err := up.send(ctx, http.MethodPost, m.raw, header, onWritten, cfg.upstreamTimeout)
	if stale := header.Get(headerSessionID); err == nil && resp.StatusCode == http.StatusNotFound && stale != "" && !initialize && !m.quiet {
		// The upstream forgot the session (it restarted, say): initialize
		// a new one as the client did, and send m once more. Not for the
		// gateway's own messages, which reinitialize itself sends.
		resp.Body.Close()
		if err := s.reinitialize(ctx, stale, header, cfg); err != nil {
			return fmt.Errorf("initializing the upstream session again: %w", err)
		}
		resp, err = up.send(ctx, http.MethodPost, m.raw, s.upstreamHeader(header), nil, cfg.upstreamTimeout)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if se, ok := errors.AsType[*statusError](checkStatus(resp)); ok && se.refusesCredential() {
		v.give(se)
	}
	v.give(nil)

	if initialize && resp.StatusCode/100 == 2 {
		if id := resp.Header.Get(headerSessionID); id != "" {
			s.setUpstreamSession(ctx, id)
		}
	}
	var onResponse func(message)
	if initialize {
		onResponse = func(r message) {
			s.setProtocol(ctx, negotiatedVersion(r.raw))
			written()
		}
	}
	if err := s.relayAnswer(ctx, resp, m, onResponse, cfg); err != nil {
		return err
	}
	if initialized {
		s.markInitialized(ctx)
	}
	// Every exchange that went through may reopen a GET stream the
	// upstream refused before, now with the client's newer credentials.
	if run := s.listen(ctx); run != nil && initialized {
		// The run's context is under ctx, so the run is marked opened
		// as soon as ctx ends too: no need to ask ctx for a channel,
		// which its scope would keep for the upstream session's life.
		t := time.NewTimer(maxListenOpenWait)
		select {
		case <-run.opened:
		case <-t.C:
		}
		t.Stop()
		written()
	}
	return nil
}

// maxListenOpenWait bounds how long the message after
// notifications/initialized waits for the upstream's GET stream to open:
// servers answer its headers at once, and one that holds them back until
// its first event must not hold up the session's first call for long.
const maxListenOpenWait = time.Second

// negotiatedVersion reads the protocol version from an initialize response.
func negotiatedVersion(raw []byte) string {
	var r struct {
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"result"`
	}
	_ = json.Unmarshal(raw, &r)
	return r.Result.ProtocolVersion
}
