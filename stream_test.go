package mcpsse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
)

// TestPingsOfAConnectionFallTogether: streams of one client connection
// ping at the same moment, within one interval from now; another
// connection's streams ping at their own moment.
func TestPingsOfAConnectionFallTogether(t *testing.T) {
	t.Parallel()
	const interval = 15 * time.Second
	streamOf := func(remote string) *stream {
		r := httptest.NewRequest(http.MethodGet, "/sse", nil)
		r.RemoteAddr = remote
		return newStream(httptest.NewRecorder(), r, &settings{})
	}
	a1, a2, b := streamOf("10.0.0.1:5000"), streamOf("10.0.0.1:5000"), streamOf("10.0.0.2:6000")
	next := func(st *stream) time.Time { return time.Now().Add(st.untilPing(interval)) }
	apart := func(x, y *stream) time.Duration { return next(x).Sub(next(y)).Abs() }
	if d := apart(a1, a2); d > time.Millisecond {
		t.Errorf("two streams of one connection ping %v apart", d)
	}
	if d := apart(a1, b); d < time.Millisecond {
		t.Errorf("streams of two connections ping %v apart", d)
	}
	for _, st := range []*stream{a1, b} {
		if d := st.untilPing(interval); d <= 0 || d > interval {
			t.Errorf("next ping in %v, want within (0, %v]", d, interval)
		}
	}
}

// TestPingPhasesSpreadOverTheInterval: connections' ping phases cover the
// whole interval, not only its start.
func TestPingPhasesSpreadOverTheInterval(t *testing.T) {
	t.Parallel()
	const interval = 15 * time.Second
	var late int
	for i := range 1000 {
		r := httptest.NewRequest(http.MethodGet, "/sse", nil)
		r.RemoteAddr = fmt.Sprintf("10.0.%d.%d:%d", i/250, i%250, 40000+i)
		if phase := time.Duration(newStream(httptest.NewRecorder(), r, &settings{}).conn % uint64(interval)); phase > interval/2 {
			late++
		}
	}
	// About half; a phase squeezed into the first seconds gives none.
	if late < 400 || late > 600 {
		t.Errorf("%d of 1000 connections ping in the second half of the interval, want about 500", late)
	}
}

// openTestSession opens a session of a store with settings cfg, whose
// upstream is nowhere, and returns the store, the session and the request
// that opened it; both end with the test.
func openTestSession(t *testing.T, cfg *settings) (*sessionStore, *session, *http.Request) {
	t.Helper()
	store := newSessionStore("", &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, "", cfg, nil)
	t.Cleanup(store.upstream.close)
	r := httptest.NewRequest(http.MethodGet, "/sse", nil)
	sess, err := store.open(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.ctx.end)
	return store, sess, r
}

// brokenWriter is a client connection that fails every write.
type brokenWriter struct{ httptest.ResponseRecorder }

func (*brokenWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

// TestFailedWriteIsWrittenAgain serves a session's event to a stream whose
// write fails, then attaches another stream as a re-attach without
// Last-Event-ID does: the event the first stream could not write comes on
// the second.
func TestFailedWriteIsWrittenAgain(t *testing.T) {
	t.Parallel()
	cfg := &settings{policy: policy{queueSize: 4, pingInterval: time.Hour}, logger: zap.NewNop()}
	_, sess, r := openTestSession(t, cfg)
	const message = `{"jsonrpc":"2.0","id":1,"result":{}}`
	if err := sess.deliver(t.Context(), []byte(message)); err != nil {
		t.Fatal(err)
	}

	a := sess.attach(r.Context())
	if why := sess.serve(newStream(&brokenWriter{}, r, cfg), a, 0); why != reasonClientGone {
		t.Fatalf("the broken stream stopped for %q", why)
	}
	sess.release(a, reasonClientGone, cfg)

	ctx, cancel := context.WithCancel(r.Context())
	second := &writeNotifier{ResponseRecorder: httptest.NewRecorder(), wrote: cancel}
	a = sess.attach(ctx)
	sess.serve(newStream(second, r, cfg), a, sess.deliveredSeq())
	if !strings.Contains(second.Body.String(), message) {
		t.Errorf("the second stream got %q, want the event the first could not write", second.Body.String())
	}
}

// writeNotifier records a stream and calls wrote after its first write.
type writeNotifier struct {
	*httptest.ResponseRecorder
	wrote func()
}

func (w *writeNotifier) Write(p []byte) (int, error) {
	defer w.wrote()
	return w.ResponseRecorder.Write(p)
}

// writeLog is a client connection that tells its writes on writes, as
// many as it holds.
type writeLog struct {
	httptest.ResponseRecorder
	writes chan string
}

func (w *writeLog) Write(p []byte) (int, error) {
	select {
	case w.writes <- string(p):
	default:
	}
	return len(p), nil
}

// TestStreamFollowsANewerConfig: a stream already serving takes the
// settings of a config that goes live after it attached, here a shorter
// ping interval, without waiting for a ping of the old one.
func TestStreamFollowsANewerConfig(t *testing.T) {
	t.Parallel()
	old := &settings{policy: policy{queueSize: 4, pingInterval: time.Hour}, logger: zap.NewNop()}
	store, sess, r := openTestSession(t, old)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	w := &writeLog{writes: make(chan string, 16)}
	a := sess.attach(ctx)
	served := make(chan string, 1)
	go func() { served <- sess.serve(newStream(w, r, old), a, 0) }()

	// An event written tells that the stream waits in its loop.
	const message = `{"jsonrpc":"2.0","method":"notifications/message"}`
	if err := sess.deliver(t.Context(), []byte(message)); err != nil {
		t.Fatal(err)
	}
	next := func(what string) string {
		select {
		case p := <-w.writes:
			return p
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s written within 10 s", what)
			return ""
		}
	}
	if p := next("event"); !strings.Contains(p, message) {
		t.Fatalf("the stream wrote %q, want the event", p)
	}
	store.goLive(&settings{policy: policy{queueSize: 4, pingInterval: 10 * time.Millisecond}, logger: zap.NewNop()})
	if p := next("ping after the new config went live"); p != string(pingComment) {
		t.Errorf("the stream wrote %q, want a ping", p)
	}
	cancel()
	if why := <-served; why != reasonClientGone {
		t.Errorf("the stream stopped for %q, want %q", why, reasonClientGone)
	}
}

// heldWriter is a client connection that tells each write on writes and
// holds it until release is closed.
type heldWriter struct {
	httptest.ResponseRecorder
	writes  chan string
	release chan struct{}
}

func (w *heldWriter) Write(p []byte) (int, error) {
	w.writes <- string(p)
	<-w.release
	return len(p), nil
}

// TestTakenOverStreamLeavesTheQueue: a stream told to stop by a stream
// taking over, while an event waits in the session's queue, stops without
// writing it, and the stream that takes over writes it.
func TestTakenOverStreamLeavesTheQueue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cfg := &settings{policy: policy{queueSize: 4, pingInterval: time.Hour}, logger: zap.NewNop()}
		_, sess, r := openTestSession(t, cfg)
		first := &heldWriter{writes: make(chan string, 4), release: make(chan struct{})}
		a := sess.attach(r.Context())
		served := make(chan string, 1)
		go func() {
			why := sess.serve(newStream(first, r, cfg), a, 0)
			sess.release(a, why, cfg)
			served <- why
		}()
		const one = `{"jsonrpc":"2.0","method":"notifications/message","params":{"n":1}}`
		const two = `{"jsonrpc":"2.0","method":"notifications/message","params":{"n":2}}`
		if err := sess.deliver(t.Context(), []byte(one)); err != nil {
			t.Fatal(err)
		}
		if p := <-first.writes; !strings.Contains(p, one) {
			t.Fatalf("the first stream wrote %q, want the first event", p)
		}
		// While the first stream writes, the second event waits in the
		// queue, and a second stream takes over: it tells the first to
		// stop and waits for it.
		if err := sess.deliver(t.Context(), []byte(two)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		attached := make(chan *attachment)
		go func() { attached <- sess.attach(ctx) }()
		synctest.Wait()
		if !a.told() {
			t.Fatal("the second stream waits to attach, and the first was not told to stop")
		}
		close(first.release)
		b := <-attached
		if why := <-served; why != reasonReplaced {
			t.Fatalf("the first stream stopped for %q, want %q", why, reasonReplaced)
		}
		if len(first.writes) != 0 {
			t.Fatalf("the first stream wrote %q after it was told to stop", <-first.writes)
		}

		second := &writeLog{writes: make(chan string, 4)}
		go func() { served <- sess.serve(newStream(second, r, cfg), b, sess.deliveredSeq()) }()
		synctest.Wait()
		select {
		case p := <-second.writes:
			if !strings.Contains(p, two) {
				t.Errorf("the second stream wrote %q, want the second event", p)
			}
		default:
			t.Error("the second stream wrote nothing: the queued event was left behind")
		}
		cancel()
		<-served
	})
}

// TestSessionEndStopsItsStream: ending a session stops the stream that
// serves it, and a stream that attaches to a session already ended stops at
// once.
func TestSessionEndStopsItsStream(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cfg := &settings{policy: policy{queueSize: 4, pingInterval: time.Hour}, logger: zap.NewNop()}
		_, sess, r := openTestSession(t, cfg)
		// serve serves a stream until it stops, for a minute at most;
		// with end, it ends the session once the stream waits.
		serve := func(what string, end bool) {
			a := sess.attach(r.Context())
			served := make(chan string, 1)
			go func() { served <- sess.serve(newStream(&writeLog{writes: make(chan string, 4)}, r, cfg), a, 0) }()
			if end {
				synctest.Wait()
				sess.stop(reasonAdmin)
			}
			select {
			case why := <-served:
				if why != reasonShutdown {
					t.Errorf("%s stopped for %q, want %q", what, why, reasonShutdown)
				}
				sess.release(a, why, cfg)
			case <-time.After(time.Minute):
				t.Fatalf("%s still serves a minute after the session ended", what)
			}
		}
		serve("the stream of a live session", true)
		serve("a stream attached to the ended session", false)
	})
}
