// Package floor holds the Caddy modules that only the benchmark's Caddy
// build links in: bench_hold, the least a Caddy handler can do to hold an
// HTTP+SSE stream, which is the floor the gateway's memory per session is
// measured against, and an admin route that reports the Go runtime's
// memory. The plugin never imports it.
package floor

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Hold{})
	httpcaddyfile.RegisterHandlerDirective("bench_hold", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("bench_hold", httpcaddyfile.Before, "respond")
}

// defaultPingInterval is mcp_sse's default, so that both ping alike.
const defaultPingInterval = 15 * time.Second

// Hold answers every GET with an event stream that announces an endpoint
// and then carries only keep-alive pings, by default on the same grid as
// mcp_sse's, until the client leaves or the server stops. It keeps no
// session: what it costs per stream is what Caddy and net/http cost, with
// the pings. A POST, as a client sends its messages, is read and answered
// 202 Accepted, and nothing else is done with it: what Caddy costs to take
// the messages that set a session up, before it idles.
type Hold struct {
	// PingInterval is the time between two pings of a stream. Default: 15s.
	PingInterval caddy.Duration `json:"ping_interval,omitempty"`
	// PingPhase sets what a stream's ping phase follows: "connection",
	// mcp_sse's grid, where the streams of one connection ping together;
	// or "stream", where each stream pings at a moment of its own, spread
	// over the interval. Default: connection.
	PingPhase string `json:"ping_phase,omitempty"`

	// stopping is closed when the config stops, ending every stream.
	stopping chan struct{}
}

// CaddyModule returns the Caddy module information.
func (Hold) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bench_hold",
		New: func() caddy.Module { return new(Hold) },
	}
}

// Provision sets the default ping interval and phase, and ends every
// stream on Caddy's stopping event: Caddy's grace period is eternal by
// default, and a stream that outlived its server would hold the shutdown.
func (h *Hold) Provision(ctx caddy.Context) error {
	if h.PingInterval == 0 {
		h.PingInterval = caddy.Duration(defaultPingInterval)
	}
	if h.PingPhase == "" {
		h.PingPhase = phaseConnection
	}
	h.stopping = make(chan struct{})
	app, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("getting events app: %v", err)
	}
	var once sync.Once
	return app.(*caddyevents.App).On("stopping", eventHandler(func() {
		once.Do(func() { close(h.stopping) })
	}))
}

// What a stream's ping phase follows (see Hold.PingPhase).
const (
	phaseConnection = "connection"
	phaseStream     = "stream"
)

// Validate checks the ping interval and phase.
func (h *Hold) Validate() error {
	if h.PingInterval <= 0 {
		return fmt.Errorf("ping_interval must be positive, got %v", time.Duration(h.PingInterval))
	}
	return checkPingPhase(h.PingPhase)
}

// checkPingPhase refuses a ping phase that is neither of the two.
func checkPingPhase(phase string) error {
	if phase != phaseConnection && phase != phaseStream {
		return fmt.Errorf("ping_phase must be %s or %s, got %q", phaseConnection, phaseStream, phase)
	}
	return nil
}

// endpointEvent is the event every stream opens with; its session is
// never looked up.
var endpointEvent = []byte("event: endpoint\ndata: /message?sessionId=x\n\n")

var pingComment = []byte(": ping\n\n")

// maxMessage bounds the body of a POST that Hold reads.
const maxMessage = 1 << 20

// ServeHTTP holds a GET's stream and takes a POST; it refuses every other
// method.
func (h *Hold) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxMessage)); err != nil {
			return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading the message: %w", err))
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	default:
		w.Header().Set("Allow", "GET, POST")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("bench_hold takes GET and POST only, not %s", r.Method))
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if !write(w, rc, endpointEvent) {
		return nil
	}
	interval := time.Duration(h.PingInterval)
	conn := connHash(r)
	if h.PingPhase == phaseStream {
		conn = rand.Uint64()
	}
	ping := time.NewTimer(untilPing(conn, interval))
	defer ping.Stop()
	for {
		select {
		case <-ping.C:
			if !write(w, rc, pingComment) {
				return nil
			}
			ping.Reset(untilPing(conn, interval))
		case <-r.Context().Done():
			return nil
		case <-h.stopping:
			return nil
		}
	}
}

// write writes p and flushes it; false means the client is gone.
func write(w http.ResponseWriter, rc *http.ResponseController, p []byte) bool {
	if _, err := w.Write(p); err != nil {
		return false
	}
	return rc.Flush() == nil
}

// pingEpoch is the start of every stream's ping grid.
var pingEpoch = time.Now()

// connHash names the client's connection, which sets the phase of its
// streams' pings.
func connHash(r *http.Request) uint64 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, r.RemoteAddr)
	return h.Sum64()
}

// untilPing returns the time to a stream's next ping. It is mcp_sse's
// grid, copied: pings fall on a grid of the interval whose phase depends
// on the client's connection only, so that the streams of one HTTP/2
// connection share their writes and connections spread their pings over
// the interval. A floor that pinged otherwise would cost otherwise.
func untilPing(conn uint64, interval time.Duration) time.Duration {
	phase := time.Duration(conn % uint64(interval))
	return interval - (time.Since(pingEpoch)+interval-phase)%interval
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
	_ caddy.Provisioner           = (*Hold)(nil)
	_ caddy.Validator             = (*Hold)(nil)
	_ caddyhttp.MiddlewareHandler = (*Hold)(nil)
	_ caddyfile.Unmarshaler       = (*Hold)(nil)
)
