package mcpsse

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// exchange POSTs m upstream under ctx and relays the answer. written runs
// once m has been written upstream; for initialize only once its response
// is in, since every later message needs the session ID and protocol
// version it brings.
func (s *session) exchange(ctx context.Context, m message, header http.Header, written func(), cfg *settings) error {
	initialize := m.kind == kindRequest && m.method == "initialize"
	onWritten := written
	if initialize {
		onWritten = nil
	}
	header.Set("Content-Type", "application/json")
	header.Set("Accept", "application/json, text/event-stream")
	header = s.upstreamHeader(header)
	up := s.store.upstream
	req, err := up.newRequest(ctx, http.MethodPost, m.raw, header, onWritten)
	if err != nil {
		return err
	}
	defer observeDuration(http.MethodPost, time.Now())
	resp, err := up.do(req, cfg.upstreamTimeout)
	if stale := header.Get(headerSessionID); err == nil && resp.StatusCode == http.StatusNotFound && stale != "" && !initialize && !m.quiet {
		// The upstream forgot the session (it restarted, say): initialize
		// a new one as the client did, and send m once more. Not for the
		// gateway's own messages, which reinitialize itself sends.
		resp.Body.Close()
		if err := s.reinitialize(ctx, stale, header, cfg); err != nil {
			return fmt.Errorf("initializing the upstream session again: %w", err)
		}
		if req, err = up.newRequest(ctx, http.MethodPost, m.raw, s.upstreamHeader(header), nil); err != nil {
			return err
		}
		resp, err = up.do(req, cfg.upstreamTimeout)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()

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
	if err := s.relayAnswer(ctx, resp, m, onResponse); err != nil {
		return err
	}
	if m.kind == kindNotification && m.method == "notifications/initialized" {
		s.markInitialized(ctx)
	}
	// Every exchange that went through may reopen a GET stream the
	// upstream refused before, now with the client's newer credentials.
	s.listen(ctx)
	return nil
}

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
