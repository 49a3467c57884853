package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The cluster: several Caddys that share their sessions through Redis,
// behind a load balancer without affinity, driven by the official SDK
// clients and a raw client, while instances and Redis crash, restart and
// pause.

// clusterBearer is the fixed credential (an API key) the TypeScript
// client sends: the SDK reconnects its stream without Last-Event-ID, and
// the cluster re-attaches it to its session by this identity.
const clusterBearer = "Bearer cluster-api-key"

// TestClusterServesCallsFromEveryInstance runs the Go and the TypeScript
// SDK clients through the load balancer, with progress and sampling: each
// stream stays on one instance while its POSTs go round the others, and
// every answer, progress notification and sampling request still reaches
// it. The upstream sees one session per client.
func TestClusterServesCallsFromEveryInstance(t *testing.T) {
	up := newTestUpstream(t)
	c := startClusterWith(t, up.URL, 3, "", "log")

	tally := &instanceTally{}
	var mu sync.Mutex
	var progress []float64
	finalProgress := make(chan struct{}, 1)
	cs := connect(t, c.url("/sse"), &mcp.ClientOptions{
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			q := req.Params.Messages[0].Content.(*mcp.TextContent).Text
			return &mcp.CreateMessageResult{Model: "go-test", Role: "assistant", Content: &mcp.TextContent{Text: "go answers: " + q}}, nil
		},
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, req.Params.Progress)
			if req.Params.Progress == req.Params.Total {
				select {
				case finalProgress <- struct{}{}:
				default:
				}
			}
		},
	}, &http.Client{Transport: tally})
	ctx := bounded(t)
	if got, err := callText(ctx, cs, "add", map[string]any{"a": 20, "b": 22}); err != nil || got != "42" {
		t.Errorf("add = %q, %v; want 42", got, err)
	}
	params := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"steps": 3, "interval_ms": 50}}
	params.SetProgressToken("go-countdown")
	if res, err := cs.CallTool(ctx, params); err != nil || res.IsError {
		t.Errorf("countdown: %+v, %v", res, err)
	}
	// The SDK hands notifications to their handler on a goroutine of its
	// own: the last may come after the result that followed it.
	select {
	case <-finalProgress:
	case <-time.After(5 * time.Second):
	}
	mu.Lock()
	if !slices.Equal(progress, []float64{1, 2, 3}) {
		t.Errorf("countdown progress %v, want 1, 2, 3", progress)
	}
	mu.Unlock()
	if got, err := callText(ctx, cs, "ask_model", map[string]any{"question": "ping?"}); err != nil || got != "go answers: ping?" {
		t.Errorf("ask_model = %q, %v", got, err)
	}
	for i := range 20 {
		want := fmt.Sprintf("e%d", i)
		if got, err := callText(ctx, cs, "echo", map[string]any{"text": want}); err != nil || got != want {
			t.Errorf("echo = %q, %v; want %s", got, err, want)
		}
	}
	goPosts, goStreams, goSession := tally.tally()
	t.Logf("Go client: stream on instance %v, POSTs by instance %v", goStreams, goPosts)
	if len(goPosts) < 2 {
		t.Errorf("the Go client's POSTs all went to instances %v; the load balancer should spread them", goPosts)
	}

	checkTSClientRun(t, runNode(t, "client.mjs", c.url("/sse")), "ts answers: ping?")
	tsPosts := map[string]int{}
	for _, g := range c.instances {
		for session, n := range g.postsBySession() {
			if session != goSession {
				tsPosts[g.name] += n
			}
		}
	}
	t.Logf("TypeScript client: POSTs by instance %v", tsPosts)
	if len(tsPosts) < 2 {
		t.Errorf("the TypeScript client's POSTs all went to instances %v; the load balancer should spread them", tsPosts)
	}
	if ids := up.upstreamSessions(); len(ids) != 2 {
		t.Errorf("the upstream saw %d sessions, want one per client", len(ids))
	}
}

// TestClusterSurvivesKillingTheStreamHolder kills, with SIGKILL, the
// instance that holds the TypeScript client's stream while the client
// calls a tool over and over through the load balancer. The client's
// stream breaks; it reconnects, through the balancer, to another instance,
// which re-attaches it to its session by its credential, and goes on
// calling, and the upstream sees one session throughout and no DELETE.
// Only a call whose POST was on its way through the killed instance may
// fail, and only with an answer: the balancer's 502 for that POST, or the
// JSON-RPC error for a request the instance had taken; never a timeout.
func TestClusterSurvivesKillingTheStreamHolder(t *testing.T) {
	up := newTestUpstream(t)
	c := startCluster(t, up.URL, 3, "")
	// A call the killed instance had taken gets its answer once another
	// instance takes over: up to the membership's 10 s and a sweep's 1 s
	// after the killed instance last renewed its membership, which may be
	// just before the call. So the client waits longer for an answer than
	// that, as real clients do (the TypeScript SDK waits 60 s by default);
	// at 10 s, a call sent right after a renewal timed out under load.
	loop := startTSLoop(t, c.url("/sse"), 20*time.Second, clusterBearer)
	holder := c.instance(t, loop.nextStream(t))
	loop.callsGoOn(t, up, 20)
	holder.kill()
	moved := loop.nextStream(t)
	t.Logf("the stream moved from instance %s to %s", holder.name, moved)
	loop.callsGoOn(t, up, up.postCount()+50)
	checkCarriedOn(t, forgiveCutPOSTs(t, loop.finish(t), 1, "gateway instance relaying this request stopped"), up, "its instance was killed")
}

// forgiveCutPOSTs forgives run up to n failed calls that got an answer for
// a POST cut by an instance going away: the load balancer's 502 for a POST
// it had sent (Caddy's reverse_proxy retries a POST only if it could not
// send it), or an error whose message holds also. Any other failure, a
// timeout say, stays one.
func forgiveCutPOSTs(t *testing.T, run tsClusterRun, n int, also string) tsClusterRun {
	t.Helper()
	if run.Failed > n || len(run.Errors) != run.Failed {
		return run
	}
	for _, e := range run.Errors {
		if !strings.Contains(e, "HTTP 502") && (also == "" || !strings.Contains(e, also)) {
			return run
		}
	}
	for _, e := range run.Errors {
		t.Logf("a POST cut by an instance going away failed: %s", e)
	}
	run.Failed, run.Errors = 0, nil
	return run
}

// TestClusterRollingRestart shuts every instance down (SIGTERM) and starts
// it again on its address, one at a time, while the TypeScript client calls
// a tool over and over through the load balancer. Each instance exits
// within 5 s; its streams end, so that their clients move, and it deletes
// no upstream session, which lives on in the cluster. No call fails, and
// the upstream sees one session throughout. A POST that reaches an
// instance just as it closes its listener is reset, and the balancer,
// which had sent it, answers it 502 (it drains no instance first, as a
// deploy's balancer would): that, at most once per restart, is the
// balancer's, not the cluster's.
func TestClusterRollingRestart(t *testing.T) {
	up := newTestUpstream(t)
	c := startCluster(t, up.URL, 3, "")
	loop := startTSLoop(t, c.url("/sse"), 10*time.Second, clusterBearer)
	t.Logf("the stream opened on instance %s", loop.nextStream(t))
	loop.callsGoOn(t, up, 20)
	for _, g := range c.instances {
		g.stop()
		g.start()
		c.waitRouted(t, g)
		// Calls went on across this restart before the next one.
		loop.callsGoOn(t, up, up.postCount()+20)
	}
	checkCarriedOn(t, forgiveCutPOSTs(t, loop.finish(t), len(c.instances), ""), up, "every instance was restarted")
}

// checkCarriedOn checks a run of cluster.mjs whose stream was cut, because
// what: it lost its stream, no call failed, and the upstream saw one
// session throughout and no DELETE, for the session lived on.
func checkCarriedOn(t *testing.T, run tsClusterRun, up *testUpstream, what string) {
	t.Helper()
	if run.Failed != 0 || run.Calls == 0 {
		t.Errorf("%d of %d calls failed: %v", run.Failed, run.Calls, run.Errors)
	}
	if run.Losses < 1 {
		t.Errorf("the client never lost its stream, though %s", what)
	}
	if ids := up.upstreamSessions(); len(ids) != 1 {
		t.Errorf("the upstream saw %d sessions, want the one", len(ids))
	}
	if n := len(up.deleted); n != 0 {
		t.Errorf("the upstream got %d DELETEs, want none: the session lives on", n)
	}
}

// TestClusterRedisRestart kills Redis under a session whose stream is on
// one instance, then starts Redis again, empty. While Redis is down, the
// session goes on working for POSTs to its own instance, and a POST for it
// to another instance, which cannot reach the session, answers 503 with
// Retry-After. Once Redis is back without the session's state, the session
// ends: its POSTs answer 404 on every instance and its stream ends. A new
// session then works across the instances again.
func TestClusterRedisRestart(t *testing.T) {
	up := newTestUpstream(t)
	c := startCluster(t, up.URL, 2, "")
	a, b := c.instances[0], c.instances[1]
	post := &http.Client{Timeout: 15 * time.Second}

	stream := openClusterSession(t, post, a)
	callEcho(t, stream, post, a, 2, "on its instance")
	callEcho(t, stream, post, b, 3, "via the other instance")

	c.redis.kill()
	start := time.Now()
	for id := 4; id < 7; id++ {
		callEcho(t, stream, post, a, id, "on its instance without redis")
	}
	t.Logf("3 calls on its instance without redis took %v", time.Since(start))
	status, header := rawPost(t, post, b.base(), stream.endpoint, `{"jsonrpc":"2.0","id":7,"method":"ping"}`)
	if status != http.StatusServiceUnavailable {
		t.Errorf("without redis, a POST via the other instance answered %d, want 503", status)
	} else if s, err := strconv.Atoi(header.Get("Retry-After")); err != nil || s <= 0 {
		t.Errorf("the 503 has Retry-After %q, want a number of seconds", header.Get("Retry-After"))
	}
	callEcho(t, stream, post, a, 8, "on its instance, still without redis")

	c.redis.restart()
	restarted := time.Now()
	for _, g := range c.instances {
		awaitUnknown(t, post, g, stream.endpoint, restarted)
	}
	if err := stream.untilEnd(5 * time.Second); err != nil {
		t.Errorf("the lost session's stream: %v", err)
	}

	fresh := openClusterSession(t, post, b)
	callEcho(t, fresh, post, a, 2, "a new session via the other instance")
	if ids := up.upstreamSessions(); len(ids) != 2 {
		t.Errorf("the upstream saw %d sessions, want the lost one and the new one", len(ids))
	}
}

// TestClusterPausedInstanceDoesNotWrite pauses (SIGSTOP) the instance that
// holds a stream, with a tool call's progress still coming, for longer
// than its lease; the client re-attaches to the session on another
// instance with Last-Event-ID and calls a tool there; then the paused
// instance continues (SIGCONT). Woken, it must not write into the session
// the other instance took over: its old stream gets no message, and what
// the upstream sends for the session, the new call's answer, the rest of
// the old call, and the answer to a POST the woken instance takes, reaches
// the new stream, once each and in order.
func TestClusterPausedInstanceDoesNotWrite(t *testing.T) {
	up := newTestUpstream(t)
	c := startCluster(t, up.URL, 2, "")
	a, b := c.instances[0], c.instances[1]
	post := &http.Client{Timeout: 15 * time.Second}

	old := openClusterSession(t, post, a)
	// 10 steps 1.5 s apart: the call's progress goes on through the
	// pause, and none is on its way to the stream when it starts.
	if status, _ := rawPost(t, post, a.base(), old.endpoint, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"countdown","arguments":{"steps":10,"interval_ms":1500},"_meta":{"progressToken":"p"}}}`); status != http.StatusAccepted {
		t.Fatalf("countdown answered %d", status)
	}
	first, err := old.nextMessage()
	var progress struct {
		Method string
		Params struct{ Progress float64 }
	}
	if err != nil || json.Unmarshal(first.data, &progress) != nil || progress.Method != "notifications/progress" {
		t.Fatalf("waiting for the first progress notification: %v, got %s", err, first.data)
	}
	a.pause()
	paused := time.Now()
	// The pause is the scenario: the lease (about 10 s) runs out while
	// instance a can neither renew it nor know that it lapsed. Nothing
	// signals its end.
	time.Sleep(13 * time.Second)

	stream := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 15 * time.Second}}
	taken := openRaw(t, stream, b.base()+"/sse", http.Header{"Last-Event-Id": {first.id}})
	if taken.endpoint != old.endpoint {
		t.Fatalf("re-attached on instance b with endpoint %q, want %q", taken.endpoint, old.endpoint)
	}
	if status, _ := rawPost(t, post, b.base(), taken.endpoint, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"after the takeover"}}}`); status != http.StatusAccepted {
		t.Fatalf("echo via instance b answered %d", status)
	}
	a.resume()
	t.Logf("instance a was paused for %v", time.Since(paused))
	oldWatch := watch(old)
	defer oldWatch.stop()
	if status, _ := rawPost(t, post, a.base(), taken.endpoint, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"via the woken instance"}}}`); status != http.StatusAccepted {
		t.Errorf("echo via the woken instance a answered %d", status)
	}

	got := readUntilAnswered(t, taken, 30*time.Second, "2", "3", "4")
	checkTakenOver(t, got, first.id, progress.Params.Progress, map[string]string{
		"2": "liftoff", "3": "after the takeover", "4": "via the woken instance",
	})
	// Everything the woken instance had to handle has been handled: a
	// wrong write to its old stream would have been made by now.
	time.Sleep(time.Second)
	oldWatch.stop()
	for _, ev := range oldWatch.messages {
		t.Errorf("the paused instance wrote into the session it lost: event %q %s", ev.id, ev.data)
	}
	t.Logf("instance a's old stream ended by itself: %v (%v)", oldWatch.ended, oldWatch.err)
	if ids := up.upstreamSessions(); len(ids) != 1 {
		t.Errorf("the upstream saw %d sessions, want the one", len(ids))
	}
}

// openClusterSession opens a raw session with its stream on instance g,
// initialized there, with the notifications/initialized that makes the
// gateway open the upstream's GET stream too.
func openClusterSession(t *testing.T, post *http.Client, g *clusterInstance) *rawStream {
	t.Helper()
	s := openRaw(t, http.DefaultClient, g.base()+"/sse", nil)
	if err := s.initialize(post, g.base()); err != nil {
		t.Fatalf("initializing on instance %s: %v", g.name, err)
	}
	if status, _ := rawPost(t, post, g.base(), s.endpoint, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); status != http.StatusAccepted {
		t.Fatalf("notifications/initialized on instance %s answered %d", g.name, status)
	}
	return s
}

// awaitUnknown posts pings for a session that redis lost when it
// restarted to instance g until it answers 404, the session unknown, and
// fails the test if that takes more than 30 s from the restart.
func awaitUnknown(t *testing.T, post *http.Client, g *clusterInstance, endpoint string, restarted time.Time) {
	t.Helper()
	const d = 30 * time.Second
	seen := map[int]int{} // what g answered until then, by status
	for {
		status, _ := rawPost(t, post, g.base(), endpoint, `{"jsonrpc":"2.0","id":"poll","method":"ping"}`)
		if status == http.StatusNotFound {
			t.Logf("instance %s answers 404 for the lost session %v after redis restarted; before, (status: count) %v", g.name, time.Since(restarted), seen)
			return
		}
		seen[status]++
		if time.Since(restarted) > d {
			t.Fatalf("%v after redis restarted empty, instance %s still answers POSTs for the lost session with (status: count) %v, want 404", d, g.name, seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// callEcho posts an echo call to the session of s via instance g and
// waits for its answer on s.
func callEcho(t *testing.T, s *rawStream, post *http.Client, g *clusterInstance, id int, text string) {
	t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":%q}}}`, id, text)
	if status, _ := rawPost(t, post, g.base(), s.endpoint, body); status != http.StatusAccepted {
		t.Fatalf("echo %q via instance %s answered %d", text, g.name, status)
	}
	answer, _ := s.awaitAnswer(t, strconv.Itoa(id))
	var result struct {
		Content []struct{ Text string }
	}
	if answer.Error != nil || json.Unmarshal(answer.Result, &result) != nil || len(result.Content) != 1 || result.Content[0].Text != text {
		t.Fatalf("echo %q via instance %s: %+v %s", text, g.name, answer.Error, answer.Result)
	}
}

// streamMessage is a message event of a stream, decoded.
type streamMessage struct {
	id string // the event's id
	rpcAnswer
	Params struct {
		Progress float64 `json:"progress"`
	} `json:"params"`
}

// readUntilAnswered reads the message events of s until it has read a
// response to each of ids, and returns them all. It gives up after d by
// closing the stream.
func readUntilAnswered(t *testing.T, s *rawStream, d time.Duration, ids ...string) []streamMessage {
	t.Helper()
	timer := time.AfterFunc(d, func() { s.resp.Body.Close() })
	defer timer.Stop()
	var got []streamMessage
	waiting := slices.Clone(ids)
	for len(waiting) > 0 {
		ev, err := s.nextMessage()
		if err != nil {
			t.Fatalf("still waiting for the answers to %v after %d messages: %v", waiting, len(got), err)
		}
		m := streamMessage{id: ev.id}
		if err := json.Unmarshal(ev.data, &m); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		got = append(got, m)
		if m.Method == "" {
			waiting = slices.DeleteFunc(waiting, func(id string) bool { return id == string(m.ID) })
		}
	}
	return got
}

// checkTakenOver checks the messages of a stream that took a session over
// after the event with id lastID, progress notification progress of the
// countdown (id 2): the countdown's progress on from there in order, none
// twice, then its end, with its result or a JSON-RPC error; every other
// call answered with its text; each call answered once, and no event id
// twice.
func checkTakenOver(t *testing.T, got []streamMessage, lastID string, progress float64, texts map[string]string) {
	t.Helper()
	responses := map[string]int{}
	events := map[string]bool{lastID: true}
	for _, m := range got {
		if m.id != "" && events[m.id] {
			t.Errorf("event id %q came twice", m.id)
		}
		events[m.id] = true
		switch {
		case m.Method == "notifications/progress":
			if responses["2"] > 0 {
				t.Errorf("progress %v after the countdown ended", m.Params.Progress)
			}
			if m.Params.Progress <= progress {
				t.Errorf("progress %v after %v", m.Params.Progress, progress)
			}
			progress = m.Params.Progress
		case m.Method != "":
			t.Errorf("unexpected %s", m.Method)
		default:
			id := string(m.ID)
			responses[id]++
			var result struct {
				Content []struct{ Text string }
			}
			_ = json.Unmarshal(m.Result, &result)
			switch {
			case id == "2" && m.Error != nil:
				t.Logf("the countdown ended with a JSON-RPC error: %+v", m.Error)
			case m.Error != nil:
				t.Errorf("call %s failed: %+v", id, m.Error)
			case len(result.Content) != 1 || result.Content[0].Text != texts[id]:
				t.Errorf("call %s answered %s, want %q", id, m.Result, texts[id])
			}
		}
	}
	for id, n := range responses {
		if n != 1 {
			t.Errorf("call %s answered %d times", id, n)
		}
	}
	t.Logf("the new stream got %d messages, countdown progress up to %v", len(got), progress)
}

// rawPost posts body to endpoint (a path) on the site at base and returns
// the answer's status and headers; it fails the test only if no answer
// came.
func rawPost(t *testing.T, client *http.Client, base, endpoint, body string) (int, http.Header) {
	t.Helper()
	resp, err := client.Post(base+endpoint, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s%s: %v", base, endpoint, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

// streamWatch reads a raw stream in the background, for a test that must
// see whatever a gateway writes to it while the test does other things.
type streamWatch struct {
	s    *rawStream
	done chan struct{}

	// Set once done is closed.
	messages []rawEvent // every message event read
	ended    bool       // the gateway ended the stream
	err      error      // why reading stopped otherwise
}

// watch reads s in the background until the stream ends or stop is
// called.
func watch(s *rawStream) *streamWatch {
	w := &streamWatch{s: s, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			ev, err := s.next()
			if err == io.EOF {
				w.ended = true
				return
			}
			if err != nil {
				w.err = err
				return
			}
			if ev.comment == "" {
				w.messages = append(w.messages, ev)
			}
		}
	}()
	return w
}

// stop closes the stream, unless it ended already, and waits until the
// watch has read all it will.
func (w *streamWatch) stop() {
	w.s.resp.Body.Close()
	<-w.done
}
