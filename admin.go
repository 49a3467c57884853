package mcpsse

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/google/uuid"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves the sessions of every mcp_sse handler on Caddy's admin
// endpoint:
//
//	GET    /mcp_sse/sessions       lists them, oldest first
//	GET    /mcp_sse/sessions/<id>  shows one
//	DELETE /mcp_sse/sessions/<id>  ends one, upstream DELETE included
//
// For a handler that shares its sessions in a cluster, the list holds
// every session of the cluster, with the instance that holds each one's
// stream; a session of the cluster can be shown and ended from any
// instance.
//
// Caddy loads it with the admin endpoint; it has no configuration.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mcp_sse",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

const adminSessionsPath = "/mcp_sse/sessions"

// Routes returns the admin routes of the sessions API.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: adminSessionsPath, Handler: caddy.AdminHandlerFunc(a.serveList)},
		{Pattern: adminSessionsPath + "/", Handler: caddy.AdminHandlerFunc(a.serveSession)},
	}
}

// sessionInfo is one session as the admin API shows it.
type sessionInfo struct {
	ID               string    `json:"id"`
	Handler          string    `json:"handler,omitempty"`
	Upstream         string    `json:"upstream"`
	Prefix           string    `json:"prefix"`
	RemoteAddr       string    `json:"remote_addr"`
	User             string    `json:"user,omitempty"`
	Created          time.Time `json:"created"`
	AgeSeconds       float64   `json:"age_seconds"`
	MessagesSent     uint64    `json:"messages_sent"`
	MessagesReceived uint64    `json:"messages_received"`
	MessagesInFlight int       `json:"messages_in_flight"`
	StreamAttached   bool      `json:"stream_attached"`
	UpstreamSession  bool      `json:"upstream_session"`
	// Instance holds the session's stream, in a cluster.
	Instance string `json:"instance,omitempty"`
}

func (s *session) info() sessionInfo {
	s.mu.Lock()
	hasUpstream, inFlight := s.upstreamID != "", s.inFlight
	s.mu.Unlock()
	info := sessionInfo{
		ID:               s.id,
		Handler:          s.store.name,
		Upstream:         s.store.upstream.url.Redacted(),
		Prefix:           s.store.prefix,
		RemoteAddr:       s.remote,
		User:             s.user,
		Created:          s.created,
		AgeSeconds:       time.Since(s.created).Seconds(),
		MessagesSent:     s.sent.Load(),
		MessagesReceived: s.received.Load(),
		MessagesInFlight: inFlight,
		StreamAttached:   s.hasStream(),
		UpstreamSession:  hasUpstream,
	}
	if n := s.store.node; n != nil && info.StreamAttached {
		info.Instance = n.id
	}
	return info
}

// allSessions returns the sessions of every handler as the admin API
// shows them: of a cluster, every session Redis holds, or while it cannot
// be reached, those of this instance.
func allSessions() []sessionInfo {
	var all []sessionInfo
	stores.Range(func(_, v any) bool {
		st := v.(*sessionStore)
		if st.node != nil {
			if infos, err := st.node.sessionInfos(); err == nil {
				all = append(all, infos...)
				return true
			}
		}
		for _, s := range st.all() {
			all = append(all, s.info())
		}
		return true
	})
	return all
}

// findSession returns the session with the given ID, of any handler: in a
// cluster, this instance's copy of it.
func findSession(id string) *session {
	var found *session
	stores.Range(func(_, v any) bool {
		st := v.(*sessionStore)
		found = st.get(id)
		if found == nil && st.node != nil {
			found, _ = st.fetch(id)
		}
		return found == nil
	})
	return found
}

func (AdminAPI) serveList(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, r, http.MethodGet)
	}
	infos := allSessions()
	slices.SortFunc(infos, func(a, b sessionInfo) int { return a.Created.Compare(b.Created) })
	if infos == nil {
		infos = []sessionInfo{}
	}
	return writeJSON(w, infos)
}

func (AdminAPI) serveSession(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(r.URL.Path, adminSessionsPath+"/")
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		return methodNotAllowed(w, r, http.MethodGet+", "+http.MethodDelete)
	}
	if err := uuid.Validate(id); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("session ID %q: %w", id, err)}
	}
	sess := findSession(id)
	if sess == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no session %s", id)}
	}
	if r.Method == http.MethodGet {
		if sess.store.node != nil {
			defer sess.store.dropIfIdle(sess) // a copy made to show it
		}
		return writeJSON(w, sess.info())
	}
	sess.endAlone(reasonAdmin)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) error {
	w.Header().Set("Allow", allow)
	return caddy.APIError{
		HTTPStatus: http.StatusMethodNotAllowed,
		Err:        errors.New(r.Method + " not allowed"),
	}
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}
