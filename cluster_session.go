package mcpsse

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Why a stream held in a cluster stops, besides those of every stream.
var (
	errLeaseLost  = errors.New("this instance may have lost the stream to another while it could not renew its membership")
	errEventsLost = errors.New("events for the client were trimmed from the session's log before its stream read them")
	errRedisRead  = errors.New("reading the session's log")
	errFenced     = errors.New("another instance finished this request")
)

// Reasons logged for streams and sessions of a cluster.
const (
	reasonLeaseLost      = "lease_lost"
	reasonEventsLost     = "events_lost"
	reasonEndedElsewhere = "ended_elsewhere"
	reasonStateLost      = "state_lost"
)

// errRedisUnreachable refuses what needs another instance while Redis
// cannot be reached.
var errRedisUnreachable = errors.New("the session is held by another gateway instance, which cannot be reached now")

// sharedState is what every instance must know of a session to take its
// POSTs: what its upstream session is, and what healing it needs. Each
// field is a field of the session's hash in Redis.
type sharedState struct {
	upstreamID  string // up
	protocol    string // proto
	initialized bool   // init
	initSeen    bool   // seen
	initParams  string // params
	header      string // hdr: the client's latest headers as JSON
	logLevel    string // lvl: for an upstream that speaks revisionStateless
	subscribed  string // subs: the same's resource subscriptions, as a JSON array
	caps        string // caps: the same's capabilities
}

// fields returns the hash fields of st that differ from old.
func (st sharedState) fields(old sharedState) []any {
	var out []any
	add := func(name string, v, was string) {
		if v != was {
			out = append(out, name, v)
		}
	}
	add("up", st.upstreamID, old.upstreamID)
	add("proto", st.protocol, old.protocol)
	add("init", boolField(st.initialized), boolField(old.initialized))
	add("seen", boolField(st.initSeen), boolField(old.initSeen))
	add("params", st.initParams, old.initParams)
	add("hdr", st.header, old.header)
	add("lvl", st.logLevel, old.logLevel)
	add("subs", st.subscribed, old.subscribed)
	add("caps", st.caps, old.caps)
	return out
}

func boolField(b bool) string {
	if b {
		return "1"
	}
	return ""
}

// snapshot returns the session's shared state. Callers hold s.mu.
func (s *session) snapshot() sharedState {
	hdr, _ := json.Marshal(s.header.header())
	return sharedState{
		upstreamID:  s.upstreamID,
		protocol:    s.protocol,
		initialized: s.initialized,
		initSeen:    s.initSeen,
		initParams:  string(s.initParams),
		header:      string(hdr),
	}.withStateless(s.statelessState)
}

// withStateless adds the state of a stateless upstream's session, if st
// is set.
func (state sharedState) withStateless(st *statelessState) sharedState {
	if st != nil {
		state.logLevel, state.caps = st.logLevel, string(st.capabilities)
		state.subscribed = subscribedField(st.subscribed)
	}
	return state
}

// subscribedField is the subs field of resource subscriptions.
func subscribedField(uris []string) string {
	if len(uris) == 0 {
		return ""
	}
	b, _ := json.Marshal(uris)
	return string(b)
}

// apply sets the session's state to what Redis holds. Callers hold s.mu.
func (s *session) apply(st sharedState) {
	if st.upstreamID != s.upstreamID {
		// Another instance initialized the upstream session again, or
		// the client started over there: what ran under the old one is
		// done with.
		if s.upstreamID != "" {
			s.upstream.end()
			s.upstream = newScope(s.ctx)
		}
		s.upstreamID = st.upstreamID
	}
	s.protocol, s.initialized, s.initSeen = st.protocol, st.initialized, st.initSeen
	if st.protocol == revisionStateless {
		sl := s.statelessLocked()
		sl.logLevel, sl.subscribed, sl.capabilities = st.logLevel, nil, nil
		_ = json.Unmarshal([]byte(st.subscribed), &sl.subscribed)
		if st.caps != "" {
			sl.capabilities = json.RawMessage(st.caps)
		}
	}
	s.initParams = []byte(st.initParams)
	if st.initParams == "" {
		s.initParams = nil
	}
	if s.header == nil && st.header != "" {
		var h http.Header
		if json.Unmarshal([]byte(st.header), &h) == nil {
			s.header = listHeader(h)
		}
	}
	s.saved = &st
}

// share writes to Redis what changed of the session's shared state since
// it last did, field by field, so that it never writes back a field
// another instance changed since. It does nothing outside a cluster.
func (s *session) share() {
	n := s.store.node
	if n == nil {
		return
	}
	s.mu.Lock()
	now := s.snapshot()
	var saved sharedState
	if s.saved != nil {
		saved = *s.saved
	}
	changed := now.fields(saved)
	s.mu.Unlock()
	if len(changed) == 0 {
		return
	}
	err := n.call("share", func(ctx context.Context) error {
		return n.rdb.HSet(ctx, n.key("s", s.id), changed...).Err()
	})
	if err == nil {
		s.mu.Lock()
		s.saved = &now
		s.mu.Unlock()
	}
}

// readShared reads a session's shared state and who opened it. ok is
// false if Redis does not hold the session.
func (n *node) readShared(ctx context.Context, id string) (st sharedState, user, identity string, ok bool, err error) {
	vals, err := n.rdb.HMGet(ctx, n.key("s", id), "up", "proto", "init", "seen", "params", "hdr", "user", "who", "created", "lvl", "subs", "caps").Result()
	if err != nil {
		return st, "", "", false, err
	}
	str := func(i int) string {
		v, _ := vals[i].(string)
		return v
	}
	if vals[8] == nil {
		return st, "", "", false, nil
	}
	st = sharedState{
		upstreamID:  str(0),
		protocol:    str(1),
		initialized: str(2) == "1",
		initSeen:    str(3) == "1",
		initParams:  str(4),
		header:      str(5),
		logLevel:    str(9),
		subscribed:  str(10),
		caps:        str(11),
	}
	return st, str(6), str(7), true, nil
}

// refresh brings a session's shared state up to date from Redis before a
// message of it goes upstream. It reports false if Redis no longer holds
// the session, which then ends here. If Redis cannot be reached, it
// reports true and the error: a session whose stream is held here goes on
// with what this instance knows.
func (s *session) refresh() (bool, error) {
	n := s.store.node
	var st sharedState
	var ok bool
	err := n.call("refresh", func(ctx context.Context) (err error) {
		st, _, _, ok, err = n.readShared(ctx, s.id)
		return err
	})
	switch {
	case err != nil:
		return true, err
	case !ok:
		s.lost()
		return false, nil
	}
	s.mu.Lock()
	s.apply(st)
	s.mu.Unlock()
	return true, nil
}

// inRedis reports whether Redis holds the session, or cannot be asked.
func (s *session) inRedis() bool {
	n := s.store.node
	var found int64 = 1
	_ = n.call("exists", func(ctx context.Context) (err error) {
		found, err = n.rdb.Exists(ctx, n.key("s", s.id)).Result()
		return err
	})
	return found != 0
}

// lost ends here a session whose state Redis lost (it restarted empty):
// its stream ends and its client, told the session is unknown, starts
// over. Its upstream session is deleted.
func (s *session) lost() {
	s.store.logger().Warn("session no longer in redis; ending it", zap.String("session", s.tag))
	s.stop(reasonStateLost)
	go s.endAlone(reasonStateLost)
}

// fetch returns this instance's copy of a session of the cluster that
// another instance opened, making it from Redis. It returns nil for a
// session Redis does not hold, and errRedisUnreachable if it cannot ask.
func (st *sessionStore) fetch(id string) (*session, error) {
	n := st.node
	var shared sharedState
	var user, identity string
	var ok bool
	err := n.call("fetch", func(ctx context.Context) (err error) {
		shared, user, identity, ok, err = n.readShared(ctx, id)
		return err
	})
	if err != nil {
		return nil, errRedisUnreachable
	}
	if !ok {
		return nil, nil
	}
	s := st.newSession(id, user, identity, "")
	s.registered.Store(true)
	s.apply(shared)
	return st.adopt(s), nil
}

// register writes a session opened here to Redis. Sessions opened while
// Redis is unreachable are registered once it is back.
func (s *session) register() {
	n := s.store.node
	s.mu.Lock()
	st := s.snapshot()
	s.mu.Unlock()
	fields := append(st.fields(sharedState{}), "user", s.user, "who", s.identity,
		"created", s.created.UnixMilli(), "remote", s.remote, "seq", s.sent.Load())
	err := n.call("register", func(ctx context.Context) error {
		_, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, n.key("s", s.id), fields...)
			p.ZAdd(ctx, n.ns+":sessions", redis.Z{Score: float64(s.created.UnixMilli()), Member: s.id})
			if s.identity != "" {
				p.SAdd(ctx, n.key("w", s.identity), s.id)
			}
			return nil
		})
		return err
	})
	n.unregisteredMu.Lock()
	if err != nil {
		n.unregistered[s] = struct{}{}
	} else {
		delete(n.unregistered, s)
	}
	n.unregisteredMu.Unlock()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.saved = &st
	s.mu.Unlock()
	s.registered.Store(true)
	if s.hasStream() {
		s.holdShared()
	}
}

// retryRegistrations registers the sessions opened while Redis was
// unreachable, and forgets those that ended meanwhile.
func (n *node) retryRegistrations() {
	n.unregisteredMu.Lock()
	waiting := slices.Collect(maps.Keys(n.unregistered))
	n.unregisteredMu.Unlock()
	for _, s := range waiting {
		if s.stopped() {
			n.unregisteredMu.Lock()
			delete(n.unregistered, s)
			n.unregisteredMu.Unlock()
			continue
		}
		s.register()
	}
}

// numberAndHolder reads what the append and attach scripts return: a
// number and an instance (or ""), or a lone number for a session Redis
// does not hold.
func numberAndHolder(res any) (int64, string) {
	if v, ok := res.([]any); ok && len(v) == 2 {
		n, _ := v[0].(int64)
		holder, _ := v[1].(string)
		return n, holder
	}
	n, _ := res.(int64)
	return n, ""
}

// holdShared makes this instance the holder of the session's stream in
// Redis, under a new epoch, telling the previous holder. A session Redis no
// longer holds ends.
func (s *session) holdShared() {
	n := s.store.node
	// No epoch until the new one is known: the notice for the previous
	// holder, if that is this instance, must not stop the new stream.
	s.epoch.Store(0)
	var epoch int64
	var previous string
	err := n.call("attach", func(ctx context.Context) error {
		res, err := attachScript.Run(ctx, n.rdb,
			[]string{n.key("s", s.id), n.key("l", s.id), n.key("h", n.id), n.ns + ":expiry"},
			n.ns, s.id, n.id).Result()
		if err != nil {
			return err
		}
		epoch, previous = numberAndHolder(res)
		return nil
	})
	switch {
	case err != nil:
		return // held here alone until Redis is back
	case epoch < 0:
		s.lost()
		return
	}
	s.epoch.Store(uint64(epoch))
	if previous != "" && previous != n.id {
		metrics.takenOver.Inc()
		n.store.logger().Info("stream taken over from another instance", zap.String("session", s.tag), zap.String("from", previous))
	}
}

// releaseInCluster gives up the hold of a stream that stopped for why on
// its session: the session waits resume_window (of cfg) in Redis for a
// stream on any instance, or ends now if it may not wait. Either way this
// instance's copy goes once nothing of it runs here.
func (s *session) releaseInCluster(why string, cfg *settings) {
	s.stopListening(s.listeningRun(), nil)
	s.stopSubscriptions()
	switch why {
	case reasonClientGone, reasonLifetime, reasonShutdown, reasonReplaced, reasonLeaseLost:
		if window := cfg.resumeWindow; window > 0 {
			if !s.releaseShared(window) && !s.inRedis() {
				s.lost()
				return
			}
			s.store.dropIfIdle(s)
			return
		}
	}
	s.stop(why)
	go s.endAlone(why)
}

// detachedOf returns the one session of the cluster that the identity
// opened and no stream holds now, and the last event its streams
// delivered; nil if there is none, or more than one. A stream whose
// instance missed its last heartbeat counts as gone: its client, back
// through another instance, finds its session before the instance's
// membership runs out. It fails only if Redis cannot be reached.
func (st *sessionStore) detachedOf(identity string) (*session, uint64, error) {
	n := st.node
	var found string
	var delivered uint64
	err := n.call("detached", func(ctx context.Context) error {
		ids, err := n.rdb.SMembers(ctx, n.key("w", identity)).Result()
		if err != nil || len(ids) == 0 {
			return err
		}
		leases := make([]*redis.StringCmd, len(ids))
		if _, err := n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				leases[i] = p.Get(ctx, n.key("l", id))
			}
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		holders := make([]string, len(ids))
		alive := make([]*redis.DurationCmd, len(ids))
		if _, err := n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range leases {
				holders[i], _, _ = strings.Cut(c.Val(), " ")
				if holders[i] != "" && holders[i] != n.id {
					alive[i] = p.PTTL(ctx, n.key("i", holders[i]))
				}
			}
			return nil
		}); err != nil {
			return err
		}
		for i := range ids {
			switch {
			case holders[i] == n.id:
				if s := st.get(ids[i]); s != nil && s.hasStream() {
					continue
				}
			case alive[i] != nil && alive[i].Val() > memberTTL-heartbeatEvery*3/2:
				continue // held by a live instance
			}
			if found != "" {
				found = "" // more than one: a guess could be wrong
				return nil
			}
			found = ids[i]
		}
		if found == "" {
			return nil
		}
		delivered, err = n.rdb.HGet(ctx, n.key("s", found), "dlv").Uint64()
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		return err
	})
	if err != nil || found == "" {
		return nil, 0, err
	}
	s := st.get(found)
	if s == nil {
		if s, err = st.fetch(found); s == nil {
			return nil, 0, err
		}
	}
	if s.stopped() {
		return nil, 0, nil
	}
	return s, delivered, nil
}

// releaseShared gives up this instance's hold on the session's stream, if
// no other instance took it over meanwhile: the session then ends after
// window, unless a stream re-attaches. It reports whether it released.
func (s *session) releaseShared(window time.Duration) bool {
	n := s.store.node
	epoch := s.epoch.Swap(0)
	if epoch == 0 {
		return false
	}
	var released int64
	_ = n.call("release", func(ctx context.Context) (err error) {
		released, err = releaseScript.Run(ctx, n.rdb,
			[]string{n.key("l", s.id), n.key("h", n.id), n.ns + ":expiry", n.key("s", s.id)},
			s.id, n.id+" "+strconv.FormatUint(epoch, 10), window.Milliseconds(), s.deliveredSeq()).Int64()
		return err
	})
	return released == 1
}

// event is one message for a session's stream, with its number in the
// session, or 0 for one this instance numbers as it writes it.
type event struct {
	seq  uint64
	data []byte
}

// appendShared appends a message for the client to the session's log in
// Redis, from where it reaches the stream wherever it is held. A message
// of the upstream's GET stream (to.stream) records that stream's last
// event ID with it. A message of the answer to a request this instance
// recorded as pending (to.pending) is written only while the record
// stands: else another instance finished the request (this one was paused,
// say), and it fails with errFenced.
func (s *session) appendShared(data []byte, to answerTo) error {
	n := s.store.node
	var floor uint64
	if s.hasStream() {
		floor = s.sent.Load() // past what this stream numbered itself
	}
	listenID, pendingKey, pendingField := "", "", ""
	if to.stream != nil {
		listenID = to.stream.lastID
	}
	if to.pending {
		pendingKey, pendingField = n.key("p", n.id), pendingName(s.id, to.id)
	}
	var holder string
	var seq int64
	err := n.call("append", func(ctx context.Context) error {
		res, err := appendScript.Run(ctx, n.rdb,
			[]string{n.key("s", s.id), n.key("e", s.id), n.key("l", s.id)},
			n.ns, s.id, data, maxLogEvents, floor, listenID, pendingKey, pendingField).Result()
		if err != nil {
			return err
		}
		seq, holder = numberAndHolder(res)
		return nil
	})
	if err != nil {
		return err
	}
	switch seq {
	case -1:
		s.lost()
		return errUnknownSession
	case -2:
		return errFenced
	}
	if holder != "" && holder != n.id {
		metrics.routed.Inc()
	}
	return nil
}

// pendingName names a client request an instance relays, in its pending
// hash.
func pendingName(sessionID string, id json.RawMessage) string {
	return sessionID + " " + string(id)
}

// pend records, before a client request goes upstream, that this instance
// relays it: if the instance dies, another finishes it. It reports whether
// the record was made.
func (s *session) pend(id json.RawMessage) bool {
	n := s.store.node
	return n.call("pend", func(ctx context.Context) error {
		return n.rdb.HSet(ctx, n.key("p", n.id), pendingName(s.id, id), "").Err()
	}) == nil
}

// progressed records the last event ID of the upstream's answer to a
// pending request, from which another instance can resume it, unless
// another instance took the request over.
func (s *session) progressed(id json.RawMessage, lastID string) {
	n := s.store.node
	_ = n.call("progress", func(ctx context.Context) error {
		return progressScript.Run(ctx, n.rdb, []string{n.key("p", n.id)}, pendingName(s.id, id), lastID).Err()
	})
}

// settle records that a client request is no longer relayed here.
func (s *session) settle(id json.RawMessage) {
	n := s.store.node
	_ = n.call("settle", func(ctx context.Context) error {
		return n.rdb.HDel(ctx, n.key("p", n.id), pendingName(s.id, id)).Err()
	})
}

// readLog returns the events of the session's log after seq, oldest
// first, at most count. It fails with errEventsLost if the log no longer
// holds the event after seq.
func (s *session) readLog(after uint64, count int64) ([]event, error) {
	n := s.store.node
	var entries []redis.XMessage
	err := n.call("read", func(ctx context.Context) (err error) {
		entries, err = n.rdb.XRangeN(ctx, n.key("e", s.id), "("+strconv.FormatUint(after, 10)+"-0", "+", count).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]event, 0, len(entries))
	for _, e := range entries {
		num, _, _ := strings.Cut(e.ID, "-")
		seq, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		data, _ := e.Values["d"].(string)
		out = append(out, event{seq: seq, data: []byte(data)})
	}
	if len(out) > 0 && out[0].seq > after+1 {
		return out, errEventsLost
	}
	return out, nil
}

// offer hands an event heard from Redis to the stream held here. It never
// blocks the node's subscription: when the session's queue is full, the
// stream reads what it missed from the log instead.
func (s *session) offer(ev event) {
	if !s.events.tryPush(ev, s.store.settings().queueSize) {
		s.wakeUp()
	}
}

// wakeUp tells the stream held here to read the session's log for events
// it may have missed.
func (s *session) wakeUp() { signal(s.wake) }

// replacedElsewhere stops the stream held here under epoch: a stream on
// another instance took the session over.
func (s *session) replacedElsewhere(epoch uint64) {
	if s.epoch.Load() == epoch {
		s.dropStream(errReplaced)
	}
}

// endedElsewhere ends this instance's copy of a session that another
// instance ended, upstream session included.
func (s *session) endedElsewhere() {
	s.stop(reasonEndedElsewhere)
	s.store.remove(s.id)
}

// initializedElsewhere opens the upstream's GET stream for a session whose
// client initialized it through another instance, when its stream is held
// here.
func (s *session) initializedElsewhere() {
	if ok, err := s.refresh(); ok && err == nil {
		s.listen(s.currentUpstream())
	}
}

// currentUpstream returns the context of the session's upstream session.
func (s *session) currentUpstream() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upstream
}

// announceInitialized tells the instance holding the session's stream, if
// another, that the session is initialized, or that its resource
// subscriptions changed, so that it brings its copy up to date and opens
// the upstream's GET stream (for an upstream of revisionStateless, its
// subscriptions/listen stream) for it.
func (s *session) announceInitialized() {
	n := s.store.node
	if n == nil || s.hasStream() {
		return
	}
	_ = n.call("announce", func(ctx context.Context) error {
		lease, err := n.rdb.Get(ctx, n.key("l", s.id)).Result()
		if err != nil {
			return err
		}
		holder, _, _ := strings.Cut(lease, " ")
		return n.rdb.Publish(ctx, n.key("c", holder), "i "+s.id).Err()
	})
}

// forgetShared removes an ended session from Redis and tells every
// instance.
func (s *session) forgetShared() {
	n := s.store.node
	_ = n.call("forget", func(ctx context.Context) error {
		return forgetScript.Run(ctx, n.rdb,
			[]string{n.key("s", s.id), n.key("e", s.id), n.key("l", s.id), n.ns + ":sessions", n.ns + ":expiry"},
			n.ns, s.id).Err()
	})
}
