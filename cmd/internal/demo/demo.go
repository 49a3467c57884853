// Package demo is a small MCP server that speaks Streamable HTTP, built on
// the official Go SDK, for trying the gateway out and for its tests. It is
// compiled into cmd/caddy as the `mcp_demo` handler, never into the plugin.
package demo

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("mcp_demo", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		m := new(Handler)
		return m, m.UnmarshalCaddyfile(h.Dispenser)
	})
	httpcaddyfile.RegisterDirectiveOrder("mcp_demo", httpcaddyfile.Before, "file_server")
}

// Handler serves the demo MCP server at every path it is routed. It takes
// no settings.
type Handler struct {
	mcp http.Handler
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_demo",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the MCP server.
func (h *Handler) Provision(caddy.Context) error {
	h.mcp = NewHandler()
	return nil
}

// ServeHTTP serves the MCP server; it never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.mcp.ServeHTTP(w, r)
	return nil
}

// UnmarshalCaddyfile accepts `mcp_demo` with no arguments or block.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("mcp_demo takes no arguments")
	}
	return nil
}

// NewHandler returns the demo server's Streamable HTTP handler.
func NewHandler() http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return NewServer() }, nil)
}

// NewServer returns the demo MCP server with its tools:
//   - echo returns its text;
//   - add returns the sum of a and b;
//   - countdown sends a progress notification for each of its steps,
//     interval_ms apart, then returns "liftoff";
//   - sleep waits for ms milliseconds;
//   - ask_model asks the client's model (sampling) and returns its answer.
func NewServer() *mcp.Server { return NewServerWith(nil) }

// NewServerWith returns the demo server with opts.
func NewServerWith(opts *mcp.ServerOptions) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcp-sse-demo", Version: "1.0.0"}, opts)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Returns its text."}, echo)
	mcp.AddTool(s, &mcp.Tool{Name: "add", Description: "Adds two numbers."}, add)
	mcp.AddTool(s, &mcp.Tool{Name: "countdown", Description: "Reports progress for each step, then returns."}, countdown)
	mcp.AddTool(s, &mcp.Tool{Name: "sleep", Description: "Waits for ms milliseconds."}, sleep)
	mcp.AddTool(s, &mcp.Tool{Name: "ask_model", Description: "Asks the client's model a question."}, askModel)
	return s
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

type echoArgs struct {
	Text string `json:"text"`
}

func echo(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
	return text(in.Text), nil, nil
}

type addArgs struct {
	A float64 `json:"a"`
	B float64 `json:"b"`
}

func add(_ context.Context, _ *mcp.CallToolRequest, in addArgs) (*mcp.CallToolResult, any, error) {
	return text(fmt.Sprint(in.A + in.B)), nil, nil
}

type countdownArgs struct {
	Steps      int `json:"steps"`
	IntervalMS int `json:"interval_ms,omitempty"`
}

func countdown(ctx context.Context, req *mcp.CallToolRequest, in countdownArgs) (*mcp.CallToolResult, any, error) {
	token := req.Params.GetProgressToken()
	for i := 1; i <= in.Steps && token != nil; i++ {
		err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
			ProgressToken: token,
			Progress:      float64(i),
			Total:         float64(in.Steps),
			Message:       fmt.Sprintf("step %d of %d", i, in.Steps),
		})
		if err != nil {
			return nil, nil, err
		}
		if err := wait(ctx, time.Duration(in.IntervalMS)*time.Millisecond); err != nil {
			return nil, nil, err
		}
	}
	return text("liftoff"), nil, nil
}

type sleepArgs struct {
	MS int `json:"ms"`
}

func sleep(ctx context.Context, _ *mcp.CallToolRequest, in sleepArgs) (*mcp.CallToolResult, any, error) {
	if err := wait(ctx, time.Duration(in.MS)*time.Millisecond); err != nil {
		return nil, nil, err
	}
	return text(fmt.Sprintf("slept %dms", in.MS)), nil, nil
}

// wait waits for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type askArgs struct {
	Question string `json:"question"`
}

func askModel(ctx context.Context, req *mcp.CallToolRequest, in askArgs) (*mcp.CallToolResult, any, error) {
	res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{
		MaxTokens: 100,
		Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: in.Question}}},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sampling: %w", err)
	}
	answer, ok := res.Content.(*mcp.TextContent)
	if !ok {
		return nil, nil, fmt.Errorf("sampling: the model answered with %T, not text", res.Content)
	}
	return text(answer.Text), nil, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
