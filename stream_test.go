package mcpsse

import (
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
		return newStream(httptest.NewRecorder(), r)
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
