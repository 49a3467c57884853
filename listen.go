package mcpsse

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// listenBackoffMax bounds the wait before the upstream's GET stream is
// opened again after it broke.
const listenBackoffMax = 30 * time.Second

// listenRefusal is why the upstream GET stream of an upstream session
// stopped for good: the upstream refused it, for the credential cred if
// forCredential, or whatever the client sends.
type listenRefusal struct {
	upstream      context.Context
	forCredential bool
	cred          string
}

// credential is what a client authenticates with upstream.
func credential(h http.Header) string {
	return h.Get("Authorization")
}

// markInitialized records that the client's (or the gateway's) initialized
// notification went upstream for the upstream session of ctx: from then on
// the session may hold the upstream's GET stream.
func (s *session) markInitialized(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.upstream == ctx {
		s.initialized = true
	}
}

// listen relays the upstream's GET stream for the upstream session of ctx,
// which carries the messages not tied to a request, for as long as that
// upstream session lives. It starts once the session is initialized, and
// again after the upstream refused it for a credential the client has since
// replaced; never when the handler's config turns the stream off.
func (s *session) listen(ctx context.Context) {
	if !s.store.settings().upstreamStream {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.initialized || s.upstream != ctx || s.reason != "" || (s.listening != nil && s.listening.upstream == ctx) {
		return
	}
	if r := s.refused; r.upstream == ctx && (!r.forCredential || r.cred == credential(s.header)) {
		return
	}
	run := &listenRun{upstream: ctx}
	s.listening = run
	go s.relayListenStream(run)
}

// listenRun is one goroutine's relay of the upstream GET stream.
type listenRun struct {
	upstream context.Context
}

// relayListenStream opens the upstream's GET stream and opens it again
// after it breaks, waiting longer each time, until ctx ends or the
// upstream says it has no such stream for the session. The first failure
// after a stream that ended cleanly is logged at warn, the retries after it
// at debug.
func (s *session) relayListenStream(run *listenRun) {
	ctx := run.upstream
	defer s.stopListening(run, nil)
	backoff := time.Second
	failing := false
	for {
		retry, cred, err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			countUpstreamError(err)
		}
		if !retry {
			refused := listenRefusal{upstream: ctx}
			if se, ok := errors.AsType[*statusError](err); ok && (se.code == http.StatusUnauthorized || se.code == http.StatusForbidden) {
				refused.forCredential, refused.cred = true, cred
			}
			if !s.stopListening(run, &refused) {
				continue // the client sent a newer credential meanwhile
			}
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
		case <-ctx.Done():
			t.Stop()
			return
		}
		if failing {
			backoff = min(2*backoff, listenBackoffMax)
		}
	}
}

// stopListening records that run stops, refused for good if refused is
// set, and reports whether it does: a stream refused for a credential that
// the client has replaced since goes on, with the newer one.
func (s *session) stopListening(run *listenRun, refused *listenRefusal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listening != run {
		return true
	}
	if refused != nil {
		if refused.forCredential && refused.cred != credential(s.header) {
			return false
		}
		s.refused = *refused
	}
	s.listening = nil
	return true
}

// listenOnce relays one GET stream and reports whether to open it again,
// and the credential it sent.
func (s *session) listenOnce(ctx context.Context) (retry bool, cred string, err error) {
	header := s.currentHeader()
	header.Set("Accept", "text/event-stream")
	cred = credential(header)
	up := s.store.upstream
	req, err := up.newRequest(ctx, http.MethodGet, nil, header, nil)
	if err != nil {
		return false, cred, err
	}
	resp, err := up.do(req, s.store.settings().upstreamTimeout)
	if err != nil {
		return true, cred, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusMethodNotAllowed:
		return false, cred, nil // the upstream offers no such stream
	case resp.StatusCode/100 == 4:
		return false, cred, checkStatus(resp)
	case resp.StatusCode/100 != 2:
		return true, cred, checkStatus(resp)
	}
	return true, cred, s.relayEvents(ctx, resp.Body, answerTo{})
}
