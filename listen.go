package mcpsse

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// listenBackoffMax bounds the wait before the upstream's GET stream is
// opened again after it broke.
const listenBackoffMax = 30 * time.Second

// listenRefusal is why the upstream GET stream of an upstream session
// stopped for good: the upstream refused it, for the credential cred if
// forCredential, or whatever the client sends. An upstream session that
// the gateway initialized again after the upstream forgot it has another
// sessionID, and may have its GET stream again.
type listenRefusal struct {
	upstream      context.Context
	sessionID     string
	forCredential bool
	cred          string
}

// refuses reports whether r still holds for the upstream session of ctx,
// with the session's current ID and credential. Callers hold s.mu.
func (r listenRefusal) refuses(s *session, ctx context.Context) bool {
	return r.upstream == ctx && r.sessionID == s.upstreamID && (!r.forCredential || r.cred == s.header.credential())
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
	current := s.upstream == ctx
	if current {
		s.initialized = true
	}
	s.mu.Unlock()
	if current && s.store.node != nil {
		s.share()
		s.announceInitialized()
	}
}

// listen relays the upstream's GET stream for the upstream session of ctx,
// which carries the messages not tied to a request, for as long as that
// upstream session lives. It starts once the session is initialized, and
// again after the upstream refused it for a credential the client has since
// replaced or for an upstream session initialized again since; never when
// the handler's config turns the stream off. It returns the relay it
// started, or nil.
func (s *session) listen(ctx context.Context) *listenRun {
	if s.isStateless() {
		s.relisten(ctx)
		return nil
	}
	if !s.store.settings().upstreamStream {
		return nil
	}
	if s.store.node != nil && !s.hasStream() {
		return nil // the instance that holds the client's stream holds it
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.initialized || s.upstream != ctx || s.reason != "" || (s.listening != nil && s.listening.upstream == ctx) {
		return nil
	}
	if s.refused != nil && s.refused.refuses(s, ctx) {
		return nil
	}
	run := &listenRun{upstream: ctx, backoff: listenBackoff{wait: time.Second}, opened: make(chan struct{})}
	run.ctx = newScope(ctx)
	s.listening = run
	go s.relayListenStream(run)
	return run
}

// listenRun is one relay of the upstream GET stream. It runs on one
// goroutine at a time: the one listen starts, then, each time the relay
// parked (see relayListenBody), a worker of the store.
type listenRun struct {
	upstream context.Context
	// ctx, under upstream, ends when the relay must stop: in a cluster,
	// also when the client's stream leaves this instance.
	ctx *scope
	// events reads the stream; it keeps the last event ID, which each
	// reopening resumes the stream from, and the upstream's retry. Only
	// the relay uses it.
	events *sseReader
	// body is the stream's body while the relay reads it.
	body io.ReadCloser
	// to says that the relayed messages come from events, the stream. It
	// is kept here, set with events, rather than made for each stream: a
	// goroutine that waits on a body that cannot park waits for the
	// session's life under the frame that would hold it (see
	// relayEvents).
	to answerTo
	// backoff is the wait before the stream opens again.
	backoff listenBackoff
	// opened is closed once the first GET has its answer's headers, or
	// has failed: from then on the upstream can send on the stream.
	opened   chan struct{}
	openOnce sync.Once
}

func (r *listenRun) markOpened() { r.openOnce.Do(func() { close(r.opened) }) }

// errParked is how a relay of the GET stream returns once it parked.
var errParked = errors.New("the upstream stream's relay parked")

// relayListenStream opens the upstream's GET stream and opens it again
// after it breaks, waiting longer each time, until ctx ends or the
// upstream says it has no such stream for the session. Over a body that
// can park (h2Streams'), the relay parks whenever the stream has nothing
// more to read, and a worker goes on with it once it has: an idle session
// keeps no goroutine for its upstream stream. Over another body, the
// goroutine waits on the stream for the session's life, so the frames it
// waits under are kept small (see relayEvents); what happens between
// streams is listenAgain's.
func (s *session) relayListenStream(run *listenRun) {
	for {
		body, retry, sent, err := s.openListenStream(run.ctx, run)
		if body != nil {
			run.body = body
			err = s.relayListenBody(run)
		}
		if !s.afterListenStream(run, retry, sent, err) {
			return
		}
	}
}

// resumeListen goes on with the relay of run, parked until its stream had
// more to read.
func (s *session) resumeListen(run *listenRun) {
	// An open stream is opened again when it ends (retry): the headers it
	// was opened with, nil here, matter only to a refusal.
	if s.afterListenStream(run, true, nil, s.relayListenBody(run)) {
		s.relayListenStream(run)
	}
}

// afterListenStream takes how a GET stream's relay returned: parked, or
// the stream over (see listenAgain), and reports whether to open it
// again. A relay that stops for good is marked so.
func (s *session) afterListenStream(run *listenRun, retry bool, sent http.Header, err error) bool {
	if err == errParked {
		return false // resumeListen goes on; run is no longer this goroutine's
	}
	if s.listenAgain(run, retry, sent, err) {
		return true
	}
	run.markOpened()
	s.stopListening(run, nil)
	return false
}

// relayListenBody relays the events of run's stream until it ends, and
// closes it. If its body can park, the relay parks whenever the stream
// has nothing more to read: it returns errParked, holding no buffer, and a
// worker of the store goes on with it (resumeListen) once the stream has
// more or ends.
func (s *session) relayListenBody(run *listenRun) error {
	for {
		err := s.relayEvents(run.ctx, run.events, &run.to)
		if err != errWouldWait {
			run.body.Close()
			run.body = nil
			return err
		}
		run.events.idle()
		b, _ := parkable(run.body)
		if b.park(func() { s.store.relays.run(func() { s.resumeListen(run) }) }) {
			return errParked
		}
	}
}

// listenBackoff is the wait before the GET stream opens again, and whether
// it is failing.
type listenBackoff struct {
	wait    time.Duration
	failing bool
}

// listenAgain handles the end of one GET stream, as its relay reports it,
// waits before the next, and reports whether to open it. The first failure
// after a stream that ended cleanly is logged at warn, the retries after
// it at debug.
func (s *session) listenAgain(run *listenRun, retry bool, sent http.Header, err error) bool {
	ctx, b := run.ctx, &run.backoff
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		countUpstreamError(err)
	}
	if !retry {
		refused := listenRefusal{upstream: ctx, sessionID: sent.Get(headerSessionID), cred: credential(sent)}
		if se, ok := errors.AsType[*statusError](err); ok && se.refusesCredential() {
			refused.forCredential = true
			s.store.guard.refused(se)
		}
		if !s.stopListening(run, &refused) {
			return true // the client sent a newer credential meanwhile
		}
		if err != nil {
			s.store.logger().Warn("upstream GET stream refused", zap.String("session", s.tag), zap.Error(err))
		}
		return false
	}
	switch {
	case err == nil:
		b.wait, b.failing = time.Second, false
	case !b.failing:
		b.failing = true
		s.store.logger().Warn("upstream GET stream failed; retrying", zap.String("session", s.tag), zap.Error(err))
	}
	if c := s.store.logger().Check(zapcore.DebugLevel, "upstream GET stream ended"); c != nil {
		c.Write(zap.String("session", s.tag), zap.Error(err))
	}
	wait := b.wait
	if !b.failing && run.events != nil && run.events.retry >= 0 {
		wait = resumeDelay(run.events.retry) // the upstream asked for this
	}
	if !sleepCtx(ctx, wait) {
		return false
	}
	if b.failing {
		b.wait = min(2*b.wait, listenBackoffMax)
	}
	return true
}

// stopListening records that run stops, refused for good if refused is
// set, and reports whether it does: a stream refused for a credential that
// the client has replaced since, or for an upstream session initialized
// again since, goes on.
func (s *session) stopListening(run *listenRun, refused *listenRefusal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if run == nil || s.listening != run {
		return true
	}
	if refused != nil {
		if !refused.refuses(s, run.upstream) {
			return false
		}
		s.refused = refused
	}
	s.listening = nil
	run.ctx.end()
	return true
}

// listeningRun returns the relay of the upstream GET stream, if one runs.
func (s *session) listeningRun() *listenRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listening
}

// openListenStream sends the GET for the stream, and returns its body,
// with run.events set to read it; or, if the upstream gave none, whether
// to ask again and why not. The run is marked opened once the GET has its
// answer's headers, or has failed.
func (s *session) openListenStream(ctx context.Context, run *listenRun) (body io.ReadCloser, retry bool, header http.Header, err error) {
	lastID := ""
	if run.events != nil {
		lastID = run.events.lastID
	}
	header = s.eventStreamHeader(lastID)
	resp, err := s.getEventStream(ctx, header, s.store.settings().upstreamTimeout)
	run.markOpened()
	if err != nil {
		return nil, true, header, err
	}
	switch {
	case resp.StatusCode == http.StatusMethodNotAllowed:
		retry = false // the upstream offers no such stream
	case resp.StatusCode == http.StatusBadRequest && lastID != "":
		// The upstream cannot replay after that event (its event store
		// dropped it, say): open the stream afresh rather than none.
		run.events = nil
		retry, err = true, checkStatus(resp)
	case resp.StatusCode/100 == 4:
		retry, err = false, checkStatus(resp)
	case resp.StatusCode/100 != 2:
		retry, err = true, checkStatus(resp)
	default:
		retry = true
	}
	if err != nil || !retry {
		resp.Body.Close()
		return nil, retry, header, err
	}
	if run.events == nil {
		run.events = newSSEReader(resp.Body, maxUpstreamMessage)
		run.events.waitless = true // the relay parks where it can
		run.to = answerTo{stream: run.events}
	} else {
		run.events.resumeWith(resp.Body)
	}
	return resp.Body, true, header, nil
}
