package mcpsse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxUpstreamMessage bounds one message from the upstream, so that a broken
// upstream cannot make the gateway buffer without end.
const maxUpstreamMessage = 64 << 20

// listenBackoffMax bounds the wait before the upstream's GET stream is
// opened again after it broke.
const listenBackoffMax = 30 * time.Second

// forward sends msgs upstream, one request each, in the order they were
// posted after every message posted before them. Each waits only until the
// one before it has been written upstream, not for its answer, so a slow
// tool call does not hold up a quick one.
//
// It reports false, forwarding nothing, once the session has stopped.
func (s *session) forward(msgs []message, header http.Header) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reason != "" {
		return false
	}
	for _, m := range s.heal(msgs) {
		if !m.quiet {
			s.received.Add(1)
			metrics.messages.WithLabelValues(toUpstream, m.kind.String()).Inc()
		}
		prev := s.lastSent
		sent := make(chan struct{})
		s.lastSent = sent
		go s.relay(m, header.Clone(), prev, sent)
	}
	return true
}

// relay forwards m once prev is closed, closes sent once m is on its way,
// and relays the upstream's answer. A request the upstream cannot answer
// gets a JSON-RPC error response, so the client never waits forever.
func (s *session) relay(m message, header http.Header, prev <-chan struct{}, sent chan struct{}) {
	release := sync.OnceFunc(func() { close(sent) })
	defer release()
	select {
	case <-prev:
	case <-s.ctx.Done():
		return
	}
	err := s.exchange(m, header, release)
	if err == nil || s.ctx.Err() != nil {
		return
	}
	reason, public := countUpstreamError(err)
	s.store.logger().Warn("upstream exchange failed",
		zap.String("session", s.tag),
		zap.Stringer("kind", m.kind),
		zap.String("method", m.method),
		zap.String("reason", reason),
		zap.Bool("made_by_gateway", m.quiet),
		zap.Error(err))
	if m.kind == kindRequest && !m.quiet {
		_ = s.deliver(errorResponse(m.id, codeInternalError, public))
	}
}

// exchange POSTs m upstream and relays the answer. written runs once m has
// been written upstream; for initialize only once its response is in, since
// every later message needs the session ID and protocol version it brings.
func (s *session) exchange(m message, header http.Header, written func()) error {
	initialize := m.kind == kindRequest && m.method == "initialize"
	onWritten := written
	if initialize {
		onWritten = nil
	}
	header.Set("Content-Type", "application/json")
	header.Set("Accept", "application/json, text/event-stream")
	header = s.upstreamHeader(header)
	up := s.store.upstream
	req, err := up.newRequest(s.ctx, http.MethodPost, m.raw, header, onWritten)
	if err != nil {
		return err
	}
	defer observeDuration(http.MethodPost, time.Now())
	resp, err := up.do(req, s.store.settings().upstreamTimeout)
	if stale := header.Get(headerSessionID); err == nil && resp.StatusCode == http.StatusNotFound && stale != "" && !initialize && !m.quiet {
		// The upstream forgot the session (it restarted, say): initialize
		// a new one as the client did, and send m once more. Not for the
		// gateway's own messages, which reinitialize itself sends.
		resp.Body.Close()
		if err := s.reinitialize(stale); err != nil {
			return fmt.Errorf("initializing the upstream session again: %w", err)
		}
		if req, err = up.newRequest(s.ctx, http.MethodPost, m.raw, s.upstreamHeader(header), nil); err != nil {
			return err
		}
		resp, err = up.do(req, s.store.settings().upstreamTimeout)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	if initialize && resp.StatusCode/100 == 2 {
		if id := resp.Header.Get(headerSessionID); id != "" {
			s.setUpstreamSession(id)
		}
	}
	var onResponse func(message)
	if initialize {
		onResponse = func(r message) {
			s.setProtocol(negotiatedVersion(r.raw))
			written()
		}
	}
	if err := s.relayAnswer(resp, m, onResponse); err != nil {
		return err
	}
	if m.kind == kindNotification && m.method == "notifications/initialized" {
		s.listen()
	}
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

// relayAnswer relays the upstream's answer to m, JSON or an event stream,
// message by message in the order the upstream sent them. For a request it
// returns an error unless the response to it came through; onResponse, if
// set, sees that response before the client does.
func (s *session) relayAnswer(resp *http.Response, m message, onResponse func(message)) error {
	if err := checkStatus(resp); err != nil {
		if m.kind == kindRequest && s.relayErrorBody(resp, m) {
			return nil
		}
		return err
	}
	to := answerTo{quiet: m.quiet, onResponse: onResponse}
	if m.kind == kindRequest {
		to.id = m.id
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mediaType {
	case "text/event-stream":
		return s.relayEvents(resp.Body, to)
	case "application/json":
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamMessage+1))
		if err != nil {
			return fmt.Errorf("%w: %w", errBrokenAnswer, err)
		}
		if len(body) > maxUpstreamMessage {
			return fmt.Errorf("%w: an answer over %d bytes", errNotMCP, maxUpstreamMessage)
		}
		found, err := s.relayPayload(body, to)
		if err == nil && to.id != nil && !found {
			err = errNoResponse
		}
		return err
	}
	if to.id == nil {
		// Notifications and responses are accepted with any 2xx,
		// 202 without a body as the specification has it.
		return nil
	}
	if mediaType == "" {
		return fmt.Errorf("%w: %s without a body", errNotMCP, resp.Status)
	}
	return fmt.Errorf("%w: %s with %q", errNotMCP, resp.Status, mediaType)
}

// relayErrorBody relays a JSON-RPC error response to m found in the body of
// a failed upstream request, and reports whether it did.
func (s *session) relayErrorBody(resp *http.Response, m message) bool {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return false
	}
	r, err := parseMessage(body)
	if err != nil || r.kind != kindResponse || !sameID(r.id, m.id) {
		return false
	}
	if s.deliver(eventData(r.raw)) != nil {
		return false
	}
	metrics.messages.WithLabelValues(toClient, r.kind.String()).Inc()
	return true
}

// answerTo says what an upstream answer answers: the request with id, if
// any; quiet, if none of it is for the client; onResponse, if set, sees the
// response before the client does.
type answerTo struct {
	id         json.RawMessage
	quiet      bool
	onResponse func(message)
}

// relayEvents relays the messages of an upstream event stream. For a
// request it returns once the response came through, and an error if the
// stream ends before; else it relays until the stream ends.
func (s *session) relayEvents(body io.Reader, to answerTo) error {
	events := newSSEReader(body, maxUpstreamMessage)
	for {
		ev, err := events.next()
		if err != nil {
			// io.EOF is a clean end; a cut event, a cut connection or
			// a read error is an answer that broke off.
			switch {
			case errors.Is(err, io.EOF) && to.id == nil:
				return nil
			case errors.Is(err, io.EOF):
				return errNoResponse
			case errors.Is(err, errEventTooLarge):
				return fmt.Errorf("%w: %w", errNotMCP, err)
			}
			return fmt.Errorf("%w: %w", errBrokenAnswer, err)
		}
		found, err := s.relayPayload(ev.data, to)
		if err != nil || found {
			return err
		}
	}
}

// relayPayload relays one JSON-RPC message or batch from the upstream and
// reports whether it held the response to the request.
func (s *session) relayPayload(payload []byte, to answerTo) (bool, error) {
	msgs, err := parseMessages(payload)
	if err != nil {
		return false, fmt.Errorf("%w: %v", errNotMCP, err)
	}
	found := false
	for _, r := range msgs {
		isAnswer := to.id != nil && r.kind == kindResponse && sameID(r.id, to.id)
		if isAnswer && to.onResponse != nil {
			to.onResponse(r)
		}
		found = found || isAnswer
		if to.quiet {
			continue
		}
		if c := s.store.logger().Check(zapcore.DebugLevel, "relaying upstream message"); c != nil {
			c.Write(zap.String("session", s.tag), zap.Stringer("kind", r.kind), zap.String("method", r.method))
		}
		if err := s.deliver(eventData(r.raw)); err != nil {
			return found, err
		}
		metrics.messages.WithLabelValues(toClient, r.kind.String()).Inc()
	}
	return found, nil
}

// listen relays the upstream's GET stream, which carries the messages not
// tied to a request, for as long as the session lives. It starts once,
// unless the handler's config turns the stream off.
func (s *session) listen() {
	if !s.store.settings().upstreamStream {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listening || s.reason != "" {
		return
	}
	s.listening = true
	go s.relayListenStream()
}

// relayListenStream opens the upstream's GET stream and opens it again
// after it breaks, waiting longer each time, until the session ends or the
// upstream says it has no such stream for the session. The first failure
// after a stream that ended cleanly is logged at warn, the retries after it
// at debug.
func (s *session) relayListenStream() {
	defer func() {
		s.mu.Lock()
		s.listening = false
		s.mu.Unlock()
	}()
	backoff := time.Second
	failing := false
	for {
		retry, err := s.listenOnce()
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			countUpstreamError(err)
		}
		if !retry {
			if err != nil {
				s.store.logger().Warn("upstream GET stream refused", zap.String("session", s.tag), zap.Error(err))
			}
			return
		}
		switch {
		case err == nil:
			backoff, failing = time.Second, false
		case !failing:
			failing = true
			s.store.logger().Warn("upstream GET stream failed; retrying", zap.String("session", s.tag), zap.Error(err))
		}
		if c := s.store.logger().Check(zapcore.DebugLevel, "upstream GET stream ended"); c != nil {
			c.Write(zap.String("session", s.tag), zap.Error(err), zap.Duration("retry_in", backoff))
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		if failing {
			backoff = min(2*backoff, listenBackoffMax)
		}
	}
}

// listenOnce relays one GET stream and reports whether to open it again.
func (s *session) listenOnce() (retry bool, err error) {
	header := s.upstreamHeader(s.header.Clone())
	header.Set("Accept", "text/event-stream")
	up := s.store.upstream
	req, err := up.newRequest(s.ctx, http.MethodGet, nil, header, nil)
	if err != nil {
		return false, err
	}
	resp, err := up.do(req, s.store.settings().upstreamTimeout)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusMethodNotAllowed:
		return false, nil // the upstream offers no such stream
	case resp.StatusCode/100 == 4:
		return false, checkStatus(resp)
	case resp.StatusCode/100 != 2:
		return true, checkStatus(resp)
	}
	return true, s.relayEvents(resp.Body, answerTo{})
}

// deleteUpstream ends the session's upstream session. A 405 means the
// upstream does not let clients end sessions, which is fine.
func (s *session) deleteUpstream() {
	s.store.deletes <- struct{}{}
	defer func() { <-s.store.deletes }()
	ctx, cancel := context.WithTimeout(context.Background(), upstreamDeleteTimeout)
	defer cancel()
	defer observeDuration(http.MethodDelete, time.Now())
	header := s.upstreamHeader(s.header.Clone())
	up := s.store.upstream
	req, err := up.newRequest(ctx, http.MethodDelete, nil, header, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = up.do(req, upstreamDeleteTimeout); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
				err = checkStatus(resp)
			}
		}
	}
	if err != nil {
		reason, _ := countUpstreamError(err)
		s.store.logger().Warn("deleting upstream session", zap.String("session", s.tag), zap.String("reason", reason), zap.Error(err))
	}
}
