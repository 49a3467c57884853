package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestClusterResumesAnAnswerItsInstanceLeft kills (SIGKILL) the instance
// that relays a tool call, in the middle of the upstream's answer, while the
// client's stream is held by another instance. The upstream gives its
// answers event IDs (the Go SDK with an event store), so once the dead
// instance's membership runs out, another instance resumes the answer with
// GET and Last-Event-ID: the call completes with its result, its progress
// goes on in order and none twice, and the upstream sees one session.
func TestClusterResumesAnAnswerItsInstanceLeft(t *testing.T) {
	up := newResumableTestUpstream(t)
	c := startCluster(t, up.URL, 2, "")
	a, b := c.instances[0], c.instances[1]
	post := &http.Client{Timeout: 15 * time.Second}

	s := openClusterSession(t, post, b)
	if status, _ := rawPost(t, post, a.base(), s.endpoint, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"countdown","arguments":{"steps":12,"interval_ms":1000},"_meta":{"progressToken":"p"}}}`); status != http.StatusAccepted {
		t.Fatalf("countdown via instance a answered %d", status)
	}
	first, err := s.nextMessage()
	var progress struct {
		Method string
		Params struct{ Progress float64 }
	}
	if err != nil || json.Unmarshal(first.data, &progress) != nil || progress.Method != "notifications/progress" {
		t.Fatalf("waiting for the first progress notification: %v, got %s", err, first.data)
	}
	a.kill()

	got := readUntilAnswered(t, s, 40*time.Second, "2")
	checkTakenOver(t, got, first.id, progress.Params.Progress, map[string]string{"2": "liftoff"})
	if end := got[len(got)-1]; end.Error != nil {
		t.Errorf("the countdown ended with %+v; the upstream gave its answer event IDs, so it should have been resumed", end.Error)
	}
	if resumed := b.logged("took over from an instance that stopped renewing its membership"); len(resumed) != 1 {
		t.Errorf("instance b took over from a dead instance %d times, want once", len(resumed))
	}
	if ids := up.upstreamSessions(); len(ids) != 1 {
		t.Errorf("the upstream saw %d sessions, want the one", len(ids))
	}
}
