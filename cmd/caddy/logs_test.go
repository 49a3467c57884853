package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogsHoldNoSecrets runs a session through everything that logs at
// info and above (opening, a failed upstream exchange, ending) behind
// basic_auth, with the access log filtered as the README shows: neither log
// holds the session ID, the upstream's session ID, or the credentials, and
// per-message logs stay below info.
func TestLogsHoldNoSecrets(t *testing.T) {
	const password = "correct-horse-battery-staple"
	up := newTestUpstream(t)
	up.answerCalls("broken", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	logs, globals := newCaddyLog(t, "INFO")
	accessPath := filepath.Join(t.TempDir(), "access.log")
	loadCaddyfileWith(t, globals, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	log {
		output file %s
		format filter {
			wrap json
			request>uri query {
				delete sessionId
			}
		}
	}
	basic_auth {
		alice %s
	}
	mcp_sse {
		upstream %s
		resume_window 100ms
	}
}`, accessPath, bcryptHash(t, password), up.URL))

	authorization := basicAuth("alice", password)
	client := &http.Client{Transport: headerTransport{"Authorization": authorization}}
	stream := openRaw(t, client, gatewayURL+"/sse", nil)
	if err := stream.initialize(client, gatewayURL); err != nil {
		t.Fatal(err)
	}
	sessionID := strings.TrimPrefix(stream.endpoint, "/message?sessionId=")
	post := func(body string) {
		resp, err := client.Post(gatewayURL+stream.endpoint, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`)
	stream.awaitAnswer(t, "2")
	post(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"broken","arguments":{}}}`)
	if answer, _ := stream.awaitAnswer(t, "3"); answer.Error == nil {
		t.Fatalf("the broken call answered %+v, want an error", answer)
	}
	stream.resp.Body.Close()
	upstreamID := up.waitDeleted(t)
	waitFor(t, func() error {
		for _, e := range logs.entries(t) {
			if e["msg"] == "session ended" {
				return nil
			}
		}
		return fmt.Errorf("no session ended in %v", logs.entries(t))
	})

	seen := map[string]bool{}
	for _, e := range logs.entries(t) {
		seen[e["msg"].(string)] = true
		if e["msg"] == "message from client" || e["msg"] == "relaying upstream message" {
			t.Errorf("a per-message log at %s: %v", e["level"], e)
		}
	}
	for _, msg := range []string{"session opened", "upstream exchange failed", "session ended"} {
		if !seen[msg] {
			t.Errorf("no %q in the log; the test would see nothing", msg)
		}
	}
	access, err := os.ReadFile(accessPath)
	if err != nil || !strings.Contains(string(access), `"/message`) {
		t.Fatalf("the access log has no POST to /message (%v): %s", err, access)
	}
	all, _ := os.ReadFile(logs.path)
	all = append(all, access...)
	secrets := map[string]string{
		"session ID":          sessionID,
		"upstream session ID": upstreamID,
		"password":            password,
		"Authorization":       strings.TrimPrefix(authorization, "Basic "),
	}
	for name, secret := range secrets {
		if strings.Contains(string(all), secret) {
			t.Errorf("the logs hold the %s", name)
		}
	}
}
