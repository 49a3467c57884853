package mcpsse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"slices"
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
// requests share connections: multiplexed connections over HTTP/2, h2c
// included (see upstreamTransport).
//
// Requests go to the transport itself, not through an http.Client: the
// gateway follows no redirect (a 3xx is the upstream's answer, relayed
// as it is) and keeps no cookies, and a Client would copy every request's
// headers for the redirects it might follow.
type upstreamClient struct {
	url       *url.URL
	rawURL    string // url, as requests take it
	transport *upstreamTransport
}

func newUpstreamClient(u *url.URL) *upstreamClient {
	return &upstreamClient{url: u, rawURL: u.String(), transport: newUpstreamTransport()}
}

func (c *upstreamClient) close() { c.transport.shutdown() }

// send sends a request to the upstream's URL, as do does.
func (c *upstreamClient) send(ctx context.Context, method string, body []byte, header http.Header, onWritten func(), headerTimeout time.Duration) (*http.Response, error) {
	return c.do(ctx, method, c.rawURL, body, header, onWritten, headerTimeout)
}

// do sends a request to rawURL with header, and waits at most
// headerTimeout for the response headers; the body may then take as long
// as ctx allows. onWritten, if not nil, runs once the request has been
// written. The returned body must be closed.
func (c *upstreamClient) do(ctx context.Context, method, rawURL string, body []byte, header http.Header, onWritten func(), headerTimeout time.Duration) (*http.Response, error) {
	// The request is made under its own context from the start: a copy
	// of it under another (WithContext) would be what a GET stream holds
	// for its life, besides the garbage every message would leave. It is
	// a scope, which keeps no map of the context net/http derives from
	// it. A trace goes in its values: a context that wraps a scope
	// would hide its AfterFunc from those derived from it, and the
	// context package would watch it with a goroutine of its own.
	rctx := newScope(ctx)
	if onWritten != nil {
		rctx.values = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { onWritten() },
		})
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, rawURL, rd)
	if err != nil {
		rctx.end()
		return nil, fmt.Errorf("building upstream request: %v", err)
	}
	if header != nil {
		req.Header = header
	}
	timer := time.AfterFunc(headerTimeout, func() { rctx.endWith(context.Canceled, errHeaderTimeout) })
	resp, err := c.transport.RoundTrip(req, body)
	timer.Stop()
	if err != nil {
		cause := rctx.Cause()
		rctx.end()
		if errors.Is(cause, errHeaderTimeout) {
			return nil, fmt.Errorf("%s %s: %w (%v)", method, req.URL.Redacted(), errHeaderTimeout, headerTimeout)
		}
		return nil, fmt.Errorf("%w: %s %s: %w", errUnreachable, method, req.URL.Redacted(), err)
	}
	resp.Body = &endOnClose{ReadCloser: resp.Body, request: rctx}
	return resp, nil
}

// endOnClose ends a request's context when its body is closed.
type endOnClose struct {
	io.ReadCloser
	request *scope
}

func (b *endOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.request.end()
	return err
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

// mediaType returns the media type of the Content-Type value ct, as
// mime.ParseMediaType does, without the map of parameters that makes for
// the bare types peers send most.
func mediaType(ct string) (string, error) {
	if ct == "application/json" || ct == "text/event-stream" {
		return ct, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	return mt, err
}

// forwardedHeader returns the headers of a client request as they go
// upstream, the way reverse_proxy sends them: hop-by-hop headers removed,
// X-Forwarded-For, -Proto and -Host set, and the prior values of these
// kept only when the client is a trusted proxy.
func forwardedHeader(r *http.Request) http.Header {
	h := keptHeader(r.Header)

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

// keptHeader copies the headers of in that go upstream, those neither in
// droppedHeaders nor named by its Connection header, into one map with
// room for the three X-Forwarded headers, their values in one array as
// http.Header.Clone keeps them: most of what a client sends is dropped,
// and a clone of it all grew its map for those three.
func keptHeader(in http.Header) http.Header {
	var hop []string
	for _, f := range in.Values("Connection") {
		for name := range strings.SplitSeq(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				hop = append(hop, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	kept := func(name string) bool { return !slices.Contains(droppedHeaders, name) && !slices.Contains(hop, name) }
	names, values := 0, 0
	for name, vv := range in {
		if kept(name) {
			names++
			values += len(vv)
		}
	}
	h := make(http.Header, names+3)
	all := make([]string, values)
	for name, vv := range in {
		if kept(name) {
			n := copy(all, vv)
			h[name] = all[:n:n]
			all = all[n:]
		}
	}
	return h
}

// headerList is a client's headers as they go upstream, kept for the
// session's later requests: name and value in turn, names canonical, a
// name with several values once for each. It holds about a third of what
// an http.Header of the same fields does (its map), for the session's
// life.
type headerList []string

// listHeader returns the fields of h as a headerList.
func listHeader(h http.Header) headerList {
	n := 0
	for _, vs := range h {
		n += 2 * len(vs)
	}
	if n == 0 {
		return nil
	}
	l := make(headerList, 0, n)
	for name, vs := range h {
		for _, v := range vs {
			l = append(l, name, v)
		}
	}
	return l
}

// header returns the fields as a new http.Header, for a request.
func (l headerList) header() http.Header {
	h := make(http.Header, len(l)/2)
	for i := 0; i < len(l); i += 2 {
		h[l[i]] = append(h[l[i]], l[i+1])
	}
	return h
}

// credential is what the client authenticates with upstream, as
// credential tells it of an http.Header.
func (l headerList) credential() string {
	for i := 0; i < len(l); i += 2 {
		if l[i] == "Authorization" {
			return l[i+1]
		}
	}
	return ""
}
