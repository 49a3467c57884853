// Package mcpsse is a Caddy HTTP handler that serves MCP's HTTP+SSE
// transport (protocol revision 2024-11-05) at the edge and relays every
// session to an upstream MCP server that speaks Streamable HTTP.
package mcpsse

import (
	"context"
	"fmt"
	"net/url"
	"strings"
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
	defaultUpstreamTimeout = 30 * time.Second
)

// Handler serves MCP's HTTP+SSE transport: `GET <prefix>/sse` opens a
// session's event stream, `POST <prefix>/message?sessionId=<id>` takes the
// session's JSON-RPC messages. Each session is bridged to its own session on
// an upstream MCP server that speaks Streamable HTTP; everything the upstream
// sends back reaches the session's stream in order. Requests to other paths
// pass to the next handler.
//
// Sessions belong to the handler's upstream and prefix, not to one config:
// a config reload that keeps both keeps every session and its stream.
type Handler struct {
	// The URL of the upstream MCP server's Streamable HTTP endpoint, with
	// the http or https scheme. Required.
	Upstream string `json:"upstream,omitempty"`

	// A path prefix for the two endpoints: the handler serves <prefix>/sse
	// and <prefix>/message. It must start with a slash and not end with
	// one. Default: "" (serve /sse and /message).
	Prefix string `json:"prefix,omitempty"`

	// How long a stream may go without a write before the handler sends
	// a keep-alive comment (`: ping`). Keep it well under the idle timeouts
	// of clients and load balancers (many drop a stream silent for 300s)
	// and under the server's write idle timeout. Default: 15s.
	PingInterval caddy.Duration `json:"ping_interval,omitempty"`

	// How long a stream may live. When it is reached the stream ends
	// cleanly and its session ends with it. Default: 0, no limit.
	MaxLifetime caddy.Duration `json:"max_lifetime,omitempty"`

	upstreamURL *url.URL
	storeKey    string
	store       *sessionStore
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_sse",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, takes this handler's reference to the session
// store it shares with earlier configs, and subscribes to Caddy's stopping
// event so that a shutdown ends every stream at once.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.PingInterval == 0 {
		h.PingInterval = caddy.Duration(defaultPingInterval)
	}
	u, err := parseUpstream(h.Upstream)
	if err != nil {
		return err
	}
	h.upstreamURL = u
	if err := checkPrefix(h.Prefix); err != nil {
		return err
	}

	eventsAppIface, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("getting events app: %v", err)
	}
	eventsApp := eventsAppIface.(*caddyevents.App)

	key := storeKey(u, h.Prefix)
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newSessionStore(u, h.logger), nil
	})
	if err != nil {
		return fmt.Errorf("loading session store: %v", err)
	}
	h.storeKey = key
	h.store = val.(*sessionStore)
	h.store.configure(h.settings(), h.logger)

	return eventsApp.On("stopping", onStopping(h.store))
}

// Validate checks settings that Provision cannot default.
func (h *Handler) Validate() error {
	if h.PingInterval < 0 {
		return fmt.Errorf("ping_interval must not be negative, got %v", time.Duration(h.PingInterval))
	}
	if h.MaxLifetime < 0 {
		return fmt.Errorf("max_lifetime must not be negative, got %v", time.Duration(h.MaxLifetime))
	}
	return nil
}

// Cleanup releases this handler's reference to its session store. When no
// config holds the store any more (the handler was removed by a reload),
// the store ends its sessions. It is safe to call more than once, and after
// a Provision that failed.
func (h *Handler) Cleanup() error {
	if h.store == nil {
		return nil
	}
	h.store = nil
	_, err := stores.Delete(h.storeKey)
	return err
}

// settings returns the handler's settings as the streams use them.
func (h *Handler) settings() *settings {
	return &settings{
		pingInterval:    time.Duration(h.PingInterval),
		maxLifetime:     time.Duration(h.MaxLifetime),
		upstreamTimeout: defaultUpstreamTimeout,
		changed:         make(chan struct{}),
	}
}

// parseUpstream checks that raw is an absolute http or https URL.
func parseUpstream(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("upstream is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing upstream %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("upstream %q: missing host", raw)
	}
	if u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("upstream %q: must have no fragment and no user info", raw)
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

// onStopping ends every session of store when Caddy exits. On a reload
// Caddy emits the same event for the old config, but the sessions live on
// in the new one.
func onStopping(store *sessionStore) caddyevents.Handler {
	return stoppingHandler(func() {
		if caddy.Exiting() {
			store.endAll(reasonShutdown)
		}
	})
}

// stoppingHandler adapts a function to caddyevents.Handler.
type stoppingHandler func()

// Handle runs the function.
func (f stoppingHandler) Handle(context.Context, caddy.Event) error {
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
