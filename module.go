// Package mcpsse is a Caddy HTTP handler that serves MCP's HTTP+SSE
// transport (protocol revision 2024-11-05) at the edge and relays every
// session to an upstream MCP server that speaks Streamable HTTP.
package mcpsse

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("mcp_sse", parseCaddyfile)
	// Right after encode, as Mercure does: the stream must be served before
	// handlers such as respond or file_server could answer its path, and
	// auth directives still run first.
	httpcaddyfile.RegisterDirectiveOrder("mcp_sse", httpcaddyfile.After, "encode")
}

// Default values of the handler's settings.
const (
	defaultPingInterval    = 15 * time.Second
	defaultMaxMessageSize  = 4 << 20
	defaultSendTimeout     = 10 * time.Second
	defaultQueueSize       = 16
	defaultUpstreamTimeout = 30 * time.Second
	defaultResumeWindow    = 60 * time.Second
	defaultMaxInFlight     = 64
)

// Handler serves MCP's HTTP+SSE transport: `GET <prefix>/sse` opens a
// session's event stream, `POST <prefix>/message?sessionId=<id>` takes the
// session's JSON-RPC messages. Each session is bridged to its own session on
// an upstream MCP server that speaks Streamable HTTP; everything the upstream
// sends back reaches the session's stream in order. Requests to other paths
// pass to the next handler.
//
// Sessions belong to the handler, known across configs by its name,
// upstream and prefix: a reload that keeps all three keeps every session
// and its stream, and applies the reloaded settings once the new config
// runs. No two handlers of one config share sessions unless both name the
// same name.
type Handler struct {
	// The name that tells this handler's sessions from those of every
	// other mcp_sse handler, across reloads. Two handlers of one config
	// with the same upstream and prefix need different names; two with
	// the same name, upstream and prefix share their sessions, which
	// only makes sense with the same settings, so that is required.
	// Default: "", the handler is known by its upstream and prefix alone.
	Name string `json:"name,omitempty"`

	// The URL of the upstream MCP server's Streamable HTTP endpoint, with
	// the http or https scheme. Required.
	Upstream string `json:"upstream,omitempty"`

	// A path prefix for the two endpoints: the handler serves <prefix>/sse
	// and <prefix>/message. It must start with a slash and not end with
	// one. Default: "" (serve /sse and /message).
	Prefix string `json:"prefix,omitempty"`

	// How often the handler sends a keep-alive comment (`: ping`) on each
	// stream, busy or not. Keep it well under the idle timeouts of clients
	// and load balancers (many drop a stream silent for 300s) and under the
	// server's write idle timeout. The streams one HTTP/2 connection
	// carries ping together, so that their pings share a write. Default:
	// 15s.
	PingInterval caddy.Duration `json:"ping_interval,omitempty"`

	// How long a stream may live. When it is reached the stream ends
	// cleanly; its session waits resume_window for the client to come
	// back. Default: 0, no limit.
	MaxLifetime caddy.Duration `json:"max_lifetime,omitempty"`

	// How long a session outlives its stream, holding the events it could
	// not deliver, for the client to re-attach (with Last-Event-ID, or as
	// the same authenticated user or credential). Past it, the session
	// ends. A negative value ends a session with its stream. Default: 60s.
	ResumeWindow caddy.Duration `json:"resume_window,omitempty"`

	// The largest message body taken, in bytes. A larger POST gets 413 and
	// is read no further than the limit. Default: 4 MiB.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	// The most sessions this handler holds at once. Past it, a new stream
	// gets 503 with Retry-After. Default: 0, no limit.
	MaxSessions int `json:"max_sessions,omitempty"`

	// The most messages of one session on their way upstream at once:
	// posted and not yet fully answered. Past it, a POST gets 429 with
	// Retry-After and a JSON-RPC error, and nothing of it is forwarded.
	// A session thus holds at most this many message bodies. Default: 64.
	MaxInFlight int `json:"max_in_flight,omitempty"`

	// Origins (scheme://host[:port]) allowed to use the endpoints besides
	// the request's own. A request whose Origin header is neither gets 403,
	// which guards browsers against DNS rebinding; requests without Origin
	// (non-browser clients) are allowed. Pages on an allowed origin get
	// CORS answers: preflights, and Access-Control-Allow-Origin on the
	// stream and on every answer. Default: none.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`

	// How long a client may take to accept an event. A client that does
	// not is disconnected and its session ends, instead of holding memory.
	// Default: 10s.
	SendTimeout caddy.Duration `json:"send_timeout,omitempty"`

	// How many events a session buffers for its stream before the relay of
	// upstream answers waits for the client; nothing is ever dropped.
	// Default: 16.
	QueueSize int `json:"queue_size,omitempty"`

	// How long to wait for the upstream's response headers. An answer that
	// streams may take longer once its headers are in. Default: 30s.
	UpstreamTimeout caddy.Duration `json:"upstream_timeout,omitempty"`

	// Turns off the upstream GET stream each session otherwise holds. That
	// stream carries what the upstream sends outside any request: list
	// changes, log messages, its own requests to the client. It costs an
	// upstream HTTP/2 stream (over HTTP/1.1, a connection) and about 24 KiB
	// of memory per session; an upstream that never sends such messages
	// does not need it. Default: false, each session holds the stream.
	DisableUpstreamStream bool `json:"disable_upstream_stream,omitempty"`

	// Which protocol revision sessions speak upstream. auto asks the
	// upstream with server/discover (again when its answer says it is
	// stale, at most every hour) and speaks 2026-07-28, without upstream
	// sessions, to an upstream that offers it, and otherwise initializes
	// an upstream session per client as the client initializes.
	// 2026-07-28 speaks only that revision: a client's initialize fails
	// with an upstream that does not offer it. 2025-11-25 always
	// initializes upstream sessions, for the revision the client asks for
	// (2024-11-05 to 2025-11-25), and never sends server/discover.
	// Clients see the same HTTP+SSE sessions either way. Default: auto.
	UpstreamProtocol string `json:"upstream_protocol,omitempty"`

	// The URL clients open the stream at (https://mcp.example.com/sse),
	// for an upstream that requires authorization: it is the resource in
	// the protected-resource metadata the handler serves, which clients
	// get tokens for, and names that metadata in the handler's 401 and
	// 403 answers. Set it when the gateway cannot tell that URL from the
	// request, as behind a proxy that is not a trusted proxy of Caddy's.
	// Default: the request's scheme and host, and the stream's path
	// before any rewrite.
	PublicURL string `json:"public_url,omitempty"`

	// Shares this handler's sessions with the same handler on other Caddy
	// instances, through Redis: any instance then takes any POST, and a
	// stream re-attaches on any instance. Every instance of a cluster
	// runs the same handler config. Default: none, sessions live in this
	// process only.
	Cluster *Cluster `json:"cluster,omitempty"`

	upstreamURL *url.URL
	streamPath  string // <prefix>/sse
	messagePath string // <prefix>/message
	cfg         *settings
	claim       *claim // this handler's identity in its config
	store       *sessionStore
	released    *atomic.Bool // Cleanup gave up the store
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_sse",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, claims the handler's identity in its config,
// takes this handler's reference to the session store it shares with
// earlier configs, and subscribes to Caddy's events: started makes this
// handler's settings the ones its sessions follow, stopping on exit ends
// every stream at once. Nothing that a running config uses changes here:
// Caddy may still reject this config.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.PingInterval == 0 {
		h.PingInterval = caddy.Duration(defaultPingInterval)
	}
	if h.MaxMessageSize == 0 {
		h.MaxMessageSize = defaultMaxMessageSize
	}
	if h.SendTimeout == 0 {
		h.SendTimeout = caddy.Duration(defaultSendTimeout)
	}
	if h.QueueSize == 0 {
		h.QueueSize = defaultQueueSize
	}
	if h.UpstreamTimeout == 0 {
		h.UpstreamTimeout = caddy.Duration(defaultUpstreamTimeout)
	}
	if h.ResumeWindow == 0 {
		h.ResumeWindow = caddy.Duration(defaultResumeWindow)
	}
	if h.MaxInFlight == 0 {
		h.MaxInFlight = defaultMaxInFlight
	}
	if h.UpstreamProtocol == "" {
		h.UpstreamProtocol = upstreamProtocolAuto
	}
	u, err := parseUpstream(h.Upstream)
	if err != nil {
		return err
	}
	h.upstreamURL = u
	if h.PublicURL != "" {
		if _, err := parseHTTPURL("public_url", h.PublicURL); err != nil {
			return err
		}
	}
	if err := checkPrefix(h.Prefix); err != nil {
		return err
	}
	h.streamPath, h.messagePath = h.Prefix+"/sse", h.Prefix+"/message"
	h.cfg = h.settings()

	eventsAppIface, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("getting events app: %v", err)
	}
	eventsApp := eventsAppIface.(*caddyevents.App)

	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}

	var shared *clusterSpec
	if h.Cluster != nil {
		if shared, err = h.Cluster.spec(); err != nil {
			return err
		}
	}
	key := storeKey(h.Name, u, h.Prefix, shared)
	if h.claim, err = claimIdentity(ctx, key, h); err != nil {
		return err
	}
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newSessionStore(h.Name, u, h.Prefix, h.cfg, shared), nil
	})
	if err != nil {
		return fmt.Errorf("loading session store: %v", err)
	}
	h.store = val.(*sessionStore)
	h.released = new(atomic.Bool)

	if err := eventsApp.On("started", eventHandler(func() { h.store.goLive(h.cfg) })); err != nil {
		return err
	}
	return eventsApp.On("stopping", eventHandler(func() {
		if caddy.Exiting() {
			h.store.shutdown()
			// Nothing uses them again; an upstream shutting down too (one
			// served by this Caddy, say) need not wait for their close.
			h.store.upstream.transport.CloseIdleConnections()
		}
	}))
}

// Validate checks settings that Provision cannot default.
func (h *Handler) Validate() error {
	if h.PingInterval < 0 {
		return fmt.Errorf("ping_interval must not be negative, got %v", time.Duration(h.PingInterval))
	}
	if h.MaxLifetime < 0 {
		return fmt.Errorf("max_lifetime must not be negative, got %v", time.Duration(h.MaxLifetime))
	}
	if h.MaxMessageSize < 0 || h.MaxSessions < 0 || h.QueueSize < 0 || h.MaxInFlight < 0 {
		return fmt.Errorf("max_message_size, max_sessions, max_in_flight and queue_size must not be negative")
	}
	if h.SendTimeout < 0 || h.UpstreamTimeout < 0 {
		return fmt.Errorf("send_timeout and upstream_timeout must not be negative")
	}
	switch h.UpstreamProtocol {
	case upstreamProtocolAuto, upstreamProtocolStateless, upstreamProtocolSession:
	default:
		return fmt.Errorf("upstream_protocol must be %s, %s or %s, got %q",
			upstreamProtocolAuto, upstreamProtocolStateless, upstreamProtocolSession, h.UpstreamProtocol)
	}
	for _, o := range h.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup releases this handler's identity in its config and its
// reference to its session store. When no config holds the store any more
// (the handler was removed by a reload, or Caddy stopped), the store ends
// its sessions. It is safe to call more than once, and after a Provision
// that failed. The handler keeps its store: requests the old server still
// serves in its grace period use it.
func (h *Handler) Cleanup() error {
	h.claim.release()
	h.claim = nil
	if h.released == nil || !h.released.CompareAndSwap(false, true) {
		return nil
	}
	_, err := stores.Delete(h.store.key)
	return err
}

// settings returns the handler's settings as the streams use them.
func (h *Handler) settings() *settings {
	return &settings{
		policy: policy{
			pingInterval:     time.Duration(h.PingInterval),
			maxLifetime:      time.Duration(h.MaxLifetime),
			sendTimeout:      time.Duration(h.SendTimeout),
			upstreamTimeout:  time.Duration(h.UpstreamTimeout),
			resumeWindow:     max(time.Duration(h.ResumeWindow), 0),
			maxMessageSize:   h.MaxMessageSize,
			queueSize:        h.QueueSize,
			maxSessions:      h.MaxSessions,
			maxInFlight:      h.MaxInFlight,
			upstreamStream:   !h.DisableUpstreamStream,
			upstreamProtocol: h.UpstreamProtocol,
		},
		logger: h.logger,
	}
}

// parseUpstream checks that raw is an absolute http or https URL.
func parseUpstream(raw string) (*url.URL, error) {
	return parseHTTPURL("upstream", raw)
}

// parseHTTPURL checks that raw, the value of the setting name, is an
// absolute http or https URL without user info or fragment.
func parseHTTPURL(name, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%s is required", name)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing %s %q: %v", name, raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s %q: scheme must be http or https", name, raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%s %q: missing host", name, raw)
	}
	if u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%s %q: must have no fragment and no user info", name, raw)
	}
	return u, nil
}

// checkPrefix checks that prefix is empty or a clean path without a
// trailing slash.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("prefix %q must start with a slash and not end with one", prefix)
	}
	if strings.ContainsAny(prefix, "?#") {
		return fmt.Errorf("prefix %q must be a path without query or fragment", prefix)
	}
	return nil
}

// checkOrigin checks that origin is a bare scheme://host[:port].
func checkOrigin(origin string) error {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("allowed origin %q must be scheme://host[:port]", origin)
	}
	return nil
}

// eventHandler adapts a function to caddyevents.Handler.
type eventHandler func()

// Handle runs the function.
func (f eventHandler) Handle(context.Context, caddy.Event) error {
	f()
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
