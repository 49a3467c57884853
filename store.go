package mcpsse

import (
	"maps"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// stores holds one sessionStore per handler identity (upstream and prefix)
// across config reloads: the new config takes its reference before the old
// config releases its own, so sessions outlive a reload that keeps the
// handler, and end when one removes it.
var stores = caddy.NewUsagePool()

// maxConcurrentDeletes bounds the upstream DELETEs of one store in flight.
const maxConcurrentDeletes = 64

// storeKey identifies a handler across configs. The upstream is part of it
// because an upstream session lives on that upstream; the prefix because
// the endpoint announced to clients depends on it.
func storeKey(upstream *url.URL, prefix string) string {
	return upstream.String() + " " + prefix
}

// settings are the handler settings that running streams follow. A reload
// replaces them and closes changed, so streams pick up the new values.
type settings struct {
	pingInterval    time.Duration
	maxLifetime     time.Duration
	sendTimeout     time.Duration
	upstreamTimeout time.Duration
	resumeWindow    time.Duration // 0: sessions end with their stream
	queueSize       int
	maxSessions     int
	upstreamStream  bool // sessions hold the upstream's GET stream
	changed         chan struct{}
}

// sessionStore holds the live sessions of one handler identity and the
// client for its upstream.
type sessionStore struct {
	upstream *upstreamClient
	prefix   string
	// deletes bounds the upstream DELETEs in flight, so that ending many
	// sessions at once does not open a connection for each.
	deletes chan struct{}

	current atomic.Pointer[settings]
	log     atomic.Pointer[zap.Logger]

	mu       sync.Mutex
	sessions map[string]*session
	// byIdentity holds the sessions of each caller identity (see
	// identity()), so that a reconnect looks at its caller's only.
	byIdentity map[string]map[string]*session
	closed     bool
	// initialized holds the initialize params of clients by identity.
	initialized map[string][]byte
}

func newSessionStore(u *url.URL, prefix string, logger *zap.Logger) *sessionStore {
	s := &sessionStore{
		upstream:    newUpstreamClient(u),
		prefix:      prefix,
		deletes:     make(chan struct{}, maxConcurrentDeletes),
		sessions:    make(map[string]*session),
		byIdentity:  make(map[string]map[string]*session),
		initialized: make(map[string][]byte),
	}
	s.log.Store(logger)
	s.upstream.transport.onChoose = func(h2c bool) {
		proto := "HTTP/1.1"
		if h2c {
			proto = "h2c"
		}
		s.logger().Info("upstream protocol chosen", zap.String("upstream", u.Redacted()), zap.String("protocol", proto))
	}
	return s
}

// configure applies the settings and logger of the newest config.
func (s *sessionStore) configure(cfg *settings, logger *zap.Logger) {
	s.log.Store(logger)
	if old := s.current.Swap(cfg); old != nil {
		close(old.changed)
	}
}

func (s *sessionStore) settings() *settings { return s.current.Load() }

func (s *sessionStore) logger() *zap.Logger { return s.log.Load() }

// add registers a new session, unless the store is closed or holds the
// most sessions its settings allow.
func (s *sessionStore) add(sess *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	if limit := s.settings().maxSessions; limit > 0 && len(s.sessions) >= limit {
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

// ofIdentity returns the sessions opened by a caller of the identity.
func (s *sessionStore) ofIdentity(identity string) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.byIdentity[identity]))
}

// endAll stops every stream at once, then ends every session and waits
// until each has deleted its upstream session (each DELETE is bounded by
// upstreamDeleteTimeout, and at most maxConcurrentDeletes run at once).
func (s *sessionStore) endAll(reason string) {
	all := s.all()
	for _, sess := range all {
		sess.stop(reason)
	}
	var wg sync.WaitGroup
	for _, sess := range all {
		wg.Go(func() { sess.end(reason) })
	}
	wg.Wait()
}

// Destruct runs when no config uses the store any more: the handler was
// removed by a reload, or Caddy stopped. It ends the remaining sessions and
// refuses new ones.
func (s *sessionStore) Destruct() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.endAll(reasonHandlerRemoved)
	s.upstream.close()
	return nil
}
