package mcpsse

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Timing of a cluster's members.
const (
	// memberTTL is how long an instance counts as alive after its last
	// heartbeat; the streams a dead instance held are given up then.
	memberTTL = 10 * time.Second
	// heartbeatEvery is how often an instance renews its membership.
	heartbeatEvery = 2 * time.Second
	// sweepEvery is how often an instance looks for dead instances and
	// for sessions whose time without a stream is up.
	sweepEvery = time.Second
	// cursorsEvery is how often an instance writes the last events its
	// streams delivered, for a stream that re-attaches elsewhere without
	// Last-Event-ID.
	cursorsEvery = 100 * time.Millisecond
	// maxLogEvents bounds the events a session's log keeps in Redis.
	maxLogEvents = 1024
	// maxDuePerSweep bounds the sessions one sweep ends.
	maxDuePerSweep = 256
	// redisTimeout bounds each Redis call.
	redisTimeout = 2 * time.Second
	// maxRedisWait bounds how long a message for a stream held elsewhere
	// waits for Redis to be back; redisRetryEvery is how often it tries.
	maxRedisWait    = 30 * time.Second
	redisRetryEvery = 500 * time.Millisecond
)

// instanceID names this process in every cluster it joins: the host, the
// process and a random part, since replicas built from one image share
// hostnames' patterns and Caddy's instance ID.
var instanceID = func() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", strings.ReplaceAll(host, " ", "_"), os.Getpid(), hex.EncodeToString(b[:]))
}()

// errRedisDown fails a Redis call at once while Redis is unreachable.
var errRedisDown = errors.New("redis unreachable")

// processStart anchors the monotonic times a node keeps in atomics.
var processStart = time.Now()

// node is this process's member of the cluster of one session store: the
// Redis client, the subscription on which it hears of events for the
// streams it holds, and the loops that keep its membership, end expired
// sessions and take over what dead instances left.
type node struct {
	rdb   *redis.Client
	spec  *clusterSpec
	ns    string // the store's key namespace
	id    string // this instance
	store *sessionStore

	ctx     context.Context
	cancel  context.CancelFunc
	running sync.WaitGroup
	start   sync.Once

	// alive is when (since processStart) this node last knew it was a
	// member: its heartbeat was renewed, or Redis could not be reached
	// while it ran (no one can take a stream over then). A stream writes
	// only while that is recent: an instance that was paused for longer
	// than memberTTL writes nothing until it knows no one took over.
	alive atomic.Int64
	// down is set while Redis is unreachable, so that is logged once.
	down atomic.Bool
	// registered is set once the first heartbeat registered the
	// instance: a later one that finds no membership finds it lapsed.
	registered atomic.Bool
	// ran is set once the node's config ran.
	ran atomic.Bool
	// lastBeat is when (since processStart) the last heartbeat began.
	lastBeat atomic.Int64
	// left is set once the instance left the cluster (see leave): it
	// renews its membership no more.
	left atomic.Bool

	cursorsMu sync.Mutex
	cursors   map[string]uint64 // session → delivered, not yet written

	// unregistered are the sessions opened here while Redis could not be
	// reached, which the heartbeat registers once it can.
	unregisteredMu sync.Mutex
	unregistered   map[*session]struct{}
}

func newNode(spec *clusterSpec, store *sessionStore) *node {
	sum := sha256.Sum256([]byte(store.key))
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{
		rdb:          redis.NewClient(spec.options),
		spec:         spec,
		ns:           spec.keyPrefix + ":" + hex.EncodeToString(sum[:6]),
		id:           instanceID,
		store:        store,
		ctx:          ctx,
		cancel:       cancel,
		cursors:      make(map[string]uint64),
		unregistered: make(map[*session]struct{}),
	}
	n.markAlive()
	n.lastBeat.Store(n.alive.Load())
	return n
}

// key names one of the node's keys: ns:<kind>:<name>.
func (n *node) key(kind, name string) string { return n.ns + ":" + kind + ":" + name }

// run starts the node's loops, once, when its config runs.
func (n *node) run() {
	n.start.Do(func() {
		n.ran.Store(true)
		n.heartbeat()
		n.running.Add(2)
		go n.listen()
		go n.tick()
		n.store.logger().Info("joined cluster",
			zap.String("cluster", n.spec.String()),
			zap.String("instance", n.id),
			zap.String("namespace", n.ns))
	})
}

// stop ends the node's loops and closes its client.
func (n *node) stop() {
	n.cancel()
	n.running.Wait()
	_ = n.rdb.Close()
}

func (n *node) markAlive() { n.alive.Store(int64(time.Since(processStart))) }

// fresh reports whether this node may write to the streams it holds.
func (n *node) fresh() bool {
	return time.Since(processStart)-time.Duration(n.alive.Load()) < memberTTL-heartbeatEvery
}

// call runs f with a bounded context, counts and times it, and logs
// Redis becoming unreachable and reachable again, once each. While Redis
// is unreachable only the heartbeat tries it, so that what can go on
// without Redis does not wait for it: the heartbeat finds it back.
func (n *node) call(op string, f func(ctx context.Context) error) error {
	if n.down.Load() && op != "heartbeat" {
		return errRedisDown
	}
	ctx, cancel := context.WithTimeout(n.ctx, redisTimeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	metrics.redisDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		if n.down.CompareAndSwap(true, false) {
			n.store.logger().Info("redis reachable again", zap.String("cluster", n.spec.String()))
		}
		return nil
	case n.ctx.Err() != nil:
		return err // the node is stopping
	}
	metrics.redisErrors.WithLabelValues(op).Inc()
	if n.down.CompareAndSwap(false, true) {
		n.store.logger().Error("redis unreachable; sessions held here go on, what needs another instance fails until it is back",
			zap.String("cluster", n.spec.String()), zap.String("op", op), zap.Error(err))
	}
	return fmt.Errorf("redis %s: %w", op, err)
}

// heartbeat renews this instance's membership, or registers it. If its
// membership had lapsed, another instance may have taken its streams over:
// it stops every stream it holds, whose clients re-attach wherever the
// load balancer sends them.
func (n *node) heartbeat() {
	if n.left.Load() {
		return
	}
	// A heartbeat long after the last one means this process did not run
	// meanwhile (it was paused, say): until Redis says otherwise, another
	// instance may have taken its streams over.
	now := int64(time.Since(processStart))
	paused := time.Duration(now-n.lastBeat.Swap(now)) > memberTTL-heartbeatEvery
	alive := n.key("i", n.id)
	var renewed bool
	err := n.call("heartbeat", func(ctx context.Context) error {
		ok, err := n.rdb.SetXX(ctx, alive, 1, memberTTL).Result()
		if err != nil {
			return err
		}
		renewed = ok
		if ok {
			return nil
		}
		_, err = n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, alive, 1, memberTTL)
			p.SAdd(ctx, n.ns+":instances", n.id)
			return nil
		})
		return err
	})
	if err != nil {
		if !paused {
			n.markAlive() // Redis is down: nobody can take over meanwhile
		}
		return
	}
	if !renewed && n.registered.Swap(true) {
		n.confirmLeases()
	}
	n.markAlive()
	n.retryRegistrations()
}

// confirmLeases stops, after this instance's membership lapsed, the
// streams held here whose sessions Redis no longer has this instance hold:
// another instance reaped it, or took them over, or Redis lost them.
func (n *node) confirmLeases() {
	var held []*session
	for _, s := range n.store.all() {
		if s.hasStream() {
			held = append(held, s)
		}
	}
	leases := make([]*redis.StringCmd, len(held))
	err := n.call("confirm", func(ctx context.Context) error {
		_, err := n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, s := range held {
				leases[i] = p.Get(ctx, n.key("l", s.id))
			}
			return nil
		})
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		return err
	})
	lost := 0
	for i, s := range held {
		if err != nil || leases[i].Val() != n.id+" "+strconv.FormatUint(s.epoch.Load(), 10) {
			s.dropStream(errLeaseLost)
			lost++
		}
	}
	n.store.logger().Warn("cluster membership had lapsed; stopped the streams held here that another instance may have taken",
		zap.String("instance", n.id), zap.Int("streams_stopped", lost), zap.Int("streams_kept", len(held)-lost))
}

// tick runs the node's periodic work until it stops.
func (n *node) tick() {
	defer n.running.Done()
	beat := time.NewTicker(heartbeatEvery)
	sweep := time.NewTicker(sweepEvery)
	cursors := time.NewTicker(cursorsEvery)
	defer beat.Stop()
	defer sweep.Stop()
	defer cursors.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-beat.C:
			n.heartbeat()
		case <-sweep.C:
			n.sweep()
		case <-cursors.C:
			n.flushCursors()
		}
	}
}

// listen receives what the instance hears on its channels, until the node
// stops. Each time the subscription is made again (after Redis was
// unreachable), every stream held here reads its log for what it missed.
func (n *node) listen() {
	defer n.running.Done()
	ps := n.rdb.Subscribe(n.ctx, n.key("c", n.id), n.key("c", "all"))
	defer ps.Close()
	// Receive does not return when its context ends; closing the
	// subscription makes it.
	stop := context.AfterFunc(n.ctx, func() { _ = ps.Close() })
	defer stop()
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.Receive(n.ctx)
		if n.ctx.Err() != nil {
			return
		}
		if err != nil {
			_ = n.call("subscribe", func(context.Context) error { return err })
			if !sleepCtx(n.ctx, backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch msg := msg.(type) {
		case *redis.Subscription:
			for _, s := range n.store.all() {
				s.wakeUp()
			}
		case *redis.Message:
			n.hear(msg.Payload)
		}
	}
}

// hear handles one message on the instance's channels.
func (n *node) hear(payload string) {
	kind, rest, _ := strings.Cut(payload, " ")
	switch kind {
	case "m": // an event for a stream held here: "<session> <seq>\n<data>"
		head, data, _ := strings.Cut(rest, "\n")
		id, num, _ := strings.Cut(head, " ")
		seq, err := strconv.ParseUint(num, 10, 64)
		if s := n.store.get(id); s != nil && err == nil {
			s.offer(event{seq: seq, data: []byte(data)})
		}
	case "r": // another instance took a stream held here: "<session> <epoch>"
		id, num, _ := strings.Cut(rest, " ")
		epoch, err := strconv.ParseUint(num, 10, 64)
		if s := n.store.get(id); s != nil && err == nil {
			s.replacedElsewhere(epoch)
		}
	case "e": // a session ended: "<session>"
		if s := n.store.get(rest); s != nil {
			s.endedElsewhere()
		}
	case "a", "x": // a client's answer to an input request, or its cancellation of a call: "<session>\n<data>"
		id, data, _ := strings.Cut(rest, "\n")
		s := n.store.get(id)
		m, err := parseMessage([]byte(data))
		switch {
		case s == nil || err != nil:
		case kind == "a" && m.kind == kindResponse:
			s.stateless().handInput(m)
		case kind == "x" && m.kind == kindNotification:
			s.stateless().cancelCall(m)
		}
	case "i": // a session was initialized elsewhere: "<session>"
		if s := n.store.get(rest); s != nil {
			go s.initializedElsewhere()
		}
	}
}

// noteDelivered records the last event a stream held here wrote, to be
// written to Redis with the next batch.
func (n *node) noteDelivered(id string, seq uint64) {
	n.cursorsMu.Lock()
	n.cursors[id] = seq
	n.cursorsMu.Unlock()
}

// flushCursors writes the delivered events noted since the last batch, in
// one round trip.
func (n *node) flushCursors() {
	n.cursorsMu.Lock()
	batch := n.cursors
	if len(batch) == 0 {
		n.cursorsMu.Unlock()
		return
	}
	n.cursors = make(map[string]uint64, len(batch))
	n.cursorsMu.Unlock()
	_ = n.call("cursors", func(ctx context.Context) error {
		_, err := n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for id, seq := range batch {
				p.HSet(ctx, n.key("s", id), "dlv", seq)
			}
			return nil
		})
		return err
	})
}

// tellAll tells every instance of a client's message raw to the session
// id that concerns a call none here runs: its answer to an input request
// (kind a), its cancellation of a call (x). The instance whose call it
// concerns takes it.
func (n *node) tellAll(kind, id string, raw []byte) {
	_ = n.call("tell", func(ctx context.Context) error {
		return n.rdb.Publish(ctx, n.key("c", "all"), kind+" "+id+"\n"+string(raw)).Err()
	})
}
