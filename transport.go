package mcpsse

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP/2's client connection preface followed by an empty SETTINGS frame:
// what a client with prior knowledge of h2c sends first.
var h2cPreface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")

// h2cProbeTimeout bounds the probe of a plain-HTTP upstream.
const h2cProbeTimeout = 5 * time.Second

// upstreamTransport carries a store's requests to its upstream over
// multiplexed HTTP/2 connections where the upstream offers it, so that many
// sessions, each holding an upstream GET stream, do not need a TCP
// connection each: the POSTs and DELETEs over net/http's, the GET streams
// over those of h2Streams. An https upstream gets HTTP/2 by ALPN. A plain-http
// upstream offers nothing to negotiate, so the transport probes it once: an
// upstream that answers HTTP/2's connection preface gets h2c, one that does
// not gets HTTP/1.1.
type upstreamTransport struct {
	h1  *http.Transport // HTTP/1.1, and HTTP/2 over TLS
	h2c *http.Transport // HTTP/2 over cleartext TCP
	// streams carries the GET streams over h2c, and over TLS where the
	// upstream offers h2, with no goroutine of net/http's for each (see
	// h2Streams).
	streams *h2Streams
	// noTLSStreams is set once an https upstream offered no h2 to
	// t.streams: its GET streams go over h1.
	noTLSStreams atomic.Bool

	// chosen is h1 or h2c once a probe has told; nil until then.
	chosen atomic.Pointer[http.Transport]
	// onChoose, if set, learns what a probe chose.
	onChoose func(h2c bool)

	// closed ends a probe that is running when the transport is closed.
	closed context.Context
	close  context.CancelFunc

	mu    sync.Mutex
	probe *h2cProbe // the probe running, if any
}

// h2cProbe is one probe of the upstream, which every request that needs
// its answer waits for, each as long as its own context allows.
type h2cProbe struct {
	done chan struct{}
	rt   *http.Transport // set before done is closed
}

func newUpstreamTransport() *upstreamTransport {
	h1 := http.DefaultTransport.(*http.Transport).Clone()
	h1.ForceAttemptHTTP2 = true
	// Many sessions call one host at once; don't churn connections.
	h1.MaxIdleConnsPerHost = 256
	// The bodies are parsed here, not passed through: keep them plain.
	h1.DisableCompression = true

	h2c := h1.Clone()
	h2c.Protocols = new(http.Protocols)
	h2c.Protocols.SetUnencryptedHTTP2(true)
	// The connections idle for as long as the sessions do: check that
	// the upstream is still there instead of trusting a silent one. No
	// header is indexed for compression: the sessions that share a
	// connection send headers of their own (Mcp-Session-Id, credentials),
	// which churned the 4 KiB table, and encoding them cost a tenth of
	// the gateway's CPU in a closed loop; literals cost bytes on the
	// wire only.
	h2c.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second, MaxEncoderHeaderTableSize: 1}
	h1.HTTP2 = h2c.HTTP2
	t := &upstreamTransport{h1: h1, h2c: h2c, streams: newH2Streams(h1)}
	t.closed, t.close = context.WithCancel(context.Background())
	return t
}

// RoundTrip sends req over the transport the upstream speaks.
func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt, err := t.transportFor(req)
	if err != nil {
		return nil, err
	}
	resp, err := rt.RoundTrip(req)
	if rt == t.h2c {
		t.checkH2C(req, err)
	}
	return resp, err
}

// checkH2C takes the outcome of a request sent over h2c: one that failed
// for other reasons than its context makes the next request probe again,
// since the upstream may have been replaced by one that speaks only
// HTTP/1.1.
func (t *upstreamTransport) checkH2C(req *http.Request, err error) {
	if err != nil && req.Context().Err() == nil {
		t.chosen.CompareAndSwap(t.h2c, nil)
	}
}

// RoundTripStream sends req, a GET for an event stream, as RoundTrip
// does, but over HTTP/2 on the connections of t.streams: h2c where the
// probe found it, and over TLS unless the upstream's ALPN offered no h2.
func (t *upstreamTransport) RoundTripStream(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "https" {
		return t.roundTripTLSStream(req)
	}
	rt, err := t.transportFor(req)
	if err != nil {
		return nil, err
	}
	if rt != t.h2c {
		return rt.RoundTrip(req)
	}
	resp, err := t.streams.RoundTrip(req)
	t.checkH2C(req, err)
	return resp, err
}

// roundTripTLSStream sends req, a GET for an event stream, to an https
// upstream: on t.streams, or with net/http (HTTP/1.1) once the upstream
// offered no h2, or through an HTTP proxy.
func (t *upstreamTransport) roundTripTLSStream(req *http.Request) (*http.Response, error) {
	if t.noTLSStreams.Load() || t.proxied(req) {
		return t.h1.RoundTrip(req)
	}
	resp, err := t.streams.RoundTrip(req)
	if errors.Is(err, errH2NotOffered) {
		t.noTLSStreams.Store(true)
		return t.h1.RoundTrip(req)
	}
	return resp, err
}

// transportFor returns the transport the upstream speaks, choosing it if
// no probe has told yet.
func (t *upstreamTransport) transportFor(req *http.Request) (*http.Transport, error) {
	if rt := t.chosen.Load(); rt != nil {
		return rt, nil
	}
	return t.choose(req)
}

// choose returns the transport for a plain-http upstream once a probe for
// h2c has told, waiting for the probe at most as long as req's context
// allows. A probe that cannot reach the upstream sends the requests that
// waited for it over HTTP/1.1, and the next request probes again.
func (t *upstreamTransport) choose(req *http.Request) (*http.Transport, error) {
	if req.URL.Scheme != "http" || t.proxied(req) {
		t.chosen.Store(t.h1)
		return t.h1, nil
	}
	t.mu.Lock()
	if rt := t.chosen.Load(); rt != nil {
		t.mu.Unlock()
		return rt, nil
	}
	p := t.probe
	if p == nil {
		p = &h2cProbe{done: make(chan struct{})}
		t.probe = p
		go t.runProbe(p, req.URL.Host)
	}
	t.mu.Unlock()
	select {
	case <-p.done:
		return p.rt, nil
	case <-req.Context().Done():
		return nil, causeOf(req.Context())
	}
}

// runProbe probes host within h2cProbeTimeout, or until the transport is
// closed, and publishes the answer.
func (t *upstreamTransport) runProbe(p *h2cProbe, host string) {
	ctx, cancel := context.WithTimeout(t.closed, h2cProbeTimeout)
	defer cancel()
	h2c, err := probeH2C(ctx, host)
	if t.closed.Err() != nil {
		err = t.closed.Err() // cut short: it told nothing
	}
	p.rt = t.h1
	if err == nil && h2c {
		p.rt = t.h2c
	}
	t.mu.Lock()
	t.probe = nil
	if err == nil {
		t.chosen.Store(p.rt)
	}
	t.mu.Unlock()
	close(p.done)
	if err == nil && t.onChoose != nil {
		t.onChoose(h2c)
	}
}

// proxied reports whether req goes through an HTTP proxy (HTTP_PROXY),
// which a probe would bypass.
func (t *upstreamTransport) proxied(req *http.Request) bool {
	if t.h1.Proxy == nil {
		return false
	}
	proxy, err := t.h1.Proxy(req)
	return err == nil && proxy != nil
}

// probeH2C reports whether the server at host (host:port, or host for port
// 80) answers HTTP/2's connection preface with a SETTINGS frame, as a
// server that takes h2c with prior knowledge does. An HTTP/1.1 server
// answers with an HTTP/1.1 error or closes the connection.
func probeH2C(ctx context.Context, host string) (bool, error) {
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "80")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write(h2cPreface); err != nil {
		return false, nil
	}
	// Whatever else happens (an HTTP/1.1 error, a close, a reset, no
	// answer in time), the server did not take h2c.
	var frame [9]byte // a frame header: length, type, flags, stream
	if _, err := io.ReadFull(conn, frame[:]); err != nil {
		return false, nil
	}
	const typeSettings = 0x4
	return frame[3] == typeSettings && bytes.Equal(frame[5:], []byte{0, 0, 0, 0}), nil
}

// CloseIdleConnections closes the transports' idle connections.
func (t *upstreamTransport) CloseIdleConnections() {
	t.h1.CloseIdleConnections()
	t.h2c.CloseIdleConnections()
	t.streams.closeIdle()
}

// shutdown ends a probe that is running and closes the idle connections;
// the streams' connections close as their last stream ends.
func (t *upstreamTransport) shutdown() {
	t.close()
	t.streams.shutdown()
	t.CloseIdleConnections()
}
