package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The two sites of twoSites, both served on gatewayURL's port.
const (
	siteA = "http://a.test:9080"
	siteB = "http://b.test:9080"
)

// twoSites is a config of two sites on one upstream, told apart by host,
// each with one mcp_sse handler with its own subdirectives. marker varies
// the config, so that loading it again is a reload.
func twoSites(upstream, a, b, marker string) string {
	site := func(address, subdirectives string) string {
		return fmt.Sprintf(`%s {
	bind 127.0.0.1
	mcp_sse {
		upstream %s
		%s
	}
	respond %q 200
}
`, address, upstream, subdirectives, marker)
	}
	return site(siteA, a) + site(siteB, b)
}

// untilEnd reads the stream until it ends, and fails if it has not ended
// cleanly within d.
func (s *rawStream) untilEnd(d time.Duration) error {
	timer := time.AfterFunc(d, func() { s.resp.Body.Close() })
	defer timer.Stop()
	for {
		if _, err := s.next(); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("the stream did not end within %v: %w", d, err)
		}
	}
}

// sessionsOf counts the sessions of the handler named name.
func sessionsOf(t *testing.T, name string) int {
	n := 0
	for _, s := range adminSessions(t) {
		if s.Handler == name {
			n++
		}
	}
	return n
}

// TestSitesOnOneUpstreamKeepTheirSettings runs two sites in front of one
// upstream, one with max_sessions 1 and max_lifetime 300ms, the other with
// neither, through 20 starts of the config in a row: each site follows its
// own settings every time, whatever order Caddy provisions them in.
func TestSitesOnOneUpstreamKeepTheirSettings(t *testing.T) {
	up := newTestUpstream(t)
	client := hostClient()
	for i := range 20 {
		loadCaddyfile(t, twoSites(up.URL, "name a\n\t\tmax_sessions 1\n\t\tmax_lifetime 300ms\n\t\tresume_window off", "name b", fmt.Sprint("start ", i)))
		b1 := openRaw(t, client, siteB+"/sse", nil)
		b2 := openRaw(t, client, siteB+"/sse", nil)
		a1 := openRaw(t, client, siteA+"/sse", nil)
		resp, err := client.Get(siteA + "/sse")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("start %d: site a's second stream got %s, want 503 for its max_sessions 1", i, resp.Status)
		}
		if err := a1.untilEnd(10 * time.Second); err != nil {
			t.Fatalf("start %d: site a's max_lifetime: %v", i, err)
		}
		// Site b's streams outlived site a's 300ms.
		if err := b1.initialize(client, siteB); err != nil {
			t.Fatalf("start %d: site b's first stream: %v", i, err)
		}
		if err := b2.initialize(client, siteB); err != nil {
			t.Fatalf("start %d: site b's second stream: %v", i, err)
		}
		b1.resp.Body.Close()
		b2.resp.Body.Close()
		waitFor(t, func() error {
			if n := sessionsOf(t, "a"); n != 0 {
				return fmt.Errorf("site a still has %d sessions", n)
			}
			return nil
		})
	}
}

// TestHandlersOnOneUpstreamNeedNames checks that Caddy refuses a config in
// which two handlers would share sessions without being told to, and one
// whose handlers share a name but not their settings, while the running
// config goes on serving; and that handlers given the same name do share
// their sessions.
func TestHandlersOnOneUpstreamNeedNames(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	running := openRaw(t, nil, gatewayURL+"/sse", nil)

	for _, tc := range []struct {
		name, a, b, want string
	}{
		{"no names", "", "", "give each its own name"},
		{"one name, other settings", "name shared", "name shared\n\t\tmax_sessions 3", "share their sessions, so they need the same settings"},
	} {
		status, body := tryLoad(t, "text/caddyfile", []byte(caddyfileGlobals("")+twoSites(up.URL, tc.a, tc.b, tc.name)))
		if status != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s: /load answered %d %s, want 400 saying %q", tc.name, status, body, tc.want)
		}
	}
	if err := running.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatalf("the running config after the refused loads: %v", err)
	}

	loadCaddyfile(t, twoSites(up.URL, "name shared", "name shared", "shared"))
	client := hostClient()
	a := openRaw(t, client, siteA+"/sse", nil)
	if code := a.postVia(t, client, siteB, initializeRequest); code != http.StatusAccepted {
		t.Fatalf("site b refused the session of site a, which shares its name: %d", code)
	}
	if ev, err := a.nextMessage(); err != nil || !strings.Contains(string(ev.data), `"result"`) {
		t.Errorf("the answer on site a's stream: %q, %v", ev.data, err)
	}
}

// TestSessionsStayWithTheirSite opens a session on one site and uses it
// on the other, by POST and by Last-Event-ID: the other site knows it as
// little as a session that never was.
func TestSessionsStayWithTheirSite(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, twoSites(up.URL, "name a", "name b", ""))
	client := hostClient()
	a := openRaw(t, client, siteA+"/sse", nil)
	if err := a.initialize(client, siteA); err != nil {
		t.Fatal(err)
	}
	unknown := &rawStream{endpoint: "/message?sessionId=00000000-0000-4000-8000-000000000000"}
	want := unknown.postVia(t, client, siteB, initializeRequest)
	if want != http.StatusNotFound {
		t.Fatalf("an unknown session got %d, want 404", want)
	}
	if code := a.postVia(t, client, siteB, initializeRequest); code != want {
		t.Errorf("site b answered %d to site a's session, want %d as for an unknown one", code, want)
	}

	a.postVia(t, client, siteA, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	ev, err := a.nextMessage()
	if err != nil {
		t.Fatal(err)
	}
	b := openRaw(t, client, siteB+"/sse", http.Header{"Last-Event-Id": {ev.id}})
	if b.endpoint == a.endpoint {
		t.Errorf("site b re-attached site a's session %s by its Last-Event-ID", a.endpoint)
	}
}

// TestAuthRealmsDoNotShareUsers runs two basic_auth realms, each with a
// user admin of its own password, in front of one upstream. The admin of
// the second realm is never re-attached to the session the first realm's
// admin left, and a session of the second realm that heals does not
// initialize the upstream with what the first realm's client said.
func TestAuthRealmsDoNotShareUsers(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	handle_path /t1/* {
		basic_auth {
			admin %s
		}
		mcp_sse {
			name t1
			upstream %s
		}
	}
	handle_path /t2/* {
		basic_auth {
			admin %s
		}
		mcp_sse {
			name t2
			upstream %[2]s
		}
	}
}`, bcryptHash(t, "pw1"), up.URL, bcryptHash(t, "pw2")))
	t1 := &http.Client{Transport: headerTransport{"Authorization": basicAuth("admin", "pw1")}}
	t2 := &http.Client{Transport: headerTransport{"Authorization": basicAuth("admin", "pw2")}}

	first := openRaw(t, t1, gatewayURL+"/t1/sse", nil)
	if code := first.postVia(t, t1, gatewayURL, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"realm-one-client","version":"1"}}}`); code != http.StatusAccepted {
		t.Fatalf("initialize in realm one: %d", code)
	}
	if _, err := first.nextMessage(); err != nil {
		t.Fatal(err)
	}
	first.resp.Body.Close()
	waitFor(t, func() error {
		for _, s := range adminSessions(t) {
			if s.Handler == "t1" && s.StreamAttached {
				return fmt.Errorf("realm one's stream is still attached")
			}
		}
		return nil
	})

	second := openRaw(t, t2, gatewayURL+"/t2/sse", nil)
	if strings.TrimPrefix(second.endpoint, "/t2") == strings.TrimPrefix(first.endpoint, "/t1") {
		t.Fatalf("realm two's admin got realm one's session %s", first.endpoint)
	}
	if code := second.postVia(t, t2, gatewayURL, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`); code != http.StatusAccepted {
		t.Fatalf("tools/list in realm two: %d", code)
	}
	if ev, err := second.nextMessage(); err != nil || !strings.Contains(string(ev.data), `"tools"`) {
		t.Fatalf("realm two's healed session answered %q, %v", ev.data, err)
	}
	var names []string
	for ss := range up.server.Sessions() {
		if p := ss.InitializeParams(); p != nil && p.ClientInfo != nil {
			names = append(names, p.ClientInfo.Name)
		}
	}
	if n := strings.Count(strings.Join(names, " "), "realm-one-client"); n != 1 {
		t.Errorf("upstream sessions initialized as realm one's client: %d of %v, want 1", n, names)
	}
}

// TestRejectedLoadChangesNothing loads configs that Caddy refuses while a
// stream runs: their settings never reach the running config, whose new
// streams open as before and whose open stream pings as before.
func TestRejectedLoadChangesNothing(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	live := openRaw(t, nil, gatewayURL+"/sse", nil)
	if err := live.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key   string
		value any
	}{
		{"queue_size", -1},
		{"ping_interval", "-1s"},
		{"max_sessions", -1},
	} {
		status, body := tryLoad(t, "application/json", withHandlerField(t, runningConfig(t), tc.key, tc.value))
		if status != http.StatusBadRequest {
			t.Fatalf("/load with %s %v answered %d %s, want 400", tc.key, tc.value, status, body)
		}
	}

	fresh := openRaw(t, nil, gatewayURL+"/sse", nil)
	if err := fresh.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatalf("a new stream after the refused loads: %v", err)
	}
	live.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"still here"}}}`)
	pings := 0
	for {
		ev, err := live.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.comment != "" {
			pings++
			continue
		}
		if !strings.Contains(string(ev.data), "still here") {
			t.Fatalf("answer %s", ev.data)
		}
		break
	}
	if pings > 1 {
		t.Errorf("the open stream wrote %d pings for one quick call: a refused ping_interval reached it", pings)
	}
}
