package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcp-sse/caddy-mcp-sse/cmd/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// protectedUpstream is the demo MCP server behind the Go SDK's
// RequireBearerToken, taking the access tokens of a testAuthServer: its
// Streamable HTTP endpoint (/mcp) for the gateway, whose tokens must name
// the gateway's stream URL as their resource, and its own SSE endpoint
// (/sse) as the control, whose tokens must name that endpoint. Each
// serves its protected-resource metadata at the RFC 9728 location. The
// tool admin_echo needs the admin scope: without it, a call gets 403 with
// error="insufficient_scope".
type protectedUpstream struct {
	*httptest.Server
	streamable, sse string
	// initializes counts the initialize requests that reached /mcp.
	initializes atomic.Int64
}

// newProtectedUpstream starts the upstream; gateway is the stream URL
// that the gateway's clients connect to, for which their tokens are.
func newProtectedUpstream(t *testing.T, as *testAuthServer, gateway string) *protectedUpstream {
	t.Helper()
	srv := demo.NewServer()
	mcp.AddTool(srv, &mcp.Tool{Name: "admin_echo", Description: "Echoes, for callers with the admin scope."},
		func(_ context.Context, _ *mcp.CallToolRequest, in struct {
			Text string `json:"text"`
		}) (*mcp.CallToolResult, any, error) {
			return textResult("admin: " + in.Text), nil, nil
		})
	getServer := func(*http.Request) *mcp.Server { return srv }
	u := &protectedUpstream{}
	mux := http.NewServeMux()
	u.Server = httptest.NewServer(mux)
	t.Cleanup(func() {
		u.CloseClientConnections()
		u.Close()
	})
	u.streamable, u.sse = u.URL+"/mcp", u.URL+"/sse"

	protect := func(path, resource string, h http.Handler) {
		meta := u.URL + "/.well-known/oauth-protected-resource" + path
		mux.Handle("GET "+strings.TrimPrefix(meta, u.URL), auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
			Resource:             u.URL + path,
			AuthorizationServers: []string{as.URL},
			// What a client asks for at first; admin_echo asks for more.
			ScopesSupported: []string{"mcp"},
		}))
		verify := func(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
			g, ok := as.lookup(token, resource)
			if !ok {
				return nil, fmt.Errorf("%w: unknown, expired, or not for %s", auth.ErrInvalidToken, resource)
			}
			return &auth.TokenInfo{Scopes: g.scopes, Expiration: g.expires}, nil
		}
		bearer := auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{ResourceMetadataURL: meta})
		mux.Handle(path, bearer(needsAdmin(meta, h)))
	}
	protect("/mcp", gateway, countInitializes(&u.initializes, mcp.NewStreamableHTTPHandler(getServer, nil)))
	protect("/sse", u.sse, mcp.NewSSEHandler(getServer, nil))
	return u
}

// needsAdmin refuses calls of admin_echo with 403 insufficient_scope when
// the token lacks the admin scope, as a server with per-tool scopes does.
func needsAdmin(meta string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := peekBody(r)
		if bytes.Contains(body, []byte(`"admin_echo"`)) && !slices.Contains(auth.TokenInfoFromContext(r.Context()).Scopes, "admin") {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope="mcp admin", resource_metadata=%q, error_description="admin_echo needs the admin scope"`, meta))
			http.Error(w, "insufficient scope", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// countInitializes counts the initialize requests h gets.
func countInitializes(n *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := peekBody(r)
		if bytes.Contains(body, []byte(`"method":"initialize"`)) {
			n.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}
