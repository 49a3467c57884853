package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// oauthRun is what testdata/tsclient/oauth.mjs saw.
type oauthRun struct {
	Authorizations  int
	Statuses        []string
	Sessions        []string
	FirstChallenge  string
	StepUpChallenge string
	Tools           []string
	Before          string
	AfterExpiry     string
	Admin           string
}

// runOAuthClient runs oauth.mjs against url, expiring every access token
// of as when it asks for that.
func runOAuthClient(t *testing.T, as *testAuthServer, url string) oauthRun {
	t.Helper()
	cmd := nodeCommand(t, "oauth.mjs", url)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.Contains(lines.Text(), `"expire"`) {
		t.Fatalf("the client never got to the expiry: %q (%v)", lines.Text(), cmd.Wait())
	}
	as.expireAccessTokens()
	if _, err := io.WriteString(stdin, "expired\n"); err != nil {
		t.Fatal(err)
	}
	var run oauthRun
	if !lines.Scan() {
		t.Fatalf("the client printed no result (%v)", cmd.Wait())
	}
	if err := json.Unmarshal(lines.Bytes(), &run); err != nil {
		t.Fatalf("client output %q: %v", lines.Text(), err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the client: %v", err)
	}
	return run
}

// checkOAuthRun checks what every client of a protected server sees,
// directly or through the gateway: a login, calls, a refresh after the
// token expired and a step-up, all on one session.
func checkOAuthRun(t *testing.T, run oauthRun, metadata string, as *testAuthServer, resource string) {
	t.Helper()
	if !strings.Contains(run.FirstChallenge, `resource_metadata="`+metadata+`"`) {
		t.Errorf("first challenge %q, want resource_metadata=%q", run.FirstChallenge, metadata)
	}
	if !slices.Contains(run.Statuses, "GET /sse 401") {
		t.Errorf("statuses %q: the stream request was never refused", run.Statuses)
	}
	if !slices.Contains(run.Tools, "echo") || run.Before != "before" {
		t.Errorf("after login: tools %v, echo %q", run.Tools, run.Before)
	}
	if run.AfterExpiry != "after expiry" {
		t.Errorf("after the token expired: echo %q", run.AfterExpiry)
	}
	if !strings.Contains(run.StepUpChallenge, `error="insufficient_scope"`) || !strings.Contains(run.StepUpChallenge, `scope="mcp admin"`) {
		t.Errorf("step-up challenge %q, want insufficient_scope for mcp admin", run.StepUpChallenge)
	}
	if run.Admin != "admin: x" {
		t.Errorf("after the step-up: admin_echo %q", run.Admin)
	}
	if run.Authorizations != 2 || as.issued() != 3 {
		t.Errorf("%d authorizations and %d access tokens, want 2 (login, step-up) and 3 (and a refresh)", run.Authorizations, as.issued())
	}
	if len(run.Sessions) != 1 {
		t.Errorf("messages went to sessions %q, want one", run.Sessions)
	}
	for _, r := range as.authorizedResources() {
		if r != resource {
			t.Errorf("authorized for resource %q, want %q", r, resource)
		}
	}
}

func TestOAuthThroughGateway(t *testing.T) {
	as := newTestAuthServer(t)
	up := newProtectedUpstream(t, as, gatewayURL+"/sse")
	logs, globals := newCaddyLog(t, "DEBUG")
	loadCaddyfileWith(t, globals, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	log {
		output file %s
		format json
	}
	mcp_sse {
		upstream %s
	}
}
`, logs.path, up.streamable))
	run := runOAuthClient(t, as, gatewayURL+"/sse")
	checkOAuthRun(t, run, gatewayURL+"/.well-known/oauth-protected-resource/sse", as, gatewayURL+"/sse")
	for _, want := range []string{"POST /message 401", "POST /message 403"} {
		if !slices.Contains(run.Statuses, want) {
			t.Errorf("statuses %q, want %q", run.Statuses, want)
		}
	}
	for _, c := range []string{run.FirstChallenge, run.StepUpChallenge} {
		if strings.Contains(c, up.URL) {
			t.Errorf("challenge %q names the upstream's address", c)
		}
	}
	if n := up.initializes.Load(); n != 1 {
		t.Errorf("%d initialize requests reached the upstream, want 1: the session was kept", n)
	}
	// Nothing secret is logged, access logs and debug logs included.
	entries := logs.entries(t)
	if len(entries) == 0 {
		t.Fatal("nothing was logged")
	}
	for _, e := range entries {
		for _, secret := range as.issuedSecrets() {
			if strings.Contains(e.String(), secret) {
				t.Errorf("a code or token is in the log: %s", e)
			}
		}
	}
}

// TestOAuthDirect is the control: the same client against the upstream's
// own SSE endpoint sees the same.
func TestOAuthDirect(t *testing.T) {
	as := newTestAuthServer(t)
	up := newProtectedUpstream(t, as, gatewayURL+"/sse")
	run := runOAuthClient(t, as, up.sse)
	checkOAuthRun(t, run, up.URL+"/.well-known/oauth-protected-resource/sse", as, up.sse)
	for _, want := range []string{"POST /sse 401", "POST /sse 403"} {
		if !slices.Contains(run.Statuses, want) {
			t.Errorf("statuses %q, want %q", run.Statuses, want)
		}
	}
}

// TestUnprotectedUpstreamCostsOneRequest checks the cost of authorization
// for an upstream that requires none: one GET without session, however
// many sessions open, and POSTs are answered at once as before.
func TestUnprotectedUpstreamCostsOneRequest(t *testing.T) {
	up := newTestUpstream(t)
	var probes atomic.Int64
	gate := func(_ http.ResponseWriter, r *http.Request) *http.Request {
		if r.Method == http.MethodGet && r.Header.Get(headerSessionID) == "" {
			probes.Add(1)
		}
		return r
	}
	up.gate.Store(&gate)
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	for range 5 {
		s := openInitializedStream(t)
		if code := s.post(t, `{"jsonrpc":"2.0","id":2,"method":"ping"}`); code != http.StatusAccepted {
			t.Fatalf("ping: %d", code)
		}
		if m := nextJSON(t, s); m["id"] != 2.0 {
			t.Fatalf("want the ping's answer, got %v", m)
		}
	}
	if n := probes.Load(); n != 1 {
		t.Errorf("%d GETs without session reached the upstream for 5 sessions, want 1", n)
	}
	resp, err := http.Get(gatewayURL + "/.well-known/oauth-protected-resource/sse")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "next" {
		t.Errorf("metadata of an open upstream: %s %q, want the next handler's answer", resp.Status, body)
	}
}

// TestOAuthMetadataUnderHandlePath checks the challenge and the metadata
// of a handler under handle_path, with the README's route for the
// well-known path: both name the URL the client sees, never the
// upstream's.
func TestOAuthMetadataUnderHandlePath(t *testing.T) {
	as := newTestAuthServer(t)
	resource := gatewayURL + "/tenant/sse"
	up := newProtectedUpstream(t, as, resource)
	handler := fmt.Sprintf("mcp_sse {\n\t\tname tenant\n\t\tupstream %s\n\t}", up.streamable)
	loadCaddyfile(t, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	handle_path /tenant/* {
		%s
	}
	handle /.well-known/oauth-protected-resource/tenant/* {
		%s
	}
}
`, handler, handler))
	resp, err := http.Get(resource)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	metadata := gatewayURL + "/.well-known/oauth-protected-resource/tenant/sse"
	if challenge := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || challenge != `Bearer resource_metadata="`+metadata+`"` {
		t.Fatalf("stream without a token: %s, WWW-Authenticate %q", resp.Status, challenge)
	}
	resp, err = http.Get(metadata)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: %s, %v", resp.Status, err)
	}
	if doc.Resource != resource || !slices.Equal(doc.AuthorizationServers, []string{as.URL}) || !slices.Equal(doc.ScopesSupported, []string{"mcp"}) {
		t.Errorf("metadata %+v, want resource %s and the upstream's authorization server and scopes", doc, resource)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("metadata without Access-Control-Allow-Origin: *")
	}
}

// TestOAuthMCPRemote runs mcp-remote (--transport sse-only), as Claude
// Desktop does, against the protected upstream, directly and through the
// gateway: its start-up probe gets the 401, it begins the login and prints
// where to authorize, the driver approves as the user's browser would, and
// then the calls go through.
func TestOAuthMCPRemote(t *testing.T) {
	script := filepath.Join(t.TempDir(), "script.json")
	if err := os.WriteFile(script, []byte(`[{"op":"listTools"},{"op":"callTool","name":"echo","arguments":{"text":"hi"}}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, throughGateway := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "gateway"}[throughGateway], func(t *testing.T) {
			as := newTestAuthServer(t)
			up := newProtectedUpstream(t, as, gatewayURL+"/sse")
			url := up.sse
			if throughGateway {
				loadCaddyfile(t, gatewaySite(up.streamable, ""))
				url = gatewayURL + "/sse"
			}
			results := runNodeDriver(t, thirdPartyDir, "mcp-remote", "mcp-remote.mjs", url, "sse", script)
			for _, r := range results {
				if !r.OK {
					t.Errorf("%s: %s", r.Op, r.Error)
				}
			}
			if len(results) == 2 && results[1].OK && !strings.Contains(string(results[1].Result), `"text":"hi"`) {
				t.Errorf("echo gave %s", results[1].Result)
			}
			if got := as.authorizedResources(); len(got) != 1 || got[0] != url {
				t.Errorf("authorized for %q, want one login for %s", got, url)
			}
		})
	}
}

// TestOAuthAuthorizationServerAtOrigin checks the README's Caddyfile for
// clients of revision 2025-03-26, which look for the authorization server
// at the MCP server's origin: its metadata and endpoints reach the
// authorization server, the MCP endpoints the gateway.
func TestOAuthAuthorizationServerAtOrigin(t *testing.T) {
	as := newTestAuthServer(t)
	up := newProtectedUpstream(t, as, gatewayURL+"/sse")
	loadCaddyfile(t, fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	@as path /.well-known/oauth-authorization-server* /authorize /token /register
	reverse_proxy @as %s
	mcp_sse {
		upstream %s
	}
}
`, as.URL, up.streamable))
	resp, err := http.Get(gatewayURL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	err = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if err != nil || meta.TokenEndpoint != as.URL+"/token" {
		t.Errorf("authorization server metadata at the gateway's origin: %s, token endpoint %q (%v)", resp.Status, meta.TokenEndpoint, err)
	}
	resp, err = http.Post(gatewayURL+"/register", "application/json", strings.NewReader(`{"redirect_uris":["http://127.0.0.1:1/cb"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("registration at the gateway's origin: %s", resp.Status)
	}
	resp, err = http.Get(gatewayURL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("stream without a token: %s, want the gateway's 401", resp.Status)
	}
}
