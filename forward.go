package mcpsse

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"

	"go.uber.org/zap"
)

// errCopyDropped refuses a POST the copy of a cluster's session it found
// can no longer take: it left the store meanwhile, and the POST takes the
// store's new copy.
var errCopyDropped = errors.New("this instance's copy of the session was dropped")

// errTooManyInFlight refuses a POST while the session has max_in_flight
// messages on their way upstream.
var errTooManyInFlight = errors.New("too many messages of this session are on their way upstream; retry later")

// forward sends msgs upstream, one request each, in the order they were
// posted after every message posted before them. Each waits only until the
// one before it has been written upstream, not for its answer, so a slow
// tool call does not hold up a quick one. header is the client's, as it
// goes upstream; cfg the settings of the handler that took the POST.
//
// It forwards nothing and returns errUnknownSession once the session has
// stopped, and errTooManyInFlight when msgs would take the session past
// cfg.maxInFlight. verdicts, if set, learns how the upstream answered each
// of msgs.
func (s *session) forward(msgs []message, header http.Header, cfg *settings, verdicts *postVerdicts) error {
	err := s.forwardLocked(msgs, header, cfg, verdicts)
	if err == nil {
		s.share() // the client's headers, a heal or a new start
	}
	return err
}

func (s *session) forwardLocked(msgs []message, header http.Header, cfg *settings, verdicts *postVerdicts) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped {
		return errCopyDropped
	}
	if s.reason != "" {
		return errUnknownSession
	}
	if cfg.maxInFlight > 0 && s.inFlight+len(msgs) > cfg.maxInFlight {
		return errTooManyInFlight
	}
	s.header = listHeader(header)
	if s.initSeen && startsOver(msgs) {
		s.startOver()
	}
	msgs = s.heal(msgs)
	for i, m := range msgs {
		var v *verdict
		if !m.quiet {
			s.received.Add(1)
			metrics.messages.WithLabelValues(toUpstream, m.kind.String()).Inc()
			if verdicts != nil {
				v = verdicts.verdict()
			}
		}
		prev := s.lastSent
		sent := make(chan struct{})
		s.lastSent = sent
		s.inFlight++
		// Each relay adds to its header: the last takes header itself,
		// once every copy of it is made.
		h := header
		if i < len(msgs)-1 {
			h = header.Clone()
		}
		s.store.relays.run(func() { s.relay(s.upstream, m, h, prev, sent, cfg, v) })
	}
	return nil
}

// nothingSent is the session's lastSent while no message is on its way
// upstream, so that an idle session keeps no channel of its own.
var nothingSent = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// written returns a channel closed once the last message posted to the
// session has gone upstream.
func (s *session) written() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSent
}

// relay forwards m once prev is closed, closes sent once m is on its way,
// and relays the upstream's answer, all under ctx, the upstream session's.
// A request the upstream cannot answer gets a JSON-RPC error response, so
// the client never waits forever, unless the POST that brought it answers
// the upstream's refusal of the client's credential itself.
func (s *session) relay(ctx context.Context, m message, header http.Header, prev <-chan struct{}, sent chan struct{}, cfg *settings, v *verdict) {
	release := (&closeOnce{c: sent}).close
	defer release()
	defer v.give(nil)
	defer func() {
		s.mu.Lock()
		s.inFlight--
		if s.lastSent == sent {
			s.lastSent = nothingSent
		}
		s.mu.Unlock()
		if s.store.node != nil {
			s.store.dropIfIdle(s)
		}
	}()
	select {
	case <-prev:
	default:
		// Waited on only now: Done makes the upstream session's scope
		// a channel that it keeps for its life.
		select {
		case <-prev:
		case <-ctx.Done():
			return
		}
	}
	if s.store.node != nil && m.kind == kindRequest && !m.quiet {
		// Recorded, so that another instance finishes it if this one
		// dies on the way.
		if m.pended = s.pend(m.id); m.pended {
			defer s.settle(m.id)
		}
	}
	err := s.exchange(ctx, m, header, release, cfg, v)
	if err == nil || ctx.Err() != nil || errors.Is(err, errFenced) {
		return // errFenced: another instance finished it
	}
	if se, ok := errors.AsType[*statusError](err); ok && se.refusesCredential() {
		s.store.guard.refused(se)
		if m.quiet {
			s.retryHeal(ctx)
		}
		if v.answered() {
			return // the client's POST got the refusal
		}
	}
	reason, public := countUpstreamError(err)
	cfg.logger.Warn("upstream exchange failed",
		zap.String("session", s.tag),
		zap.Stringer("kind", m.kind),
		zap.String("method", m.method),
		zap.String("reason", reason),
		zap.Bool("made_by_gateway", m.quiet),
		zap.Error(err))
	if m.kind == kindRequest && !m.quiet {
		_ = s.deliver(ctx, errorResponse(m.id, codeInternalError, public))
	}
}

// closeOnce closes c the first time close is called, from whichever
// goroutine: a message's sent channel closes once the message is on its
// way, or once its relay ends.
type closeOnce struct {
	c    chan struct{}
	done atomic.Bool
}

func (o *closeOnce) close() {
	if o.done.CompareAndSwap(false, true) {
		close(o.c)
	}
}

// startsOver reports whether msgs, posted to a session that was already
// initialized, hold an initialize request: the client starts a new MCP
// session on this one, as a client does that restarted and was re-attached
// by its identity.
func startsOver(msgs []message) bool {
	for _, m := range msgs {
		if m.kind == kindRequest && m.method == "initialize" {
			return true
		}
	}
	return false
}

// startOver ends the upstream session of the client's earlier MCP session,
// with its exchanges, its GET stream and the events not yet delivered,
// none of which the client knows now; the upstream session is deleted, and
// the client's initialize will open the next. Callers hold s.mu.
func (s *session) startOver() {
	s.upstream.end()
	if s.upstreamID != "" {
		s.deleteInBackground(s.upstreamID)
	}
	s.upstream = newScope(s.ctx)
	s.upstreamID, s.protocol = "", ""
	s.initSeen, s.initialized = false, false
	s.statelessState = nil
	s.events.clear()
	metrics.healed.WithLabelValues("client_restarted").Inc()
}
