package mcpsse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/google/uuid"
	"go.uber.org/zap"
)

// Why a session ended, as logged.
const (
	reasonClientGone     = "client_gone"
	reasonSlowClient     = "slow_client"
	reasonLifetime       = "lifetime"
	reasonShutdown       = "shutdown"
	reasonHandlerRemoved = "handler_removed"
	reasonAdmin          = "admin"
)

// Errors that refuse a new session.
var (
	errStoreClosed     = errors.New("the handler of this endpoint is being removed")
	errTooManySessions = errors.New("too many sessions")
)

// session is one client's MCP session: its stream, its queue of events for
// that stream, and its session on the upstream.
type session struct {
	id      string
	tag     string // a non-secret name for logs
	store   *sessionStore
	created time.Time
	remote  string
	header  http.Header // of the GET that opened the session, for upstream GET and DELETE
	user    string      // the authenticated user who opened it, if any
	// identity is who opened it, for a re-attach without the session ID;
	// see identity().
	identity string

	// events carries compact JSON-RPC messages to the stream, in order.
	events chan []byte
	// sent counts the messages written to the client's stream; received
	// those the client posted.
	sent, received atomic.Uint64
	// attached is set while a client's stream serves the session.
	attached atomic.Bool

	// attachMu orders streams taking the session over.
	attachMu sync.Mutex
	stream   *attachment // the attached stream, if any

	// initMu lets one exchange at a time initialize the upstream session
	// again after the upstream forgot it.
	initMu sync.Mutex

	// ctx ends with the session; every upstream exchange of the session
	// runs under it.
	ctx     context.Context
	cancel  context.CancelFunc
	endOnce sync.Once

	mu          sync.Mutex
	upstreamID  string        // the upstream's Mcp-Session-Id
	protocol    string        // the protocol version the upstream negotiated
	lastSent    chan struct{} // closed once the last message posted has gone upstream
	listening   bool          // the upstream's GET stream is being relayed
	reason      string        // why the session stopped; "" while it runs
	ended       bool          // the upstream session is being or was deleted
	expiry      *time.Timer   // ends the session while no stream is attached
	recent      []sentEvent   // the last events written, for a replay
	recentBytes int           // the size of their data
	initParams  []byte        // the params of the client's initialize
	initSeen    bool          // a client initialize was forwarded, or one made for it
}

// open starts a session for the stream request r.
func (s *sessionStore) open(r *http.Request) (*session, error) {
	id := uuid.NewString()
	sum := sha256.Sum256([]byte(id))
	ctx, cancel := context.WithCancel(context.Background())
	sent := make(chan struct{})
	close(sent)
	sess := &session{
		id:       id,
		tag:      hex.EncodeToString(sum[:4]),
		store:    s,
		created:  time.Now(),
		remote:   r.RemoteAddr,
		header:   forwardedHeader(r),
		user:     authUser(r),
		identity: identity(r),
		events:   make(chan []byte, s.settings().queueSize),
		ctx:      ctx,
		cancel:   cancel,
		lastSent: sent,
	}
	if err := s.add(sess); err != nil {
		cancel()
		return nil, err
	}
	s.logger().Info("session opened",
		zap.String("session", sess.tag),
		zap.String("remote", sess.remote),
		zap.String("user", sess.user))
	return sess, nil
}

// stop ends the session's stream and upstream exchanges at once and
// refuses further messages. The first reason given is the one logged.
func (s *session) stop(reason string) {
	s.mu.Lock()
	if s.reason == "" {
		s.reason = reason
	}
	s.mu.Unlock()
	s.cancel()
}

// end stops the session, deletes its upstream session, and then forgets
// it, once; later calls wait for the first to finish. A session stays
// findable while its upstream session is being deleted, so that ending
// every session of a store waits for those DELETEs too.
func (s *session) end(reason string) {
	s.stop(reason)
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.ended = true
		hasUpstream := s.upstreamID != ""
		reason := s.reason
		s.mu.Unlock()
		if hasUpstream {
			s.deleteUpstream()
		}
		s.store.remove(s.id)
		metrics.sessionsEnded.WithLabelValues(reason).Inc()
		s.store.logger().Info("session ended",
			zap.String("session", s.tag),
			zap.String("reason", reason),
			zap.Duration("duration", time.Since(s.created)),
			zap.Uint64("messages_received", s.received.Load()),
			zap.Uint64("messages_sent", s.sent.Load()))
	})
}

// setUpstreamSession records the upstream's session ID. If the session
// ended meanwhile, nothing else will delete the upstream session, so this
// does.
func (s *session) setUpstreamSession(id string) {
	s.mu.Lock()
	s.upstreamID = id
	ended := s.ended
	s.mu.Unlock()
	if ended {
		s.deleteUpstream()
	}
}

func (s *session) setProtocol(version string) {
	s.mu.Lock()
	s.protocol = version
	s.mu.Unlock()
}

// upstreamHeader adds the session's Streamable HTTP headers to h.
func (s *session) upstreamHeader(h http.Header) http.Header {
	s.mu.Lock()
	id, version := s.upstreamID, s.protocol
	s.mu.Unlock()
	if id != "" {
		h.Set(headerSessionID, id)
	}
	if version != "" {
		h.Set(headerProtocolVersion, version)
	}
	return h
}

// deliver queues a message for the session's stream. It waits while the
// queue is full rather than drop anything, until the session ends.
func (s *session) deliver(data []byte) error {
	select {
	case s.events <- data:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// authUser returns the user that an authentication handler ahead in the
// route (basic_auth, forward_auth, …) set for r, or "".
func authUser(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	user, _ := repl.GetString("http.auth.user.id")
	return user
}

// ownedBy reports whether a POST from user may use the session: a session
// opened by an authenticated user takes messages only from that user.
func (s *session) ownedBy(user string) bool {
	return s.user == "" || s.user == user
}
