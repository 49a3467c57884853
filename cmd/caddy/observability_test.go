package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// scrape reads a Prometheus text exposition and returns its samples by
// series, as written: `name{label="value",...}`.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	samples := map[string]float64{}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		line := lines.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

// TestMetrics runs a session through a call, a failed call and its end,
// and reads the module's metrics where Caddy serves them: the metrics
// handler and the admin endpoint. A reload keeps them.
func TestMetrics(t *testing.T) {
	up := newTestUpstream(t)
	up.answerCalls("broken", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	site := fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	metrics /metrics
	mcp_sse {
		upstream %s
		resume_window off
	}
}`, up.URL)
	loadCaddyfile(t, site)
	const (
		active   = "caddy_mcp_sse_sessions_active"
		ended    = `caddy_mcp_sse_sessions_ended_total{reason="client_gone"}`
		requests = `caddy_mcp_sse_messages_total{direction="to_upstream",kind="request"}`
		answers  = `caddy_mcp_sse_messages_total{direction="to_client",kind="response"}`
		failed   = `caddy_mcp_sse_upstream_errors_total{reason="status"}`
		posts    = `caddy_mcp_sse_upstream_request_duration_seconds_count{method="POST"}`
		deletes  = `caddy_mcp_sse_upstream_request_duration_seconds_count{method="DELETE"}`
	)
	before := scrape(t, gatewayURL+"/metrics")

	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	if err := stream.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatal(err)
	}
	stream.post(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	stream.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`)
	stream.awaitAnswer(t, "2")
	stream.post(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"broken","arguments":{}}}`)
	stream.awaitAnswer(t, "3")
	// initialize, echo and broken went upstream, each in a POST, as did
	// notifications/initialized, whose POST may end after the answers the
	// test waited for; the upstream answered initialize and echo, the
	// gateway broken.
	var during map[string]float64
	waitFor(t, func() error {
		during = scrape(t, gatewayURL+"/metrics")
		for series, want := range map[string]float64{active: 1, requests: 3, answers: 2, failed: 1, posts: 4} {
			if d := during[series] - before[series]; d != want {
				return fmt.Errorf("%s went up by %v, want %v", series, d, want)
			}
		}
		return nil
	})

	stream.resp.Body.Close()
	up.waitDeleted(t)
	loadCaddyfile(t, site)
	waitFor(t, func() error {
		after := scrape(t, adminURL+"/metrics")
		for series, want := range map[string]float64{active: before[active], ended: before[ended] + 1, deletes: before[deletes] + 1, requests: during[requests]} {
			if after[series] != want {
				return fmt.Errorf("after the session ended and a reload, %s is %v, want %v", series, after[series], want)
			}
		}
		return nil
	})
}

// adminSessions lists the sessions through the admin API.
func adminSessions(t *testing.T) []sessionInfo {
	t.Helper()
	resp, err := http.Get(adminURL + adminSessionsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var infos []sessionInfo
	if err := json.NewDecoder(resp.Body).Decode(&infos); err != nil {
		t.Fatalf("GET %s: %s: %v", adminSessionsPath, resp.Status, err)
	}
	return infos
}

// adminDo sends a request to the admin endpoint and returns its status.
func adminDo(t *testing.T, method, path string) int {
	t.Helper()
	req, err := http.NewRequest(method, adminURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminAPI lists a session of an authenticated user through the admin
// endpoint and ends it there: its stream ends cleanly and its upstream
// session is deleted.
func TestAdminAPI(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, authSite(t, up.URL, "prefix /mcp"))
	client := &http.Client{Transport: headerTransport{"Authorization": basicAuth("alice", "pw")}}
	stream := openRaw(t, client, gatewayURL+"/mcp/sse", nil)
	if err := stream.initialize(client, gatewayURL); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(stream.endpoint, "/mcp/message?sessionId=")

	var info *sessionInfo
	for _, s := range adminSessions(t) {
		if s.ID == id {
			info = &s
		}
	}
	switch {
	case info == nil:
		t.Fatalf("session %s not listed", id)
	case info.Upstream != up.URL || info.Prefix != "/mcp" || info.User != "alice" || !strings.HasPrefix(info.RemoteAddr, "127.0.0.1:"):
		t.Errorf("listed as %+v", *info)
	case !info.StreamAttached || !info.UpstreamSession || info.MessagesReceived != 1 || info.MessagesSent != 1 || info.AgeSeconds <= 0:
		t.Errorf("listed as %+v, want an attached stream, an upstream session, one message each way", *info)
	}

	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodDelete, adminSessionsPath + "/not-a-session-id", http.StatusBadRequest},
		{http.MethodDelete, adminSessionsPath + "/00000000-0000-4000-8000-000000000000", http.StatusNotFound},
		{http.MethodPost, adminSessionsPath + "/" + id, http.StatusMethodNotAllowed},
		{http.MethodPost, adminSessionsPath, http.StatusMethodNotAllowed},
		{http.MethodGet, adminSessionsPath + "/" + id, http.StatusOK},
		{http.MethodDelete, adminSessionsPath + "/" + id, http.StatusNoContent},
		{http.MethodDelete, adminSessionsPath + "/" + id, http.StatusNotFound},
	} {
		if got := adminDo(t, tc.method, tc.path); got != tc.status {
			t.Errorf("%s %s answered %d, want %d", tc.method, tc.path, got, tc.status)
		}
	}
	if _, err := io.Copy(io.Discard, stream.resp.Body); err != nil {
		t.Errorf("the ended session's stream broke instead of ending: %v", err)
	}
	up.waitDeleted(t)
}

// TestSessionPlaceholder reads {http.mcp_sse.session_id} in a deferred
// response header and in the access log, on both endpoints.
func TestSessionPlaceholder(t *testing.T) {
	up := newTestUpstream(t)
	accessPath := filepath.Join(t.TempDir(), "access.log")
	loadCaddyfile(t, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	log {
		output file %s
	}
	log_append mcp_session {http.mcp_sse.session_id}
	header >X-MCP-Session {http.mcp_sse.session_id}
	mcp_sse {
		upstream %s
	}
}`, accessPath, up.URL))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	id := strings.TrimPrefix(stream.endpoint, "/message?sessionId=")
	if got := stream.resp.Header.Get("X-MCP-Session"); got != id {
		t.Errorf("stream header X-MCP-Session = %q, want %q", got, id)
	}
	resp, err := http.Post(gatewayURL+stream.endpoint, "application/json", strings.NewReader(initializeRequest))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-MCP-Session"); got != id {
		t.Errorf("message header X-MCP-Session = %q, want %q", got, id)
	}
	stream.resp.Body.Close()
	waitFor(t, func() error {
		data, _ := os.ReadFile(accessPath)
		logged := map[string]string{}
		for line := range strings.Lines(string(data)) {
			var e struct {
				Request struct{ URI string }
				Session string `json:"mcp_session"`
			}
			if json.Unmarshal([]byte(line), &e) == nil {
				logged[strings.SplitN(e.Request.URI, "?", 2)[0]] = e.Session
			}
		}
		if logged["/sse"] != id || logged["/message"] != id {
			return fmt.Errorf("access log sessions %v, want %s for /sse and /message", logged, id)
		}
		return nil
	})
}
