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

// brokenWriter is a client connection that fails every write.
type brokenWriter struct{ httptest.ResponseRecorder }

func (*brokenWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

// TestFailedWriteIsWrittenAgain serves a session's event to a stream whose
// write fails, then attaches another stream as a re-attach without
// Last-Event-ID does: the event the first stream could not write comes on
// the second.
func TestFailedWriteIsWrittenAgain(t *testing.T) {
	t.Parallel()
	cfg := &settings{policy: policy{queueSize: 4, pingInterval: time.Hour}, logger: zap.NewNop(), changed: make(chan struct{})}
	store := newSessionStore("", &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, "", cfg, nil)
	defer store.upstream.close()
	r := httptest.NewRequest(http.MethodGet, "/sse", nil)
	sess, err := store.open(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.ctx.end()
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
