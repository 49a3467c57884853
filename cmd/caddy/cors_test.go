package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestCrossOriginPagesMayUseTheEndpoints asks as a browser does for a page
// on an allowed origin: the preflights of both endpoints are answered, and
// the stream and every answer to a POST, errors included, carry
// Access-Control-Allow-Origin and Vary: Origin. A foreign origin's
// preflight gets 403, as its requests do.
func TestCrossOriginPagesMayUseTheEndpoints(t *testing.T) {
	const page = "https://app.example.com"
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "allowed_origins "+page))

	preflight := func(path, origin, method, headers string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, gatewayURL+path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		if headers != "" {
			req.Header.Set("Access-Control-Request-Headers", headers)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		path, method, headers, wantHeaders string
	}{
		// A GET with headers of the page's own (an OAuth client's
		// Authorization, a client that sets content-type) is preflighted.
		{"/sse", "GET", "content-type,accept,last-event-id", "content-type,accept,last-event-id"},
		{"/message", "POST", "content-type,authorization,mcp-protocol-version", "content-type,authorization,mcp-protocol-version"},
		{"/message", "POST", "", "Accept, Authorization, Content-Type, Last-Event-ID, Mcp-Protocol-Version"},
	} {
		resp := preflight(tc.path, page, tc.method, tc.headers)
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != page ||
			h.Get("Access-Control-Allow-Methods") != tc.method || h.Get("Access-Control-Allow-Headers") != tc.wantHeaders ||
			h.Get("Access-Control-Max-Age") == "" || !varies(h, "Origin") {
			t.Errorf("preflight of %s %s: %s %v", tc.method, tc.path, resp.Status, h)
		}
	}
	if resp := preflight("/message", "https://evil.example", "POST", "content-type"); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a foreign origin's preflight: %s %v, want 403 without Access-Control-Allow-Origin", resp.Status, resp.Header)
	}

	stream := openRaw(t, nil, gatewayURL+"/sse", http.Header{"Origin": {page}})
	if h := stream.resp.Header; h.Get("Access-Control-Allow-Origin") != page || !varies(h, "Origin") {
		t.Errorf("the stream's headers: %v", h)
	}
	for _, tc := range []struct {
		endpoint, body string
		status         int
	}{
		{stream.endpoint, initializeRequest, http.StatusAccepted},
		{stream.endpoint, `{"jsonrpc":"2.0","id":`, http.StatusBadRequest},
		{"/message?sessionId=00000000-0000-4000-8000-000000000000", initializeRequest, http.StatusNotFound},
	} {
		req, _ := http.NewRequest(http.MethodPost, gatewayURL+tc.endpoint, strings.NewReader(tc.body))
		req.Header.Set("Origin", page)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Access-Control-Allow-Origin") != page || !varies(resp.Header, "Origin") {
			t.Errorf("POST %.30s: %s %v, want %d readable by the page", tc.body, resp.Status, resp.Header, tc.status)
		}
	}
}

// varies reports whether h's Vary names the header name.
func varies(h http.Header, name string) bool {
	for _, v := range h.Values("Vary") {
		for field := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(field), name) {
				return true
			}
		}
	}
	return false
}
