package mcpsse

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// errInstanceStopped answers a client request whose relay stopped with the
// instance that ran it, when no other instance could resume its answer.
const errInstanceStopped = "the gateway instance relaying this request stopped before the upstream's answer, which cannot be resumed"

// sweep takes over what dead instances left and ends the sessions whose
// time without a stream is up. Every instance sweeps; Redis hands each
// dead instance and each due session to one of them.
func (n *node) sweep() {
	for _, dead := range n.deadMembers() {
		n.reap(dead)
	}
	n.endDue()
}

// deadMembers returns the instances of the cluster, other than this one,
// whose membership lapsed.
func (n *node) deadMembers() []string {
	var dead []string
	_ = n.call("members", func(ctx context.Context) error {
		ids, err := n.rdb.SMembers(ctx, n.ns+":instances").Result()
		if err != nil || len(ids) < 2 {
			return err
		}
		alive, err := n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range ids {
				p.Exists(ctx, n.key("i", id))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, c := range alive {
			if ids[i] != n.id && c.(*redis.IntCmd).Val() == 0 {
				dead = append(dead, ids[i])
			}
		}
		return nil
	})
	return dead
}

// reap takes over from the dead instance: its streams' sessions wait
// resume_window for a stream, and the client requests it was relaying are
// finished here.
func (n *node) reap(dead string) {
	var left []string
	window := n.store.settings().resumeWindow
	err := n.call("reap", func(ctx context.Context) (err error) {
		left, err = reapScript.Run(ctx, n.rdb, []string{n.ns + ":instances"}, n.ns, dead, window.Milliseconds()).StringSlice()
		return err
	})
	if err != nil || left == nil {
		return // another instance reaped it, or will
	}
	n.store.logger().Warn("took over from an instance that stopped renewing its membership",
		zap.String("instance", dead), zap.Int("requests_in_flight", len(left)/2))
	for i := 0; i+1 < len(left); i += 2 {
		go n.finish(left[i], left[i+1])
	}
}

// finish completes a client request that a dead instance was relaying,
// named "<session> <request id>" in its pending hash: it resumes the
// upstream's answer after lastID if the upstream gave its events IDs, and
// else, or if that fails, answers the client with a JSON-RPC error.
func (n *node) finish(name, lastID string) {
	sid, rawID, _ := strings.Cut(name, " ")
	id := json.RawMessage(rawID)
	s := n.store.get(sid)
	if s == nil {
		if s, _ = n.store.fetch(sid); s == nil {
			return
		}
	}
	cfg := n.store.settings()
	s.mu.Lock()
	s.inFlight++
	ctx := s.upstream
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
		s.store.dropIfIdle(s)
	}()
	if lastID != "" {
		body, err := s.resumeStream(ctx, lastID, cfg.upstreamTimeout)
		if err == nil {
			err = s.relayAnswerEvents(ctx, body, answerTo{id: id}, cfg)
			body.Close()
		}
		if err == nil {
			return
		}
		n.store.logger().Warn("resuming the answer of a request another instance relayed", zap.String("session", s.tag), zap.Error(err))
	}
	_ = s.deliver(ctx, errorResponse(id, codeInternalError, errInstanceStopped))
}

// endDue ends the sessions whose time without a stream is up, at most
// maxDuePerSweep at a time, upstream sessions included.
func (n *node) endDue() {
	var due []string
	_ = n.call("due", func(ctx context.Context) (err error) {
		due, err = dueScript.Run(ctx, n.rdb, []string{n.ns + ":expiry"}, maxDuePerSweep).StringSlice()
		return err
	})
	for _, id := range due {
		s := n.store.get(id)
		if s == nil {
			if s, _ = n.store.fetch(id); s == nil {
				continue
			}
		}
		if s.hasStream() {
			continue // a stream re-attached here as it came due
		}
		s.stop(reasonClientGone)
		go s.endAlone(reasonClientGone)
	}
}

// handOver ends the streams held here, so that their clients re-attach
// elsewhere; the sessions live on in the cluster.
func (n *node) handOver() {
	for _, s := range n.store.all() {
		s.dropStream(errSessionEnding)
	}
}

// leave takes this instance out of the cluster when its handler goes (Caddy
// stopped, or a reload removed it): its streams end (see handOver), the
// relays of messages still on their way get until endAllDeleteBudget to
// finish, and then its membership ends, so that another instance finishes
// at once what is left. It reports whether this was the last live
// instance, which must end every session of the cluster itself.
func (n *node) leave() (last bool) {
	if !n.ran.Load() || n.left.Swap(true) {
		// A node whose config never ran (Caddy rejected it) changes
		// nothing in the cluster.
		return false
	}
	n.handOver()
	deadline := time.Now().Add(endAllDeleteBudget)
	for n.store.busy() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var live int64
	err := n.call("leave", func(ctx context.Context) (err error) {
		live, err = leaveScript.Run(ctx, n.rdb, []string{n.ns + ":instances", n.key("i", n.id)}, n.ns, n.id).Int64()
		return err
	})
	n.store.logger().Info("left cluster", zap.String("instance", n.id), zap.Int64("instances_left", live))
	return err == nil && live == 0
}

// everySession returns a copy of every session of the cluster, for the
// last instance to end them.
func (n *node) everySession() []*session {
	var ids []string
	_ = n.call("sessions", func(ctx context.Context) (err error) {
		ids, err = n.rdb.ZRange(ctx, n.ns+":sessions", 0, -1).Result()
		return err
	})
	all := make([]*session, 0, len(ids))
	for _, id := range ids {
		s := n.store.get(id)
		if s == nil {
			s, _ = n.store.fetch(id)
		}
		if s != nil {
			all = append(all, s)
		}
	}
	return all
}
