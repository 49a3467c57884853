package mcpsse

import (
	"context"
	"maps"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// maxConcurrentDeletes bounds the upstream DELETEs of one store in flight.
const maxConcurrentDeletes = 64

// endAllDeleteBudget bounds how long ending every session of a store
// (shutdown, the handler removed) waits for the upstream DELETEs, whatever
// the upstream does.
const endAllDeleteBudget = 2 * time.Second

// policy is what a handler's settings ask of its sessions; comparable, so
// that handlers sharing sessions by name can be checked to agree.
type policy struct {
	pingInterval    time.Duration
	maxLifetime     time.Duration
	sendTimeout     time.Duration
	upstreamTimeout time.Duration
	resumeWindow    time.Duration // 0: sessions end with their stream
	maxMessageSize  int64
	queueSize       int
	maxSessions     int
	maxInFlight     int
	upstreamStream  bool // sessions hold the upstream's GET stream
	// upstreamProtocol is upstream_protocol: auto, or the revision
	// that sessions speak upstream.
	upstreamProtocol string
}

// settings are one handler's policy and logger. A request follows the
// settings of the handler that serves it; a stream that outlives a reload
// follows those of the newest running config (see goLive).
type settings struct {
	policy
	logger *zap.Logger
}

// sessionStore holds the live sessions of one handler identity and the
// client for its upstream. It is the one place where sessions are held:
// the endpoints find them here (get, resumable), and sessions enter and
// leave here (add, remove); everything else a session needs, it holds
// itself.
type sessionStore struct {
	key      string // in stores
	name     string
	upstream *upstreamClient
	guard    *guard
	// discovery learns whether the upstream speaks revisionStateless;
	// tools keeps its tools' Mcp-Param-* headers if it does.
	discovery discoverer
	tools     toolHeaders
	// node is this instance's member of the store's cluster, if the
	// handler shares its sessions; nil otherwise.
	node   *node
	prefix string
	// deletes bounds the upstream DELETEs in flight, so that ending many
	// sessions at once does not open a connection for each.
	deletes chan struct{}
	// relays runs the relays of the store's messages (see forward).
	relays *workers

	// current are the settings of the handler in the newest running
	// config, or of the one that made the store until a config runs.
	current atomic.Pointer[settings]

	mu       sync.Mutex
	sessions map[string]*session
	// byIdentity holds the sessions of each caller identity (see
	// identity()), so that a reconnect looks at its caller's only.
	byIdentity map[string]map[string]*session
	closed     bool
	// initialized holds the initialize params of clients by identity.
	initialized map[string][]byte
}

func newSessionStore(name string, u *url.URL, prefix string, cfg *settings, shared *clusterSpec) *sessionStore {
	s := &sessionStore{
		key:         storeKey(name, u, prefix, shared),
		name:        name,
		upstream:    newUpstreamClient(u),
		prefix:      prefix,
		deletes:     make(chan struct{}, maxConcurrentDeletes),
		relays:      newWorkers(),
		sessions:    make(map[string]*session),
		byIdentity:  make(map[string]map[string]*session),
		initialized: make(map[string][]byte),
	}
	s.guard = newGuard(s.upstream)
	s.current.Store(cfg)
	s.upstream.transport.onChoose = func(h2c bool) {
		proto := "HTTP/1.1"
		if h2c {
			proto = "h2c"
		}
		s.logger().Info("upstream protocol chosen", zap.String("upstream", u.Redacted()), zap.String("protocol", proto))
	}
	if shared != nil {
		s.node = newNode(shared, s)
	}
	return s
}

// goLive makes cfg, of a handler whose config Caddy now runs, the
// settings that the store's streams follow. Handlers that share the store
// have equal settings, so the order they go live in does not matter.
//
// Each session's stream learns of them through its queue's signal, on
// which it waits anyway, rather than a channel of their own: a stream
// wakes on every ping out of a select that costs for each channel it
// waits on. It reads the settings once it is attached and at every wake
// of its queue, so a stream that attaches during the change, after its
// session was signalled, has them too.
func (s *sessionStore) goLive(cfg *settings) {
	if old := s.current.Swap(cfg); old != cfg {
		s.mu.Lock()
		for _, sess := range s.sessions {
			signal(sess.events.ready)
		}
		s.mu.Unlock()
	}
	if s.node != nil {
		s.node.run()
	}
}

func (s *sessionStore) settings() *settings { return s.current.Load() }

func (s *sessionStore) logger() *zap.Logger { return s.settings().logger }

// add registers a new session, unless the store is closed or holds the
// most sessions that cfg, of the handler opening it, allows.
func (s *sessionStore) add(sess *session, cfg *settings) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	if limit := cfg.maxSessions; limit > 0 && len(s.sessions) >= limit {
		return errTooManySessions
	}
	s.sessions[sess.id] = sess
	if sess.identity != "" {
		if s.byIdentity[sess.identity] == nil {
			s.byIdentity[sess.identity] = make(map[string]*session)
		}
		s.byIdentity[sess.identity][sess.id] = sess
	}
	metrics.sessionsActive.Inc()
	return nil
}

func (s *sessionStore) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

// lookup returns the session id for a POST: the one held here, or, in a
// cluster, this instance's copy of one another instance opened. It
// returns errRedisUnreachable if only Redis could tell, or if what the
// upstream answers could reach the client only through Redis.
func (s *sessionStore) lookup(id string) (*session, error) {
	sess := s.get(id)
	if s.node == nil {
		return sess, nil
	}
	if sess == nil {
		return s.fetch(id)
	}
	switch ok, err := sess.refresh(); {
	case !ok:
		return nil, nil
	case err != nil && !sess.hasStream():
		return nil, errRedisUnreachable
	}
	return sess, nil
}

// adopt adds a copy of a session another instance opened, unless the
// store has one already, and returns the store's.
func (s *sessionStore) adopt(sess *session) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if have := s.sessions[sess.id]; have != nil {
		sess.ctx.end()
		return have
	}
	s.sessions[sess.id] = sess
	metrics.sessionsActive.Inc()
	return sess
}

// dropIfIdle forgets this instance's copy of a session of the cluster
// once no stream is attached to it here and none of its messages is on
// its way upstream from here: Redis holds the session, and the next
// request for it makes a copy again.
func (s *sessionStore) dropIfIdle(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.inFlight > 0 || sess.hasStream() || s.sessions[sess.id] != sess {
		return
	}
	// A POST that found this copy before it went takes a new one.
	sess.dropped = true
	delete(s.sessions, sess.id)
	metrics.sessionsActive.Dec()
	sess.ctx.end()
}

// all returns the store's sessions.
func (s *sessionStore) all() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.sessions))
}

func (s *sessionStore) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		return
	}
	delete(s.sessions, id)
	if same := s.byIdentity[sess.identity]; same != nil {
		delete(same, id)
		if len(same) == 0 {
			delete(s.byIdentity, sess.identity)
		}
	}
	metrics.sessionsActive.Dec()
}

// busy reports whether a message of any session is on its way upstream.
func (s *sessionStore) busy() bool {
	for _, sess := range s.all() {
		sess.mu.Lock()
		n := sess.inFlight
		sess.mu.Unlock()
		if n > 0 {
			return true
		}
	}
	return false
}

// ofIdentity returns the sessions opened by a caller of the identity.
func (s *sessionStore) ofIdentity(identity string) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.byIdentity[identity]))
}

// endAll stops every stream at once, then ends every session and waits
// until each has deleted its upstream session, or endAllDeleteBudget has
// passed: at most maxConcurrentDeletes run at once, and those the budget
// leaves no time for are not sent. It logs how many upstream sessions it
// could not delete.
func (s *sessionStore) endAll(reason string) {
	all := s.all()
	if s.node != nil {
		// The rest of the cluster goes on with the sessions; the last
		// instance to leave ends them all.
		if !s.node.leave() {
			return
		}
		all = s.node.everySession()
	}
	if len(all) == 0 {
		return
	}
	for _, sess := range all {
		sess.stop(reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), endAllDeleteBudget)
	defer cancel()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for _, sess := range all {
		wg.Go(func() {
			if err := sess.end(ctx, reason); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	log := s.logger().Info
	if failed.Load() > 0 {
		log = s.logger().Warn
	}
	log("sessions ended",
		zap.String("reason", reason),
		zap.Int("sessions", len(all)),
		zap.Int64("upstream_sessions_not_deleted", failed.Load()))
}

// shutdown ends every stream at once as Caddy begins to exit. Outside a
// cluster it ends every session too; in one it hands the sessions over
// (see handOver), and the store leaves the cluster once Caddy's servers
// have stopped (Destruct), when nothing can reach this instance any more.
func (s *sessionStore) shutdown() {
	if s.node != nil {
		s.node.handOver()
		return
	}
	s.endAll(reasonShutdown)
}

// Destruct runs when no config uses the store any more: the handler was
// removed by a reload, or Caddy stopped. It ends the remaining sessions and
// refuses new ones.
func (s *sessionStore) Destruct() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	reason := reasonHandlerRemoved
	if caddy.Exiting() {
		reason = reasonShutdown // in a cluster, the last instance ends them now
	}
	s.endAll(reason)
	if s.node != nil {
		s.node.stop()
	}
	s.upstream.close()
	s.relays.stop()
	return nil
}
