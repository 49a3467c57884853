package mcpsse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Protected-resource metadata (RFC 9728): a protected upstream's document,
// served for the gateway's own URLs with resource naming the URL clients
// connect to, so that their authorization server issues tokens for it.

const (
	// wellKnownResource is where RFC 9728 puts a resource's metadata:
	// this path, then the resource's own.
	wellKnownResource = "/.well-known/oauth-protected-resource"
	// metadataTTL is how long the upstream's document is kept.
	metadataTTL = 5 * time.Minute
	// maxMetadataSize bounds the upstream's document.
	maxMetadataSize = 64 << 10
)

// metadata returns the upstream's protected-resource metadata, fetched at
// most every metadataTTL: from the URL the upstream's challenge names, if
// on the upstream's own origin, else from the well-known URLs for the
// upstream's endpoint and for its origin.
func (g *guard) metadata(ctx context.Context, timeout time.Duration) (map[string]json.RawMessage, error) {
	g.mu.Lock()
	if time.Now().Before(g.metadataUntil) {
		defer g.mu.Unlock()
		return g.metadataDoc, nil
	}
	challenge := g.challenge
	g.mu.Unlock()
	var errs []error
	for _, u := range metadataLocations(g.up.url, challenge) {
		doc, err := g.fetchMetadata(ctx, u, timeout)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		g.mu.Lock()
		g.metadataDoc, g.metadataUntil = doc, time.Now().Add(metadataTTL)
		g.mu.Unlock()
		return doc, nil
	}
	return nil, errors.Join(errs...)
}

// metadataLocations lists where an upstream's metadata may be, best first.
func metadataLocations(upstream *url.URL, challenge string) []string {
	var out []string
	params, _ := bearerParams(challenge)
	for _, p := range params {
		if u, err := url.Parse(p.value); p.key == "resource_metadata" && err == nil && u.Scheme == upstream.Scheme && u.Host == upstream.Host {
			out = append(out, u.String())
		}
	}
	origin := upstream.Scheme + "://" + upstream.Host
	if p := strings.TrimSuffix(upstream.EscapedPath(), "/"); p != "" {
		out = append(out, origin+wellKnownResource+p)
	}
	return append(out, origin+wellKnownResource)
}

// fetchMetadata fetches one metadata document and checks that it is one.
func (g *guard) fetchMetadata(ctx context.Context, u string, timeout time.Duration) (map[string]json.RawMessage, error) {
	resp, err := g.up.do(ctx, http.MethodGet, u, nil, http.Header{"Accept": {"application/json"}}, nil, timeout)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	var doc map[string]json.RawMessage
	if len(body) > maxMetadataSize || json.Unmarshal(body, &doc) != nil || doc["authorization_servers"] == nil {
		return nil, fmt.Errorf("GET %s: no protected-resource metadata with authorization_servers", u)
	}
	return doc, nil
}

// isMetadataPath reports whether path asks for the metadata of this
// handler's stream endpoint: in RFC 9728's form for the stream's path, as
// the client sees it (which may have more in front, under handle_path), or
// for the origin.
func (h *Handler) isMetadataPath(path string) bool {
	return path == wellKnownResource || strings.HasPrefix(path, wellKnownResource+"/") && strings.HasSuffix(path, h.streamPath)
}

// serveMetadata answers with the upstream's metadata for the URL clients
// connect to. A request for it while the upstream asks for no
// authorization goes to the next handler.
func (h *Handler) serveMetadata(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	timeout := h.cfg.upstreamTimeout
	if protected, _ := h.store.guard.protection(r.Context(), timeout); !protected {
		return next.ServeHTTP(w, r)
	}
	// Metadata is public, for pages on any origin (RFC 9728 §3.1).
	w.Header().Set("Access-Control-Allow-Origin", "*")
	switch {
	case isPreflight(r):
		return answerPreflight(w, r, http.MethodGet)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", http.MethodGet)
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("%s not allowed for metadata", r.Method))
	}
	doc, err := h.store.guard.metadata(r.Context(), timeout)
	if err != nil {
		return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("fetching the upstream's protected-resource metadata: %w", err))
	}
	out := maps.Clone(doc)
	out["resource"], _ = json.Marshal(h.resourceURL(r))
	body, err := json.Marshal(out)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(body)
	return err
}

// resourceURL is the URL clients open this handler's stream at: public_url
// if set, else the request's scheme and host (as trusted proxies forward
// them) with the stream's path as the client asked for it, before any
// rewrite.
func (h *Handler) resourceURL(r *http.Request) string {
	if h.PublicURL != "" {
		return h.PublicURL
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			scheme = p
		}
		if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
			host = fh
		}
	}
	return scheme + "://" + host + h.originalStreamPath(r)
}

// originalStreamPath is the stream endpoint's path as the client sees it,
// read from the path of a request to either endpoint or for the metadata.
func (h *Handler) originalStreamPath(r *http.Request) string {
	p := r.URL.EscapedPath()
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		p = orig.URL.EscapedPath()
	}
	switch {
	case strings.HasSuffix(p, "/sse") && !strings.HasPrefix(p, wellKnownResource+"/"):
		return p
	case strings.HasSuffix(p, "/message"):
		return strings.TrimSuffix(p, "message") + "sse"
	case strings.HasPrefix(p, wellKnownResource+"/") && strings.HasSuffix(p, "/sse"):
		return strings.TrimPrefix(p, wellKnownResource)
	}
	return h.streamPath
}

// metadataURL is where a client finds the metadata of resource, as RFC
// 9728 puts it.
func metadataURL(resource string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return resource
	}
	return u.Scheme + "://" + u.Host + wellKnownResource + u.EscapedPath()
}
