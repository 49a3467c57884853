package mcpsse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// reasonReplaced is why a stream stops when another stream of the same
// session takes over; the session lives on.
const reasonReplaced = "replaced"

// sentEvent is an event written to a stream, kept for a stream that
// re-attaches with a Last-Event-ID before it.
type sentEvent struct {
	seq  uint64
	data []byte
}

// identity names who opened r strongly enough to hand them a session
// without its ID: the authenticated user, or else a hash of the
// Authorization credential. It is "" for an anonymous request; an IP
// address or a User-Agent is never enough.
func identity(r *http.Request) string {
	if user := authUser(r); user != "" {
		return "user " + user
	}
	if cred := r.Header.Get("Authorization"); cred != "" {
		sum := sha256.Sum256([]byte(cred))
		return "credential " + hex.EncodeToString(sum[:])
	}
	return ""
}

// parseEventID splits an event id, <sessionId>:<seq>, as the stream wrote it.
func parseEventID(id string) (sessionID string, seq uint64, ok bool) {
	sessionID, n, found := strings.Cut(id, ":")
	if !found {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	return sessionID, seq, err == nil
}

// resumable finds the session a new stream request re-attaches to, and
// the last event its client had: the session its Last-Event-ID names, if
// the caller may use it, and the event that names; or, without a
// Last-Event-ID (byEventID false), the one detached session of the
// caller's identity, and the last event written to a stream without error.
func (s *sessionStore) resumable(r *http.Request) (sess *session, seq uint64, byEventID bool) {
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		id, seq, ok := parseEventID(last)
		if !ok {
			return nil, 0, false
		}
		sess := s.get(id)
		if sess == nil && s.node != nil {
			sess, _ = s.fetch(id)
		}
		if sess == nil || !sess.ownedBy(authUser(r)) || sess.stopped() {
			return nil, 0, false
		}
		return sess, seq, true
	}
	who := identity(r)
	if who == "" {
		return nil, 0, false
	}
	if s.node != nil {
		if sess, seq, err := s.detachedOf(who); err == nil {
			return sess, seq, false
		}
		// Redis cannot be reached: the sessions of this instance.
	}
	var match *session
	for _, sess := range s.ofIdentity(who) {
		if sess.hasStream() || sess.stopped() {
			continue
		}
		if match != nil {
			return nil, 0, false // more than one: a guess could be wrong
		}
		match = sess
	}
	if match == nil {
		return nil, 0, false
	}
	return match, match.deliveredSeq(), false
}

func (s *session) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason != ""
}

// Why an attached stream must stop, besides its client leaving.
var (
	errReplaced      = errors.New("another stream took the session over")
	errSessionEnding = errors.New("the session is ending")
)

// attachment is one stream's hold on its session. The stream stops when
// its client leaves (client) or when it is told to, with a cause: another
// stream took over, the session ends, or, in a cluster, this instance may
// have lost the stream. Telling it sets the cause and signals the
// session's queue, which the stream waits on anyway: it waits on no channel
// of the attachment's own, since each channel more in its wait costs every
// ping (see serve), and no context is derived per stream.
type attachment struct {
	client <-chan struct{}
	// ready is the session's queue signal.
	ready chan struct{}
	// cause is why the stream was told to stop; nil until then. The first
	// cause holds.
	cause atomic.Pointer[error]
	// serving is done when this stream is: a wait group, which the
	// attachment holds, rather than a channel of its own to close.
	serving sync.WaitGroup
}

// stop tells the stream to stop, for cause; the first cause given holds.
func (a *attachment) stop(cause error) {
	if a.cause.CompareAndSwap(nil, &cause) {
		signal(a.ready)
	}
}

// told reports whether the stream was told to stop.
func (a *attachment) told() bool { return a.cause.Load() != nil }

// attach makes the stream of the request whose context is ctx the
// session's own: a stream still attached is told to stop and waited for,
// and the session no longer expires.
func (s *session) attach(ctx context.Context) *attachment {
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	if prev := s.stream.Load(); prev != nil {
		prev.stop(errReplaced)
		prev.serving.Wait()
	}
	s.mu.Lock()
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.mu.Unlock()
	a := &attachment{client: ctx.Done(), ready: s.events.ready}
	a.serving.Add(1)
	s.stream.Store(a)
	// The session's end tells the attached stream to stop (see
	// newSession); an end that came before the stream was attached, here.
	if s.ctx.Err() != nil {
		a.stop(errSessionEnding)
	}
	if s.store.node != nil && s.registered.Load() {
		s.holdShared()
		s.listen(s.currentUpstream())
	}
	return a
}

// dropStream stops the stream attached here, if any, for cause; the
// session lives on unless cause is its end.
func (s *session) dropStream(cause error) {
	if a := s.stream.Load(); a != nil {
		a.stop(cause)
	}
}

// hasStream reports whether a client's stream serves the session.
func (s *session) hasStream() bool { return s.stream.Load() != nil }

// release gives up a stream's hold on the session once serve returned why.
// A stream another one took over, or of a session something else stopped,
// just leaves; a client that went away or a stream past its lifetime leaves
// the session waiting resume_window (of cfg, the settings the stream
// followed) for the client to come back; anything else ends the session.
func (s *session) release(a *attachment, why string, cfg *settings) {
	a.serving.Done()
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	if s.stream.Load() != a {
		return // another stream took over
	}
	s.stream.Store(nil)
	if s.stopped() {
		return // whoever stopped the session ends it
	}
	if s.store.node != nil {
		s.releaseInCluster(why, cfg)
		return
	}
	window := cfg.resumeWindow
	if window <= 0 || (why != reasonClientGone && why != reasonLifetime) {
		s.stop(why)
		go s.endAlone(why)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reason != "" {
		return
	}
	s.expiry = time.AfterFunc(window, func() { s.expire(why) })
	if c := cfg.logger.Check(zap.DebugLevel, "stream detached"); c != nil {
		c.Write(zap.String("session", s.tag), zap.String("reason", why), zap.Duration("resume_window", window))
	}
}

// expire ends a session whose resume window passed without a stream.
func (s *session) expire(why string) {
	s.attachMu.Lock()
	if s.hasStream() {
		s.attachMu.Unlock()
		return
	}
	s.stop(why)
	s.attachMu.Unlock()
	s.endAlone(why)
}

// maxReplayBytes bounds the events a session keeps for a replay.
const maxReplayBytes = 1 << 20

// recordSent keeps an event about to be written to the stream for a
// replay: the last limit of them, as long as they hold maxReplayBytes at
// most.
func (s *session) recordSent(seq uint64, data []byte, limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent = append(s.recent, sentEvent{seq, data})
	s.recentBytes += len(data)
	drop := 0
	for len(s.recent)-drop > limit || s.recentBytes > maxReplayBytes {
		s.recentBytes -= len(s.recent[drop].data)
		drop++
	}
	if drop > 0 {
		s.recent = append(s.recent[:0], s.recent[drop:]...)
	}
}

// sentAfter returns the kept events written after seq, oldest first.
func (s *session) sentAfter(seq uint64) []sentEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sentEvent
	for _, ev := range s.recent {
		if ev.seq > seq {
			out = append(out, ev)
		}
	}
	return out
}

// markDelivered records that the event seq was written to a stream
// without error. An event whose write failed stays undelivered, so that a
// stream re-attaching without a Last-Event-ID gets it again. Only the
// attached stream calls it, and streams attach one after the other, so a
// load and a store make the maximum.
func (s *session) markDelivered(seq uint64) {
	if seq > s.delivered.Load() {
		s.delivered.Store(seq)
		if n := s.store.node; n != nil {
			n.noteDelivered(s.id, seq)
		}
	}
}

func (s *session) deliveredSeq() uint64 { return s.delivered.Load() }
