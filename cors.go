package mcpsse

import (
	"net/http"
	"strings"
)

// Who may use the endpoints from a browser, and the CORS answers that let
// a page on an allowed origin read the stream and its POSTs' answers.

// corsRequestHeaders are the request headers a preflight allows when the
// browser names none: those MCP clients send.
const corsRequestHeaders = "Accept, Authorization, Content-Type, Last-Event-ID, Mcp-Protocol-Version"

// corsMaxAge is how long, in seconds, a browser may reuse a preflight's
// answer: two hours, the most Chromium takes.
const corsMaxAge = "7200"

// originAllowed reports whether r may use the endpoints: it carries no
// Origin header, or its own origin, or one of AllowedOrigins.
func (h *Handler) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	if strings.EqualFold(origin, scheme+"://"+r.Host) {
		return true
	}
	for _, allowed := range h.AllowedOrigins {
		if strings.EqualFold(origin, allowed) {
			return true
		}
	}
	return false
}

// allowOrigin lets the page that sent r read the answer, once r's origin
// is known to be allowed.
func allowOrigin(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" {
		w.Header().Set("Access-Control-Allow-Origin", origin)
	}
}

// isPreflight reports whether r is a browser's CORS preflight.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// answerPreflight answers a preflight for an endpoint that takes method.
// It allows the request headers the browser asks for: the gateway passes
// a client's headers upstream as they are, and the origin is allowed.
func answerPreflight(w http.ResponseWriter, r *http.Request, method string) error {
	h := w.Header()
	h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", method)
	headers := r.Header.Get("Access-Control-Request-Headers")
	if strings.TrimSpace(headers) == "" {
		headers = corsRequestHeaders
	}
	h.Set("Access-Control-Allow-Headers", headers)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
