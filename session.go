package mcpsse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
	user    string // the authenticated user who opened it, if any
	// identity is who opened it, for a re-attach without the session ID;
	// see identity().
	identity string

	// events carries compact JSON-RPC messages to the stream, in order.
	events eventQueue
	// wake, in a cluster, tells the stream held here to read the
	// session's log in Redis for events it missed; nil otherwise.
	wake chan struct{}
	// epoch, in a cluster, is the epoch under which this instance holds
	// the session's stream, or 0.
	epoch atomic.Uint64
	// sent counts the messages written to the client's stream; received
	// those the client posted.
	sent, received atomic.Uint64
	// delivered is the last event written to a stream without error.
	delivered atomic.Uint64
	// registered, in a cluster, is set once Redis holds the session.
	registered atomic.Bool

	// attachMu orders streams taking the session over.
	attachMu sync.Mutex
	// stream is the attached stream, if any; it changes under attachMu.
	stream atomic.Pointer[attachment]

	// initMu lets one exchange at a time initialize the upstream session
	// again after the upstream forgot it.
	initMu sync.Mutex

	// ctx ends with the session; every upstream exchange of the session
	// runs under it.
	ctx     *scope
	endOnce sync.Once
	endErr  error // why the upstream session could not be deleted; set in endOnce

	mu sync.Mutex
	// header holds the client's headers as they go upstream, from its
	// latest POST or stream request: the upstream GET stream and the
	// DELETE carry its latest credentials.
	header     headerList
	upstreamID string // the upstream's Mcp-Session-Id
	protocol   string // the protocol version the upstream negotiated
	// upstream ends with the upstream session: when the session ends, or
	// when the client starts over with initialize. The exchanges and the
	// GET stream of that upstream session run under it.
	upstream    *scope
	lastSent    chan struct{}  // closed once the last message posted has gone upstream
	inFlight    int            // messages posted and not yet done upstream
	listening   *listenRun     // the relay of the upstream GET stream, if any
	refused     *listenRefusal // why the GET stream stopped for good, if it did
	reason      string         // why the session stopped; "" while it runs
	expiry      *time.Timer    // ends the session while no stream is attached
	recent      []sentEvent    // the last events written, for a replay
	recentBytes int            // the size of their data
	initParams  []byte         // the params of the client's initialize
	saved       *sharedState   // in a cluster, the shared state as Redis last had it from here
	// statelessState is kept for an upstream that speaks
	// revisionStateless; nil otherwise.
	statelessState *statelessState
	// The flags, together, since each on its own would take a word.
	initialized bool // notifications/initialized went upstream
	ended       bool // the upstream session is being or was deleted
	initSeen    bool // a client initialize was forwarded, or one made for it
	dropped     bool // in a cluster, this copy left the store (see dropIfIdle)
}

// open starts a session for the stream request r, which the handler with
// settings cfg serves.
func (s *sessionStore) open(r *http.Request, cfg *settings) (*session, error) {
	sess := s.newSession(uuid.NewString(), authUser(r), identity(r), r.RemoteAddr)
	sess.header = listHeader(forwardedHeader(r))
	if err := s.add(sess, cfg); err != nil {
		sess.ctx.end()
		return nil, err
	}
	if s.node != nil {
		sess.register()
	}
	s.logger().Info("session opened",
		zap.String("session", sess.tag),
		zap.String("remote", sess.remote),
		zap.String("user", sess.user))
	return sess, nil
}

// newSession makes the session id, opened by user of the identity from
// remote, not yet in the store.
func (s *sessionStore) newSession(id, user, identity, remote string) *session {
	sum := sha256.Sum256([]byte(id))
	ctx := newScope(context.Background())
	sess := &session{
		id:       id,
		tag:      hex.EncodeToString(sum[:4]),
		store:    s,
		created:  time.Now(),
		remote:   remote,
		user:     user,
		identity: identity,
		events:   newEventQueue(),
		ctx:      ctx,
		upstream: newScope(ctx),
		lastSent: nothingSent,
	}
	if s.node != nil {
		sess.wake = make(chan struct{}, 1)
	}
	// The session's end tells its attached stream, if any, to stop.
	ctx.AfterFunc(func() { sess.dropStream(errSessionEnding) })
	return sess
}

// stop ends the session's stream and upstream exchanges at once and
// refuses further messages. The first reason given is the one logged.
func (s *session) stop(reason string) {
	s.mu.Lock()
	if s.reason == "" {
		s.reason = reason
	}
	s.mu.Unlock()
	s.ctx.end()
}

// end stops the session, deletes its upstream session within ctx, and
// then forgets it, once; later calls wait for the first to finish. A
// session stays findable while its upstream session is being deleted, so
// that ending every session of a store waits for those DELETEs too. It
// returns the error of a DELETE that failed or never went out.
func (s *session) end(ctx context.Context, reason string) error {
	s.stop(reason)
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.ended = true
		upstreamID := s.upstreamID
		reason := s.reason
		s.mu.Unlock()
		if upstreamID != "" {
			s.endErr = s.deleteUpstream(ctx, upstreamID)
		}
		if s.store.node != nil {
			s.forgetShared()
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
	return s.endErr
}

// endAlone ends the session by itself, not with every session of its
// store, logging a DELETE that failed.
func (s *session) endAlone(reason string) {
	s.deleteAlone(func(ctx context.Context) error { return s.end(ctx, reason) })
}

// deleteAlone runs del, which deletes an upstream session, within
// upstreamDeleteTimeout, and logs its failure.
func (s *session) deleteAlone(del func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), upstreamDeleteTimeout)
	defer cancel()
	if err := del(ctx); err != nil {
		s.store.logger().Warn("deleting upstream session", zap.String("session", s.tag), zap.Error(err))
	}
}

// deleteUpstream ends the upstream session id within ctx. A 405 means the
// upstream does not let clients end sessions, and a 404 that it ended the
// session itself, which is fine.
func (s *session) deleteUpstream(ctx context.Context, id string) error {
	select {
	case s.store.deletes <- struct{}{}:
		defer func() { <-s.store.deletes }()
	case <-ctx.Done():
		return fmt.Errorf("no time left to delete the upstream session: %w", ctx.Err())
	}
	defer observeDuration(http.MethodDelete, time.Now())
	header := s.currentHeader()
	header.Set(headerSessionID, id)
	up := s.store.upstream
	resp, err := up.send(ctx, http.MethodDelete, nil, header, nil, upstreamDeleteTimeout)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
			err = checkStatus(resp)
		}
	}
	if err != nil {
		countUpstreamError(err)
	}
	return err
}

// setUpstreamSession records the upstream's session ID, opened under the
// upstream context ctx. If the session ended or started over meanwhile,
// nothing else will delete the upstream session, so this does.
func (s *session) setUpstreamSession(ctx context.Context, id string) {
	s.mu.Lock()
	current := s.upstream == ctx && !s.ended
	if current {
		s.upstreamID = id
	}
	s.mu.Unlock()
	if !current {
		s.deleteInBackground(id)
		return
	}
	s.share()
}

// deleteInBackground deletes an upstream session that nothing else will,
// within upstreamDeleteTimeout.
func (s *session) deleteInBackground(id string) {
	go s.deleteAlone(func(ctx context.Context) error { return s.deleteUpstream(ctx, id) })
}

// setHeader records the client's headers of its latest request, as they
// go upstream.
func (s *session) setHeader(h http.Header) {
	l := listHeader(h)
	s.mu.Lock()
	s.header = l
	s.mu.Unlock()
}

// currentHeader returns a copy of the client's latest headers, with the
// session's Streamable HTTP headers.
func (s *session) currentHeader() http.Header {
	s.mu.Lock()
	h := s.header.header()
	s.mu.Unlock()
	return s.upstreamHeader(h)
}

// setProtocol records the protocol version negotiated for the upstream
// session of ctx.
func (s *session) setProtocol(ctx context.Context, version string) {
	s.mu.Lock()
	current := s.upstream == ctx
	if current {
		s.protocol = version
	}
	s.mu.Unlock()
	if current {
		s.share()
	}
}

// upstreamHeader adds the session's Streamable HTTP headers to h.
func (s *session) upstreamHeader(h http.Header) http.Header {
	s.mu.Lock()
	id, version := s.upstreamID, s.protocol
	s.mu.Unlock()
	// A header from before the upstream forgot the session must not
	// carry its stale values on.
	setOrDel(h, headerSessionID, id)
	setOrDel(h, headerProtocolVersion, version)
	return h
}

func setOrDel(h http.Header, key, value string) {
	if value == "" {
		h.Del(key)
		return
	}
	h.Set(key, value)
}

// deliver queues a message for the session's stream. It waits while the
// queue is full rather than drop anything, until ctx, that of the upstream
// session the message comes from, ends.
func (s *session) deliver(ctx context.Context, data []byte) error {
	return s.deliverFrom(ctx, data, answerTo{})
}

// relayToClient queues the compact message raw of the kind for the
// session's stream as deliverFrom does, and counts it once queued.
func (s *session) relayToClient(ctx context.Context, raw []byte, kind messageKind, to answerTo) error {
	if err := s.deliverFrom(ctx, eventData(raw), to); err != nil {
		return err
	}
	metrics.messages.WithLabelValues(toClient, kind.String()).Inc()
	return nil
}

// deliverFrom is deliver for a message of the upstream's answer to, or of
// its GET stream (to.stream). In a cluster, the message goes to the
// session's log in Redis. If Redis cannot be reached, it goes to the
// stream held here, or, with the stream held elsewhere, waits here for
// Redis to be back, maxRedisWait at most.
func (s *session) deliverFrom(ctx context.Context, data []byte, to answerTo) error {
	if s.store.node != nil {
		for waited := time.Duration(0); ; waited += redisRetryEvery {
			err := s.appendShared(data, to)
			if err == nil || errors.Is(err, errUnknownSession) || errors.Is(err, errFenced) {
				return err
			}
			if s.hasStream() {
				break
			}
			if waited >= maxRedisWait || !sleepCtx(ctx, redisRetryEvery) {
				return err
			}
		}
	}
	return s.events.push(ctx, event{data: data}, s.store.settings().queueSize)
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
