package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testAuthServer is an OAuth 2.1 authorization server for tests, as MCP's
// authorization spec has clients use one: metadata (RFC 8414), dynamic
// client registration (RFC 7591), the authorization code flow with PKCE
// (S256), approved at once, with the resource parameter (RFC 8707), and
// refresh tokens. Its access tokens are opaque; the upstream checks them
// with verify.
type testAuthServer struct {
	*httptest.Server

	mu        sync.Mutex
	clients   map[string]bool
	codes     map[string]*grant
	access    map[string]*grant
	refresh   map[string]*grant
	resources []string // the resource of every authorization request
	tokens    int      // access tokens issued
	secrets   []string // every code and token issued
}

// grant is what an authorization code or token stands for.
type grant struct {
	clientID, redirectURI, challenge string
	scopes                           []string
	resource                         string
	expires                          time.Time
}

func newTestAuthServer(t *testing.T) *testAuthServer {
	t.Helper()
	as := &testAuthServer{
		clients: map[string]bool{},
		codes:   map[string]*grant{},
		access:  map[string]*grant{},
		refresh: map[string]*grant{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", as.serveMetadata)
	mux.HandleFunc("POST /register", as.serveRegister)
	mux.HandleFunc("GET /authorize", as.serveAuthorize)
	mux.HandleFunc("POST /token", as.serveToken)
	as.Server = httptest.NewServer(mux)
	t.Cleanup(as.Close)
	return as
}

func (as *testAuthServer) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                as.URL,
		"authorization_endpoint":                as.URL + "/authorize",
		"token_endpoint":                        as.URL + "/token",
		"registration_endpoint":                 as.URL + "/register",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                      []string{"mcp", "admin"},
	})
}

func (as *testAuthServer) serveRegister(w http.ResponseWriter, r *http.Request) {
	var meta map[string]any
	if err := json.NewDecoder(r.Body).Decode(&meta); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata"})
		return
	}
	id := randomToken()
	as.mu.Lock()
	as.clients[id] = true
	as.mu.Unlock()
	meta["client_id"] = id
	meta["client_id_issued_at"] = time.Now().Unix()
	meta["token_endpoint_auth_method"] = "none"
	writeJSON(w, http.StatusCreated, meta)
}

// serveAuthorize approves every request at once: it redirects to the
// client's redirect URI with a code.
func (as *testAuthServer) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	as.mu.Lock()
	known := as.clients[q.Get("client_id")]
	as.mu.Unlock()
	switch {
	case !known:
		http.Error(w, "unknown client", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "code flow with S256 PKCE only", http.StatusBadRequest)
		return
	}
	code := randomToken()
	as.mu.Lock()
	as.codes[code] = &grant{
		clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"),
		scopes: strings.Fields(q.Get("scope")), resource: q.Get("resource"),
	}
	as.resources = append(as.resources, q.Get("resource"))
	as.secrets = append(as.secrets, code)
	as.mu.Unlock()
	to, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	back := to.Query()
	back.Set("code", code)
	if s := q.Get("state"); s != "" {
		back.Set("state", s)
	}
	to.RawQuery = back.Encode()
	http.Redirect(w, r, to.String(), http.StatusFound)
}

// accessTTL is how long an access token lasts; tests that want one to
// expire expire it with expireAccessTokens.
const accessTTL = time.Hour

func (as *testAuthServer) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	var g *grant
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		code := r.PostForm.Get("code")
		g = as.codes[code]
		delete(as.codes, code)
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if g == nil || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge || r.PostForm.Get("redirect_uri") != g.redirectURI {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
	case "refresh_token":
		old := r.PostForm.Get("refresh_token")
		if g = as.refresh[old]; g == nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		delete(as.refresh, old)
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	issued := *g
	issued.expires = time.Now().Add(accessTTL)
	access, refresh := randomToken(), randomToken()
	as.access[access] = &issued
	as.refresh[refresh] = &issued
	as.tokens++
	as.secrets = append(as.secrets, access, refresh)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  access,
		"token_type":    "Bearer",
		"expires_in":    int(accessTTL.Seconds()),
		"refresh_token": refresh,
		"scope":         strings.Join(g.scopes, " "),
	})
}

// lookup returns the grant of a live access token issued for resource.
func (as *testAuthServer) lookup(token, resource string) (*grant, bool) {
	as.mu.Lock()
	defer as.mu.Unlock()
	g := as.access[token]
	if g == nil || g.resource != resource || !time.Now().Before(g.expires) {
		return nil, false
	}
	return g, true
}

// expireAccessTokens ends every access token issued so far, as time would.
func (as *testAuthServer) expireAccessTokens() {
	as.mu.Lock()
	defer as.mu.Unlock()
	for _, g := range as.access {
		g.expires = time.Now()
	}
}

// authorizedResources returns the resource of every authorization request.
func (as *testAuthServer) authorizedResources() []string {
	as.mu.Lock()
	defer as.mu.Unlock()
	return slices.Clone(as.resources)
}

// issuedSecrets returns every authorization code and token issued.
func (as *testAuthServer) issuedSecrets() []string {
	as.mu.Lock()
	defer as.mu.Unlock()
	return slices.Clone(as.secrets)
}

// issued returns how many access tokens the server issued.
func (as *testAuthServer) issued() int {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.tokens
}

func randomToken() string { return rand.Text() }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
