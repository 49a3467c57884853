package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// How sessions of a cluster end: once, by one instance, when their
// resume window runs out, when the last instance stops, or when the
// admin API of any instance ends them.

// endCluster is a Redis server and instances that share their sessions
// through it, without a load balancer: the tests talk to each instance
// directly.
type endCluster struct {
	redis     *redisServer
	instances []*clusterInstance
	admins    []string // each instance's admin address, "" if it has none
}

// startEndCluster starts a Redis server and n instances whose mcp_sse
// handler has upstream, the given resume_window and the cluster; with
// admin, each instance serves its admin endpoint on a free loopback
// address of its own.
func startEndCluster(t *testing.T, upstream string, n int, resumeWindow string, admin bool) *endCluster {
	t.Helper()
	c := &endCluster{redis: startRedis(t)}
	for i := range n {
		g := &clusterInstance{t: t, name: fmt.Sprint(i), addr: freeAddr(t)}
		adminAddr, adminOption := "", "admin off"
		if admin {
			adminAddr = freeAddr(t)
			adminOption = "admin " + adminAddr
		}
		g.caddyfile = fmt.Sprintf(`{
	%s
	persist_config off
}
http://%s {
	bind 127.0.0.1
	header %s %s
	mcp_sse {
		upstream %s
		resume_window %s
		cluster redis {
			url %s
		}
	}
	respond "up" 200
}
`, adminOption, g.addr, instanceHeader, g.name, upstream, resumeWindow, c.redis.url())
		g.start()
		c.instances = append(c.instances, g)
		c.admins = append(c.admins, adminAddr)
	}
	return c
}

// clusterID is the instance ID g logged when it joined the cluster. An
// instance may answer on its site a moment before it logs that.
func clusterID(t *testing.T, g *clusterInstance) string {
	t.Helper()
	var joined []logEntry
	waitFor(t, func() error {
		if joined = g.logged("joined cluster"); len(joined) == 0 {
			return fmt.Errorf("instance %s has not logged \"joined cluster\"", g.name)
		}
		return nil
	})
	if len(joined) != 1 {
		t.Fatalf("instance %s logged %d lines \"joined cluster\", want 1", g.name, len(joined))
	}
	id, _ := joined[0]["instance"].(string)
	if id == "" {
		t.Fatalf("instance %s joined the cluster without an instance ID: %v", g.name, joined[0])
	}
	return id
}

// sessionOf is the session ID of a stream's message endpoint.
func sessionOf(t *testing.T, s *rawStream) string {
	t.Helper()
	u, err := url.Parse(s.endpoint)
	if err != nil || u.Query().Get("sessionId") == "" {
		t.Fatalf("endpoint %q names no session: %v", s.endpoint, err)
	}
	return u.Query().Get("sessionId")
}

// logTag is how the gateway names a session in its logs.
func logTag(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:4])
}

// endedBy returns the "session ended" lines the instances logged for the
// session id, by instance.
func endedBy(t *testing.T, id string, instances ...*clusterInstance) map[string][]logEntry {
	t.Helper()
	out := map[string][]logEntry{}
	for _, g := range instances {
		for _, e := range g.logged("session ended") {
			if e["session"] == logTag(id) {
				out[g.name] = append(out[g.name], e)
			}
		}
	}
	return out
}

// awaitEnded waits until one of the instances logged that it ended the
// session id, which it does once it deleted the upstream session and
// removed the session from Redis, and returns that line. It fails if more
// than one line was logged.
func awaitEnded(t *testing.T, id string, instances ...*clusterInstance) (string, logEntry) {
	t.Helper()
	var by map[string][]logEntry
	waitFor(t, func() error {
		if by = endedBy(t, id, instances...); len(by) == 0 {
			return fmt.Errorf("no instance logged that it ended session %s", id)
		}
		return nil
	})
	for name, lines := range by {
		if len(by) != 1 || len(lines) != 1 {
			t.Errorf("session %s ended more than once: %v", id, by)
		}
		return name, lines[0]
	}
	return "", nil
}

// theUpstreamSession is the one upstream session the gateway's POSTs
// carried.
func theUpstreamSession(t *testing.T, up *testUpstream) string {
	t.Helper()
	ids := up.upstreamSessions()
	if len(ids) != 1 {
		t.Fatalf("the upstream saw %d sessions %v, want 1", len(ids), ids)
	}
	for id := range ids {
		return id
	}
	return ""
}

// awaitOneDelete waits, for d at most, for the upstream's DELETE of the
// upstream session want, and fails unless that is the first DELETE.
func awaitOneDelete(t *testing.T, up *testUpstream, want string, d time.Duration) {
	t.Helper()
	select {
	case got := <-up.deleted:
		if got != want {
			t.Errorf("the upstream got a DELETE for session %q, want %q", got, want)
		}
	case <-time.After(d):
		t.Fatalf("the upstream got no DELETE for session %s within %v", want, d)
	}
}

// noMoreDeletes fails if the upstream gets a DELETE within d. Nothing
// signals that none will come: d spans two sweeps of every instance, in
// which a second instance that claimed the session too would end it.
func noMoreDeletes(t *testing.T, up *testUpstream, d time.Duration) {
	t.Helper()
	select {
	case got := <-up.deleted:
		t.Errorf("the upstream got another DELETE, for session %q: the session was ended twice", got)
	case <-time.After(d):
	}
}

// noDeleteYet fails if the upstream got a DELETE so far.
func noDeleteYet(t *testing.T, up *testUpstream, when string) {
	t.Helper()
	if n := len(up.deleted); n != 0 {
		t.Errorf("%s, the upstream got %d DELETEs, want none: the session lives on", when, n)
	}
}

// pingAnswers posts a ping for the session of endpoint to each instance
// and fails unless each answers want.
func pingAnswers(t *testing.T, post *http.Client, endpoint string, want int, instances ...*clusterInstance) {
	t.Helper()
	for _, g := range instances {
		if status, _ := rawPost(t, post, g.base(), endpoint, `{"jsonrpc":"2.0","id":"after","method":"ping"}`); status != want {
			t.Errorf("a POST to the session via instance %s answered %d, want %d", g.name, status, want)
		}
	}
}

// TestClusterEndsAnExpiredSessionOnce opens a session on instance a of
// two, with resume_window 2s, calls a tool through instance b, and closes
// the client's stream. Within the window and a sweep, exactly one instance
// ends the session: the upstream gets one DELETE, for the session's
// upstream session, and no second one; one instance logs it ended with
// reason client_gone; and a POST for the old session answers 404 on
// either instance.
func TestClusterEndsAnExpiredSessionOnce(t *testing.T) {
	up := newTestUpstream(t)
	c := startEndCluster(t, up.URL, 2, "2s", false)
	a, b := c.instances[0], c.instances[1]
	post := &http.Client{Timeout: 15 * time.Second}

	stream := openClusterSession(t, post, a)
	id := sessionOf(t, stream)
	callEcho(t, stream, post, b, 2, "via the other instance")
	upstreamID := theUpstreamSession(t, up)

	stream.resp.Body.Close()
	closed := time.Now()
	// 2 s of window, a sweep each second, and slack for a loaded machine.
	awaitOneDelete(t, up, upstreamID, 15*time.Second)
	t.Logf("the upstream session was deleted %v after the client closed its stream", time.Since(closed))
	name, line := awaitEnded(t, id, a, b)
	if line["reason"] != "client_gone" {
		t.Errorf("instance %s ended the session with reason %v, want client_gone", name, line["reason"])
	}
	pingAnswers(t, post, stream.endpoint, http.StatusNotFound, a, b)
	noMoreDeletes(t, up, 2500*time.Millisecond)
	if by := endedBy(t, id, a, b); len(by) != 1 || len(by[name]) != 1 {
		t.Errorf("the instances logged the session's end %v, want once", by)
	}
	pingAnswers(t, post, stream.endpoint, http.StatusNotFound, a, b)
}

// TestClusterEndsSessionsWhenTheLastInstanceStops opens a session on
// instance a of two and calls a tool through each. Instance b shuts down
// (SIGTERM): the upstream session is not deleted, and the session still
// works through a. Then a shuts down, the last instance of the cluster: the
// session's stream ends, and the upstream gets exactly one DELETE, for the
// session's upstream session.
func TestClusterEndsSessionsWhenTheLastInstanceStops(t *testing.T) {
	up := newTestUpstream(t)
	c := startEndCluster(t, up.URL, 2, "1m", false)
	a, b := c.instances[0], c.instances[1]
	post := &http.Client{Timeout: 15 * time.Second}

	stream := openClusterSession(t, post, a)
	id := sessionOf(t, stream)
	callEcho(t, stream, post, b, 2, "via the instance that stops first")
	callEcho(t, stream, post, a, 3, "via its own instance")
	upstreamID := theUpstreamSession(t, up)

	b.stop()
	noDeleteYet(t, up, "after the first instance stopped")
	if left := b.logged("left cluster"); len(left) != 1 || left[0]["instances_left"] != 1.0 {
		t.Errorf("instance b logged %v when it left, want one \"left cluster\" with instances_left 1", left)
	}
	callEcho(t, stream, post, a, 4, "after the other instance stopped")
	noDeleteYet(t, up, "after a call once the first instance stopped")

	streamWatch := watch(stream)
	a.stop()
	select {
	case <-streamWatch.done:
	case <-time.After(5 * time.Second):
		t.Error("the session's stream did not end within 5 s of its instance's exit")
	}
	streamWatch.stop()
	if !streamWatch.ended {
		t.Errorf("the session's stream broke off rather than ending: %v", streamWatch.err)
	}
	// Both instances exited: no DELETE can come after those received.
	if n := len(up.deleted); n != 1 {
		t.Fatalf("the upstream got %d DELETEs once the last instance stopped, want 1", n)
	}
	awaitOneDelete(t, up, upstreamID, time.Second)
	if left := a.logged("left cluster"); len(left) != 1 || left[0]["instances_left"] != 0.0 {
		t.Errorf("instance a logged %v when it left, want one \"left cluster\" with instances_left 0", left)
	}
	if by := endedBy(t, id, a, b); len(by["0"]) != 1 || len(by["1"]) != 0 {
		t.Errorf("the instances logged the session's end %v, want once, by instance a", by)
	} else if reason := by["0"][0]["reason"]; reason != "shutdown" {
		t.Errorf("instance a ended the session with reason %v, want shutdown", reason)
	}
}

// clusterSessionInfo is a session as a cluster instance's admin API lists
// it.
type clusterSessionInfo struct {
	ID              string `json:"id"`
	StreamAttached  bool   `json:"stream_attached"`
	UpstreamSession bool   `json:"upstream_session"`
	Instance        string `json:"instance"`
}

// adminList lists the sessions through the admin endpoint at addr.
func adminList(t *testing.T, addr string) []clusterSessionInfo {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + adminSessionsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var infos []clusterSessionInfo
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", adminSessionsPath, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&infos); err != nil {
		t.Fatalf("GET %s: %v", adminSessionsPath, err)
	}
	return infos
}

// TestClusterAdminListsEverySession opens a session on instance a of two
// and lists the sessions through instance b's admin API: the session is
// there, its stream attached on instance a (by the ID a logged when it
// joined), with its upstream session. DELETE of the session through b's
// admin API answers 204 and ends it: a's stream ends, the upstream gets one
// DELETE, for the session's upstream session, and no second one; neither
// instance lists it any more, and a POST for it answers 404 on both.
func TestClusterAdminListsEverySession(t *testing.T) {
	up := newTestUpstream(t)
	c := startEndCluster(t, up.URL, 2, "1m", true)
	a, b := c.instances[0], c.instances[1]
	adminB := c.admins[1]
	post := &http.Client{Timeout: 15 * time.Second}
	idA, idB := clusterID(t, a), clusterID(t, b)
	if idA == idB {
		t.Fatalf("both instances joined the cluster as %q", idA)
	}

	stream := openClusterSession(t, post, a)
	id := sessionOf(t, stream)
	callEcho(t, stream, post, a, 2, "before the listing")
	upstreamID := theUpstreamSession(t, up)

	var listed *clusterSessionInfo
	infos := adminList(t, adminB)
	for i := range infos {
		if infos[i].ID == id {
			listed = &infos[i]
		}
	}
	switch {
	case listed == nil:
		t.Fatalf("instance b's admin API lists %+v, without session %s", infos, id)
	case len(infos) != 1:
		t.Errorf("instance b's admin API lists %d sessions, want the one: %+v", len(infos), infos)
	}
	if !listed.StreamAttached || listed.Instance != idA || !listed.UpstreamSession {
		t.Errorf("instance b lists the session as %+v, want stream_attached on instance a (%s) with an upstream session", *listed, idA)
	}

	req, err := http.NewRequest(http.MethodDelete, "http://"+adminB+adminSessionsPath+"/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("DELETE %s/%s via instance b: %v", adminSessionsPath, id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE %s/%s via instance b answered %s, want 204", adminSessionsPath, id, resp.Status)
	}
	// The admin API answers once the session ended; the instance that
	// holds its stream hears of it through Redis.
	awaitOneDelete(t, up, upstreamID, 10*time.Second)
	if err := stream.untilEnd(5 * time.Second); err != nil {
		t.Errorf("instance a's stream of the ended session: %v", err)
	}
	name, line := awaitEnded(t, id, a, b)
	if name != b.name || line["reason"] != "admin" {
		t.Errorf("instance %s ended the session with reason %v, want instance b, admin", name, line["reason"])
	}
	for i, g := range c.instances {
		if infos := adminList(t, c.admins[i]); len(infos) != 0 {
			t.Errorf("instance %s's admin API still lists %+v", g.name, infos)
		}
	}
	pingAnswers(t, post, stream.endpoint, http.StatusNotFound, a, b)
	noMoreDeletes(t, up, 2500*time.Millisecond)
}
