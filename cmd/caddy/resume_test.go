package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tsRun is what testdata/tsclient/resume.mjs reports.
type tsRun struct {
	Calls, Failed, Losses int
	Errors                []string
}

// resumeScript is the command that calls a tool over and over for the
// given time, through stream losses, with the TypeScript SDK.
func resumeScript(t *testing.T, seconds int, callTimeout time.Duration, authorization string) *exec.Cmd {
	t.Helper()
	args := []string{gatewayURL + "/sse", fmt.Sprint(seconds), fmt.Sprint(callTimeout.Milliseconds())}
	if authorization != "" {
		args = append(args, authorization)
	}
	return nodeCommand(t, "resume.mjs", args...)
}

// parseRun reads what resume.mjs printed.
func parseRun(t *testing.T, out []byte, err error) tsRun {
	t.Helper()
	var run tsRun
	if err != nil || json.Unmarshal(out, &run) != nil {
		t.Fatalf("resume.mjs: %v, printed %q", err, out)
	}
	t.Logf("TypeScript client: %+v", run)
	return run
}

func runResumeScript(t *testing.T, seconds int, callTimeout time.Duration, authorization string) tsRun {
	t.Helper()
	out, err := resumeScript(t, seconds, callTimeout, authorization).Output()
	return parseRun(t, out, err)
}

// upstreamSessions returns the upstream session IDs the gateway's POSTs
// carried.
func (u *testUpstream) upstreamSessions() map[string]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	ids := map[string]bool{}
	for _, h := range u.postHeaders {
		if id := h.Get(headerSessionID); id != "" {
			ids[id] = true
		}
	}
	return ids
}

// authSite is a gateway site behind basic_auth for alice.
func authSite(t *testing.T, upstream, subdirectives string) string {
	return fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	basic_auth {
		alice %s
	}
	mcp_sse {
		upstream %s
		%s
	}
}`, bcryptHash(t, "pw"), upstream, subdirectives)
}

// TestTypeScriptClientKeepsItsSession calls a tool for 15 s with the
// TypeScript SDK while max_lifetime cuts its stream every 2 s: once behind
// basic_auth, once with a fixed bearer token (an API key) the gateway does
// not check itself. The SDK reconnects without Last-Event-ID and never
// initializes again; the gateway re-attaches it to its session by its user
// or its credential, answers the calls posted while it had no stream on
// the new stream, and the upstream sees one session throughout.
func TestTypeScriptClientKeepsItsSession(t *testing.T) {
	for _, tc := range []struct {
		name, site, authorization string
	}{
		{"basic_auth user", authSite(t, "%s", "max_lifetime 2s"), basicAuth("alice", "pw")},
		{"bearer token", gatewaySite("%s", "max_lifetime 2s"), "Bearer fixed-api-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newTestUpstream(t)
			loadCaddyfile(t, strings.Replace(tc.site, "%s", up.URL, 1))
			run := runResumeScript(t, 15, 10*time.Second, tc.authorization)
			if run.Failed != 0 || run.Calls == 0 {
				t.Errorf("%d of %d calls failed: %v", run.Failed, run.Calls, run.Errors)
			}
			if run.Losses < 2 {
				t.Errorf("the client lost its stream %d times, want several", run.Losses)
			}
			if ids := up.upstreamSessions(); len(ids) != 1 {
				t.Errorf("the upstream saw %d sessions, want the one", len(ids))
			}
		})
	}
}

// TestRestartedTypeScriptClientStartsOver runs the TypeScript SDK client
// twice with one fixed bearer token, the second time while the first run's
// session waits in its resume window. The gateway re-attaches the second
// client to that session by its credential; the client initializes, as a
// new client does, and the gateway starts the session over on a new
// upstream session, deleting the old one, instead of passing a second
// initialize into an initialized upstream session.
func TestRestartedTypeScriptClientStartsOver(t *testing.T) {
	const token = "Bearer fixed-api-key"
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	for run := range 2 {
		got := runResumeScript(t, 1, 10*time.Second, token)
		if got.Failed != 0 || got.Calls == 0 {
			t.Fatalf("run %d: %d of %d calls failed: %v", run, got.Failed, got.Calls, got.Errors)
		}
		waitFor(t, func() error {
			for _, s := range adminSessions(t) {
				if s.StreamAttached {
					return fmt.Errorf("run %d's stream is still attached", run)
				}
			}
			return nil
		})
		if n := len(adminSessions(t)); n != 1 {
			t.Fatalf("after run %d the gateway holds %d sessions, want the one re-attached", run, n)
		}
	}
	ids := up.upstreamSessions()
	if len(ids) != 2 {
		t.Fatalf("the upstream saw sessions %v, want one for each run", ids)
	}
	if deleted := up.waitDeleted(t); !ids[deleted] {
		t.Errorf("deleted %q, not one of the runs' upstream sessions %v", deleted, ids)
	}
}

// TestTypeScriptClientHeals is the same client without authentication:
// nothing strong enough ties its new stream to its old session, so the
// gateway gives it a new session and, since its first message is not
// initialize, initializes the upstream for it, and its calls go on being
// answered. Without healing, every call after the first loss would fail
// with the upstream's refusal of an uninitialized session. The calls posted
// while the client had no stream are answered on the old session, which
// the client never comes back to (it sends no Last-Event-ID): they time
// out, and nothing else may fail.
func TestTypeScriptClientHeals(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "max_lifetime 2s"))
	run := runResumeScript(t, 12, 1500*time.Millisecond, "")
	if run.Losses < 2 {
		t.Errorf("the client lost its stream %d times, want several", run.Losses)
	}
	for _, e := range run.Errors {
		if !strings.HasSuffix(e, "Request timed out") {
			t.Errorf("a call failed other than by timing out in a stream gap: %s", e)
		}
	}
	if ids := up.upstreamSessions(); len(ids) < 2 {
		t.Errorf("the upstream saw %d sessions; the client's later streams were never healed", len(ids))
	}
	if run.Calls-run.Failed < 100 {
		t.Errorf("only %d of %d calls succeeded", run.Calls-run.Failed, run.Calls)
	}
}

// TestLastEventIDReplaysMissedEvents drops a raw stream in the middle of a
// tool call's progress and reconnects with Last-Event-ID: the same
// endpoint, then every event after that id once and in order, then the
// live stream.
func TestLastEventIDReplaysMissedEvents(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	first := openRaw(t, client, gatewayURL+"/sse", nil)
	if err := first.initialize(client, gatewayURL); err != nil {
		t.Fatal(err)
	}
	first.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"countdown","arguments":{"steps":4,"interval_ms":20},"_meta":{"progressToken":"p"}}}`)
	ev, err := first.nextMessage()
	if err != nil {
		t.Fatal(err)
	}
	first.resp.Body.Close()

	second := openRaw(t, client, gatewayURL+"/sse", http.Header{"Last-Event-Id": {ev.id}})
	if second.endpoint != first.endpoint {
		t.Fatalf("re-attached with endpoint %q, want %q", second.endpoint, first.endpoint)
	}
	sessionID := strings.TrimPrefix(first.endpoint, "/message?sessionId=")
	_, n, _ := strings.Cut(ev.id, ":")
	seq, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		t.Fatalf("event id %q is not <sessionId>:<n>", ev.id)
	}
	// After the first progress notification: three more, then the result.
	for want := seq + 1; want <= seq+4; want++ {
		got, err := second.nextMessage()
		if err != nil {
			t.Fatal(err)
		}
		if wantID := fmt.Sprintf("%s:%d", sessionID, want); got.id != wantID {
			t.Fatalf("event %q (%s), want id %s", got.id, got.data, wantID)
		}
	}
	second.post(t, `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	if answer, before := second.awaitAnswer(t, "3"); answer.Error != nil || len(before) != 0 {
		t.Errorf("after the replay: %+v, with %v before it", answer, before)
	}
}

// TestReloadWithGracePeriodLosesNoCalls reloads Caddy twice with a
// grace_period of 1s while the TypeScript client calls a tool. Caddy 2.11
// lets the old servers' streams run on past the grace period (Shutdown is
// not followed by Close), and the sessions outlive the reload, so no call
// fails for the gateway's sake. What the old server does close is its idle
// keep-alive connections: a POST the client sends on one just then fails in
// its fetch ("fetch failed"; HTTP gives a non-idempotent request no retry).
// That race is Go's and the client's. Node's fetch keeps more than one
// connection in its pool (its first POSTs overlap), so it is allowed twice
// per reload: seen up to three times over two reloads 60 ms apart under the
// full test run's load.
func TestReloadWithGracePeriodLosesNoCalls(t *testing.T) {
	up := newTestUpstream(t)
	const reloads = 2
	loadCaddyfileWith(t, "grace_period 1s", authSite(t, up.URL, "ping_interval 5s"))
	cmd := resumeScript(t, 8, 10*time.Second, basicAuth("alice", "pw"))
	var out []byte
	var err error
	var wg sync.WaitGroup
	wg.Go(func() { out, err = cmd.Output() })
	waitFor(t, func() error {
		if len(up.upstreamSessions()) == 0 {
			return fmt.Errorf("no calls yet")
		}
		return nil
	})
	for i := range reloads {
		loadCaddyfileWith(t, "grace_period 1s", authSite(t, up.URL, fmt.Sprintf("ping_interval %ds", 6+i)))
	}
	wg.Wait()
	run := parseRun(t, out, err)
	if run.Calls == 0 {
		t.Fatal("no calls made")
	}
	if run.Failed > 2*reloads {
		t.Errorf("%d of %d calls failed across %d reloads: %v", run.Failed, run.Calls, reloads, run.Errors)
	}
	for _, e := range run.Errors {
		if !strings.HasSuffix(e, "fetch failed") {
			t.Errorf("a call failed across the reloads: %s", e)
		}
	}
	if ids := up.upstreamSessions(); len(ids) != 1 {
		t.Errorf("the upstream saw %d sessions, want the one", len(ids))
	}
}
