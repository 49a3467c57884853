package mcpsse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Headers of the Streamable HTTP transport.
const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "Mcp-Protocol-Version"
)

// upstreamDeleteTimeout bounds the DELETE that ends an upstream session, so
// that ending sessions on shutdown stays prompt with a dead upstream.
const upstreamDeleteTimeout = 3 * time.Second

// upstreamClient sends a store's sessions' messages to the upstream MCP
// server. Its transport is shared by every session of the store, so their
// requests share connections: one multiplexed connection over HTTP/2,
// h2c included (see upstreamTransport).
type upstreamClient struct {
	url       *url.URL
	transport *upstreamTransport
	client    *http.Client
}

func newUpstreamClient(u *url.URL) *upstreamClient {
	t := newUpstreamTransport()
	return &upstreamClient{
		url:       u,
		transport: t,
		client: &http.Client{
			Transport: t,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

func (c *upstreamClient) close() { c.transport.shutdown() }

// do sends req and waits at most headerTimeout for the response headers;
// the body may then take as long as the request's context allows. The
// returned body must be closed.
func (c *upstreamClient) do(req *http.Request, headerTimeout time.Duration) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(headerTimeout, func() { cancel(errHeaderTimeout) })
	resp, err := c.client.Do(req.WithContext(ctx))
	timer.Stop()
	if err != nil {
		cause := context.Cause(ctx)
		cancel(nil)
		if errors.Is(cause, errHeaderTimeout) {
			return nil, fmt.Errorf("%s %s: %w (%v)", req.Method, c.url.Redacted(), errHeaderTimeout, headerTimeout)
		}
		return nil, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// newRequest builds a request to the upstream URL with the session's
// headers. onWritten, if not nil, runs once the request has been written.
func (c *upstreamClient) newRequest(ctx context.Context, method string, body []byte, header http.Header, onWritten func()) (*http.Request, error) {
	if onWritten != nil {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { onWritten() },
		})
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("building upstream request: %v", err)
	}
	req.Header = header
	return req, nil
}

// Request headers that are not passed upstream: hop-by-hop headers, those
// this gateway sets itself, and those that describe the client's browser
// context, which the gateway checks itself and which the upstream, reached
// under its own host name, would misjudge.
var droppedHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Alt-Svc",
	"Content-Length", "Content-Type", "Accept", "Accept-Encoding", "Last-Event-Id",
	headerSessionID, headerProtocolVersion,
	"Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-User",
}

// forwardedHeader returns the headers of a client request as they go
// upstream, the way reverse_proxy sends them: hop-by-hop headers removed,
// X-Forwarded-For, -Proto and -Host set, and the prior values of these
// kept only when the client is a trusted proxy.
func forwardedHeader(r *http.Request) http.Header {
	h := r.Header.Clone()
	for _, f := range h.Values("Connection") {
		for name := range strings.SplitSeq(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range droppedHeaders {
		h.Del(name)
	}

	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	clientIP, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		clientIP = ""
	}
	clientIP, _, _ = strings.Cut(clientIP, "%")
	prior := strings.Join(h.Values("X-Forwarded-For"), ", ")
	switch {
	case trusted && prior != "" && clientIP != "":
		h.Set("X-Forwarded-For", prior+", "+clientIP)
	case trusted && prior != "":
		h.Set("X-Forwarded-For", prior)
	case clientIP != "":
		h.Set("X-Forwarded-For", clientIP)
	default:
		h.Del("X-Forwarded-For")
	}
	if !trusted || h.Get("X-Forwarded-Proto") == "" {
		proto := "https"
		if r.TLS == nil {
			proto = "http"
		}
		h.Set("X-Forwarded-Proto", proto)
	}
	if !trusted || h.Get("X-Forwarded-Host") == "" {
		h.Set("X-Forwarded-Host", r.Host)
	}
	return h
}
