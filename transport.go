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
// connection each: those of h2Streams, for the GET streams, POSTs and
// DELETEs alike. An https upstream gets HTTP/2 by ALPN. A plain-http
// upstream offers nothing to negotiate, so the transport probes it once: an
// upstream that answers HTTP/2's connection preface gets h2c, one that does
// not gets HTTP/1.1 over net/http's transport, as do an https upstream
// that offers no h2 and one behind an HTTP proxy.
type upstreamTransport struct {
	h1 *http.Transport // HTTP/1.1, and HTTP/2 through a proxy
	// streams carries the requests over h2c, and over TLS where the
	// upstream offers h2, with no goroutine of net/http's for each (see
	// h2Streams).
	streams *h2Streams
	// noTLSStreams is set once an https upstream offered no h2 to
	// t.streams: its requests go over h1.
	noTLSStreams atomic.Bool

	// chosen is protoH1 or protoH2C once a probe has told.
	chosen atomic.Int32
	// onChoose, if set, learns what a probe chose.
	onChoose func(h2c bool)

	// closed ends a probe that is running when the transport is closed.
	closed context.Context
	close  context.CancelFunc

	mu    sync.Mutex
	probe *h2cProbe // the probe running, if any
}

// What a plain-http upstream speaks, as a probe told.
const (
	protoUnknown = iota
	protoH1
	protoH2C
)

// h2cProbe is one probe of the upstream, which every request that needs
// its answer waits for, each as long as its own context allows.
type h2cProbe struct {
	done  chan struct{}
	proto int32 // set before done is closed
}

func newUpstreamTransport() *upstreamTransport {
	h1 := http.DefaultTransport.(*http.Transport).Clone()
	h1.ForceAttemptHTTP2 = true
	// Many sessions call one host at once; don't churn connections.
	h1.MaxIdleConnsPerHost = 256
	// The bodies are parsed here, not passed through: keep them plain.
	h1.DisableCompression = true
	// HTTP/2 through a proxy is what h2Streams speaks otherwise: its
	// connections idle for as long as the sessions do, so check that the
	// upstream is still there instead of trusting a silent one, and index
	// no header, since the sessions that share a connection send their
	// own (see newH2Conn).
	h1.HTTP2 = &http.HTTP2Config{SendPingTimeout: h2PingAfter, PingTimeout: h2PingTimeout, MaxEncoderHeaderTableSize: 1}
	t := &upstreamTransport{h1: h1, streams: newH2Streams(h1)}
	t.closed, t.close = context.WithCancel(context.Background())
	return t
}

// RoundTrip sends req with body, which stands for req.Body when the
// request goes over h2Streams, over what the upstream speaks.
func (t *upstreamTransport) RoundTrip(req *http.Request, body []byte) (*http.Response, error) {
	if req.URL.Scheme == "https" {
		return t.roundTripTLS(req, body)
	}
	proto, err := t.protoFor(req)
	if err != nil {
		return nil, err
	}
	if proto != protoH2C {
		return t.h1.RoundTrip(req)
	}
	resp, err := t.streams.RoundTrip(req, body)
	if err != nil && req.Context().Err() == nil {
		// A request that failed for other reasons than its context
		// makes the next one probe again: the upstream may have been
		// replaced by one that speaks only HTTP/1.1.
		t.chosen.CompareAndSwap(protoH2C, protoUnknown)
	}
	return resp, err
}

// roundTripTLS sends req to an https upstream: on t.streams, or with
// net/http once the upstream offered no h2, or through an HTTP proxy.
func (t *upstreamTransport) roundTripTLS(req *http.Request, body []byte) (*http.Response, error) {
	if t.noTLSStreams.Load() || t.proxied(req) {
		return t.h1.RoundTrip(req)
	}
	resp, err := t.streams.RoundTrip(req, body)
	if errors.Is(err, errH2NotOffered) {
		t.noTLSStreams.Store(true)
		return t.h1.RoundTrip(req)
	}
	return resp, err
}

// protoFor returns what a plain-http upstream speaks, probing for it if
// no probe has told yet.
func (t *upstreamTransport) protoFor(req *http.Request) (int32, error) {
	if proto := t.chosen.Load(); proto != protoUnknown {
		return proto, nil
	}
	return t.choose(req)
}

// choose returns what a plain-http upstream speaks once a probe for h2c
// has told, waiting for the probe at most as long as req's context
// allows. A probe that cannot reach the upstream sends the requests that
// waited for it over HTTP/1.1, and the next request probes again.
func (t *upstreamTransport) choose(req *http.Request) (int32, error) {
	if req.URL.Scheme != "http" || t.proxied(req) {
		t.chosen.Store(protoH1)
		return protoH1, nil
	}
	t.mu.Lock()
	if proto := t.chosen.Load(); proto != protoUnknown {
		t.mu.Unlock()
		return proto, nil
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
		return p.proto, nil
	case <-req.Context().Done():
		return protoUnknown, causeOf(req.Context())
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
	p.proto = protoH1
	if err == nil && h2c {
		p.proto = protoH2C
	}
	t.mu.Lock()
	t.probe = nil
	if err == nil {
		t.chosen.Store(p.proto)
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
	t.streams.closeIdle()
}

// shutdown ends a probe that is running and closes the idle connections;
// the streams' connections close as their last stream ends.
func (t *upstreamTransport) shutdown() {
	t.close()
	t.streams.shutdown()
	t.CloseIdleConnections()
}
