package mcpsse

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// stream writes events to a client's open event stream.
type stream struct {
	w  http.ResponseWriter
	rc http.ResponseController
	// cfg are the settings the stream follows: those of the handler
	// that serves it, then of each newer config that runs.
	cfg *settings
	// conn names the client's connection, which sets the phase of the
	// stream's pings (see untilPing).
	conn uint64
}

// pingEpoch is the start of every stream's ping grid.
var pingEpoch = time.Now()

func newStream(w http.ResponseWriter, r *http.Request, cfg *settings) *stream {
	h := fnv.New64a()
	_, _ = io.WriteString(h, r.RemoteAddr)
	return &stream{w: w, rc: *http.NewResponseController(w), cfg: cfg, conn: h.Sum64()}
}

// untilPing returns the time to the stream's next ping. Pings fall on a
// grid of the interval whose phase depends on the client's connection
// only: the streams that one HTTP/2 connection carries ping at the same
// moment, so their pings share a write to the socket, while different
// connections spread their pings over the interval.
func (st *stream) untilPing(interval time.Duration) time.Duration {
	phase := time.Duration(st.conn % uint64(interval))
	return interval - (time.Since(pingEpoch)+interval-phase)%interval
}

// write writes an event and flushes it to the client at once, giving the
// client send_timeout to take it. Any error means the client is gone or too
// slow.
func (st *stream) write(p []byte) error {
	timeout := st.cfg.sendTimeout
	// The deadline bounds this write only: on HTTP/2 a deadline left armed
	// would reset the stream while it idles between events.
	armed := timeout > 0 && st.rc.SetWriteDeadline(time.Now().Add(timeout)) == nil
	_, err := st.w.Write(p)
	if err == nil {
		err = st.rc.Flush()
	}
	if armed {
		_ = st.rc.SetWriteDeadline(time.Time{})
	}
	return err
}

// writeUnbounded writes and flushes p under the server's own write idle
// timeout only (Caddy's write_idle_timeout, 1m by default). Pings take this
// path: on HTTP/2 each deadline change is a round trip to the connection's
// goroutine, and a ping, a few bytes, blocks only once a client that
// stopped reading let events fill its window; the write idle timeout then
// ends the stream.
func (st *stream) writeUnbounded(p []byte) error {
	if _, err := st.w.Write(p); err != nil {
		return err
	}
	return st.rc.Flush()
}

// goneReason tells a client that left from one that stopped taking events.
func goneReason(err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return reasonSlowClient
	}
	return reasonClientGone
}

// eventBuffers holds the buffers message events are framed in, between
// writes: an idle stream holds none.
var eventBuffers = sync.Pool{New: func() any { return new([]byte) }}

// writeMessage writes one message event.
func (st *stream) writeMessage(sessionID string, seq uint64, data []byte) error {
	buf := eventBuffers.Get().(*[]byte)
	*buf = appendMessageEvent((*buf)[:0], sessionID, seq, data)
	err := st.write(*buf)
	if cap(*buf) <= 64<<10 {
		eventBuffers.Put(buf) // a large message's buffer is not kept
	}
	return err
}

// serve writes the session's events to st, and a ping every ping
// interval, until the client leaves, the stream's lifetime is up, another
// stream takes over, or the session ends. It first writes again the kept
// events after seq. It returns why it stopped. The settings of a newer
// config apply as soon as it runs.
func (s *session) serve(st *stream, a *attachment, seq uint64) string {
	timers := newStreamTimers(st) // a value of this frame, not a heap object
	defer timers.stop()
	if err := s.replay(st, seq); err != nil {
		return stopReason(err)
	}
	s.followSettings(st, &timers)
	for {
		select {
		case <-s.events.ready:
			if a.told() {
				// The token may be an event's: the next stream takes it.
				signal(s.events.ready)
				return detachReason(a)
			}
			s.followSettings(st, &timers) // the signal may be goLive's
			ev, ok := s.events.pop()
			if !ok {
				continue
			}
			// Numbered and kept first, then written from this frame: the
			// goroutine's deepest calls are its writes (see ServeHTTP).
			seq, err := s.admit(st, ev)
			if err == nil && seq != 0 {
				if err = st.writeMessage(s.id, seq, ev.data); err == nil {
					s.markDelivered(seq)
				}
			}
			if err != nil {
				return stopReason(err)
			}
		case <-s.wake:
			if err := s.catchUp(st); err != nil && !errors.Is(err, errRedisRead) {
				return stopReason(err)
			}
		case <-timers.ping.C:
			if err := st.writeUnbounded(pingComment); err != nil {
				return goneReason(err)
			}
			timers.nextPing(st)
		case <-timers.lifetime.c:
			return reasonLifetime
		case <-a.client:
			return reasonClientGone
		}
	}
}

// followSettings makes st follow the store's current settings, those of
// the newest running config, if it does not yet.
func (s *session) followSettings(st *stream, timers *streamTimers) {
	if cfg := s.store.settings(); cfg != st.cfg {
		st.cfg = cfg
		timers.follow(st)
	}
}

// streamTimers are a stream's ping timer and lifetime timer.
type streamTimers struct {
	started  time.Time
	ping     *time.Timer
	lifetime lifetimeTimer
}

func newStreamTimers(st *stream) streamTimers {
	now := time.Now()
	return streamTimers{
		started:  now,
		ping:     time.NewTimer(st.untilPing(st.cfg.pingInterval)),
		lifetime: newLifetimeTimer(now, st.cfg.maxLifetime),
	}
}

// nextPing sets the ping timer for the stream's next ping.
func (t *streamTimers) nextPing(st *stream) { t.ping.Reset(st.untilPing(st.cfg.pingInterval)) }

// follow applies the stream's new settings to its timers.
func (t *streamTimers) follow(st *stream) {
	t.nextPing(st)
	t.lifetime.stop()
	t.lifetime = newLifetimeTimer(t.started, st.cfg.maxLifetime)
}

func (t *streamTimers) stop() {
	t.ping.Stop()
	t.lifetime.stop()
}

// detachReason names why an attached stream was told to stop.
func detachReason(a *attachment) string {
	switch *a.cause.Load() {
	case errReplaced:
		return reasonReplaced
	case errSessionEnding:
		return reasonShutdown
	case errLeaseLost:
		return reasonLeaseLost
	}
	return reasonClientGone
}

// stopReason names why a stream stopped for an error writing to it.
func stopReason(err error) string {
	switch {
	case errors.Is(err, errLeaseLost):
		return reasonLeaseLost
	case errors.Is(err, errEventsLost):
		return reasonEventsLost
	}
	return goneReason(err)
}

// replay writes the events after seq again, for a stream that re-attached:
// in a cluster, from the session's log in Redis; else, or while Redis
// cannot be reached, those this instance kept.
func (s *session) replay(st *stream, seq uint64) error {
	if s.store.node != nil {
		sent, delivered := s.sent.Load(), s.delivered.Load()
		s.sent.Store(seq)
		s.delivered.Store(seq)
		err := s.catchUp(st)
		if !errors.Is(err, errRedisRead) {
			return err
		}
		s.sent.Store(sent)
		s.delivered.Store(delivered)
	}
	for _, ev := range s.sentAfter(seq) {
		if err := st.writeMessage(s.id, ev.seq, ev.data); err != nil {
			return err
		}
		s.markDelivered(ev.seq)
	}
	return nil
}

// logBatch is how many events a stream reads from a session's log at once.
const logBatch = 256

// admit numbers an event from the session's queue and keeps it for a
// replay, and returns its number, for the stream to write it; 0 if there
// is nothing to write. It numbers an event this instance numbers itself;
// in a cluster, an event numbered in Redis may have been written already,
// or come after events the stream missed, which it writes first from the
// log.
func (s *session) admit(st *stream, ev event) (uint64, error) {
	switch last := s.sent.Load(); {
	case ev.seq == 0:
		ev.seq = s.sent.Add(1)
	case ev.seq <= last:
		return 0, nil // read from the log already
	case ev.seq > last+1:
		// The log holds the ones missed, and this one; if Redis cannot
		// be read now, the next event or wake-up tries again.
		if err := s.catchUp(st); !errors.Is(err, errRedisRead) {
			return 0, err
		}
		return 0, nil
	default:
		s.sent.Store(ev.seq)
	}
	return ev.seq, s.keep(st, ev)
}

// keep keeps a numbered event for a replay before it is written; in a
// cluster it fails unless this instance knows it still holds the stream.
func (s *session) keep(st *stream, ev event) error {
	s.recordSent(ev.seq, ev.data, st.cfg.queueSize)
	if n := s.store.node; n != nil && !n.fresh() {
		return errLeaseLost
	}
	return nil
}

// catchUp writes the events of the session's log after the last one the
// stream wrote. It fails with errRedisRead if Redis cannot be read.
func (s *session) catchUp(st *stream) error {
	for {
		evs, err := s.readLog(s.sent.Load(), logBatch)
		if err != nil && !errors.Is(err, errEventsLost) {
			return fmt.Errorf("%w: %w", errRedisRead, err)
		}
		if err != nil {
			return err
		}
		for _, ev := range evs {
			s.sent.Store(ev.seq)
			if err := s.writeOne(st, ev); err != nil {
				return err
			}
		}
		if len(evs) < logBatch {
			return nil
		}
	}
}

// writeOne writes the numbered event ev, keeping it for a replay first.
func (s *session) writeOne(st *stream, ev event) error {
	if err := s.keep(st, ev); err != nil {
		return err
	}
	if err := st.writeMessage(s.id, ev.seq, ev.data); err != nil {
		return err
	}
	s.markDelivered(ev.seq)
	return nil
}

// lifetimeTimer fires when a stream has lived its max_lifetime. Without a
// limit its channel is nil, which a select skips at no cost.
type lifetimeTimer struct {
	t *time.Timer
	c <-chan time.Time
}

// newLifetimeTimer starts the lifetime of a stream started at created.
func newLifetimeTimer(created time.Time, maxLifetime time.Duration) lifetimeTimer {
	if maxLifetime <= 0 {
		return lifetimeTimer{}
	}
	t := time.NewTimer(time.Until(created.Add(maxLifetime)))
	return lifetimeTimer{t: t, c: t.C}
}

func (l lifetimeTimer) stop() {
	if l.t != nil {
		l.t.Stop()
	}
}
