package mcpsse

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestPingsOfAConnectionFallTogether: streams of one client connection
// ping at the same moment, within one interval from now; another
// connection's streams ping at their own moment.
func TestPingsOfAConnectionFallTogether(t *testing.T) {
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
