package mcpsse

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The upstream's requests over HTTP/2. A session holds its upstream's GET
// stream for its whole life, and net/http's HTTP/2 client keeps a
// goroutine (4 KiB of stack) and some 3 KiB of state for every request
// until its stream ends: more than the rest of an idle session. It runs
// that goroutine for every POST too, besides the state of a general
// client. h2Streams carries the upstream's requests on HTTP/2 connections
// of its own, whose one reading goroutine hands each stream's DATA to the
// goroutine that reads its body, or calls back a reader that parked (see
// park) rather than wait. It speaks what the gateway's requests
// need: a request whose body is in memory, sent as the upstream's
// flow-control windows allow, then the response's headers and its data,
// with flow control per stream so that a session that does not read holds
// up no other.

const (
	// h2StreamWindow is each stream's receive window: the most an
	// upstream sends on a stream before the gateway has read it.
	h2StreamWindow = 1 << 20
	// h2WindowRefresh is how much of a stream is read before its window
	// is given back.
	h2WindowRefresh = 32 << 10
	// h2ConnWindow is the connection's receive window; each stream's
	// bounds what is buffered.
	h2ConnWindow = 1 << 30
	// h2MaxHeaderList bounds a response's header list.
	h2MaxHeaderList = 1 << 20
	// h2MaxStreamsUnset bounds the streams on a connection whose peer set
	// no limit, as net/http's client does.
	h2MaxStreamsUnset = 1000
	// h2PingAfter is the silence after which a connection is pinged, and
	// h2PingTimeout the wait for the answer before it is closed: the
	// figures of net/http's h2c transport here (see newUpstreamTransport).
	h2PingAfter   = 30 * time.Second
	h2PingTimeout = 15 * time.Second
	// h2IdleTimeout closes a connection that carried no stream this long.
	h2IdleTimeout = 90 * time.Second
	// h2WriteTimeout bounds each write to a connection: a peer that
	// takes none of it is gone.
	h2WriteTimeout = 10 * time.Second
	// h2DialTimeout bounds opening a connection, its SETTINGS included.
	h2DialTimeout = 10 * time.Second
	// h2Attempts bounds the connections a request tries when the ones it
	// was sent on went away before the upstream took it.
	h2Attempts = 3
	// h2ReadBuffer and h2WriteBuffer buffer a connection's frames, so
	// that a frame is read, and a request's frames written, in one
	// system call.
	h2ReadBuffer  = 16 << 10
	h2WriteBuffer = 8 << 10
	// h2InitialWindow is a window's size until SETTINGS say otherwise,
	// and h2MaxWindow the largest one may grow to.
	h2InitialWindow = 65535
	h2MaxWindow     = 1<<31 - 1
)

var (
	errH2Closed      = errors.New("upstream HTTP/2 connection closed")
	errH2Unprocessed = errors.New("upstream HTTP/2 connection went away before taking the request")
	errH2BodyClosed  = errors.New("read on a closed upstream stream")
	errH2PingTimeout = errors.New("upstream HTTP/2 connection did not answer a ping")
	errH2NotOffered  = errors.New("upstream does not offer HTTP/2 over TLS")
)

// h2Streams is a pool of HTTP/2 connections to one upstream for its
// requests, each connection carrying as many streams as the upstream
// allows at once: h2c for an http:// upstream, TLS with ALPN for an
// https:// one.
type h2Streams struct {
	// base dials as the upstream's other requests do, and gives the TLS
	// settings of an https:// upstream.
	base *http.Transport

	mu      sync.Mutex
	conns   []*h2Conn
	dialing *h2Dial // the connection being opened, if any
	closed  bool
}

// h2Dial is a connection being opened, which the requests that need one
// wait for.
type h2Dial struct {
	done chan struct{}
	conn *h2Conn // set before done is closed, or err
	err  error
}

func newH2Streams(base *http.Transport) *h2Streams {
	return &h2Streams{base: base}
}

// RoundTrip sends req with body, which stands for req.Body (not read), and
// returns the response once its headers came. The response's body reads
// the stream until it ends, req's context ends, or it is closed. A client
// trace in req's context learns when the request has been written.
func (p *h2Streams) RoundTrip(req *http.Request, body []byte) (*http.Response, error) {
	if err := checkRequestHeader(req.Header); err != nil {
		return nil, err
	}
	trace := httptrace.ContextClientTrace(req.Context())
	for attempt := 1; ; attempt++ {
		cc, err := p.conn(req.Context(), req.URL)
		if err != nil {
			return nil, err
		}
		cs, err := cc.send(req, body)
		if err == nil && trace != nil && trace.WroteRequest != nil {
			trace.WroteRequest(httptrace.WroteRequestInfo{})
			trace = nil // a request sent again has been written before
		}
		var resp *http.Response
		if err == nil {
			resp, err = cc.response(cs, req)
		}
		if errors.Is(err, errH2Unprocessed) && attempt < h2Attempts && req.Context().Err() == nil {
			continue
		}
		return resp, err
	}
}

// conn returns a connection to u's host with room for one more stream,
// held for the caller, opening one if none has room.
func (p *h2Streams) conn(ctx context.Context, u *url.URL) (*h2Conn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errH2Closed
		}
		// The newest connection is the likeliest to have room.
		for i := len(p.conns) - 1; i >= 0; i-- {
			if cc := p.conns[i]; cc.scheme == u.Scheme && cc.host == u.Host && cc.reserve() {
				p.mu.Unlock()
				return cc, nil
			}
		}
		d := p.dialing
		if d == nil {
			d = &h2Dial{done: make(chan struct{})}
			p.dialing = d
			go p.open(d, u)
		}
		p.mu.Unlock()
		select {
		case <-d.done:
			if d.err != nil {
				return nil, d.err
			}
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// open opens a connection to u's host for d, and adds it to the pool.
func (p *h2Streams) open(d *h2Dial, u *url.URL) {
	ctx, cancel := context.WithTimeout(context.Background(), h2DialTimeout)
	defer cancel()
	d.conn, d.err = p.connect(ctx, u)
	p.mu.Lock()
	p.dialing = nil
	if d.err == nil && p.closed {
		d.err = errH2Closed
	}
	if d.err == nil {
		p.conns = append(p.conns, d.conn)
	}
	p.mu.Unlock()
	if d.err != nil && d.conn != nil {
		d.conn.close(d.err)
	}
	close(d.done)
}

// connect dials u's host, speaks HTTP/2's preface, and returns the
// connection once the upstream's SETTINGS came.
func (p *h2Streams) connect(ctx context.Context, u *url.URL) (*h2Conn, error) {
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	nc, err := p.dial(ctx, host, u.Scheme == "https", u.Hostname())
	if err != nil {
		return nil, err
	}
	cc := newH2Conn(p, nc, u)
	err = cc.write(func(fr *http2.Framer) error {
		if _, err := cc.bw.WriteString(http2.ClientPreface); err != nil {
			return err
		}
		err := fr.WriteSettings(
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList},
		)
		if err != nil {
			return err
		}
		return fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	})
	if err != nil {
		cc.close(err)
		return nil, fmt.Errorf("opening an HTTP/2 connection to %s: %w", host, err)
	}
	go cc.readLoop()
	select {
	case <-cc.ready:
		if cc.capacity() == 0 {
			cc.close(errH2Closed)
			return nil, fmt.Errorf("opening an HTTP/2 connection to %s: the upstream allows no streams on it", host)
		}
		return cc, nil
	case <-cc.done:
		return nil, fmt.Errorf("opening an HTTP/2 connection to %s: %w", host, cc.closeErr())
	case <-ctx.Done():
		cc.close(ctx.Err())
		return nil, fmt.Errorf("opening an HTTP/2 connection to %s: no SETTINGS: %w", host, ctx.Err())
	}
}

// dial opens a TCP connection to addr, and over TLS negotiates HTTP/2
// with serverName.
func (p *h2Streams) dial(ctx context.Context, addr string, useTLS bool, serverName string) (net.Conn, error) {
	dial := p.base.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil || !useTLS {
		return nc, err
	}
	cfg := &tls.Config{}
	if p.base.TLSClientConfig != nil {
		cfg = p.base.TLSClientConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	// http/1.1 too: a server that takes only it would refuse the handshake.
	cfg.NextProtos = []string{"h2", "http/1.1"}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		tc.Close()
		return nil, errH2NotOffered
	}
	return tc, nil
}

// remove drops cc, which closed, from the pool.
func (p *h2Streams) remove(cc *h2Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.conns {
		if c == cc {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			return
		}
	}
}

// closeIdle closes the connections that carry no stream.
func (p *h2Streams) closeIdle() {
	p.mu.Lock()
	conns := append([]*h2Conn(nil), p.conns...)
	p.mu.Unlock()
	for _, cc := range conns {
		cc.closeIfIdle()
	}
}

// shutdown opens no more connections, and lets each close as its last
// stream ends.
func (p *h2Streams) shutdown() {
	p.mu.Lock()
	p.closed = true
	conns := append([]*h2Conn(nil), p.conns...)
	p.mu.Unlock()
	for _, cc := range conns {
		cc.mu.Lock()
		cc.goingAway = true // its last stream's end closes it
		cc.mu.Unlock()
		cc.closeIfIdle()
	}
}

// h2Conn is one HTTP/2 connection of the pool.
type h2Conn struct {
	pool   *h2Streams
	nc     net.Conn
	scheme string        // of the requests it carries
	host   string        // and their host, as their URL has it
	ready  chan struct{} // closed once the upstream's first SETTINGS came
	done   chan struct{} // closed once the connection is closed

	// wmu serializes writes: the framer's writing side, its buffer and
	// the header encoder.
	wmu  sync.Mutex
	fr   *http2.Framer
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer

	// lastRead is when a frame last came, in Unix nanoseconds.
	lastRead atomic.Int64

	mu         sync.Mutex
	streams    map[uint32]*h2Stream
	nextID     uint32
	held       int // streams open or about to be
	maxStreams int
	maxFrame   int // the largest frame the upstream takes
	// sendWindow is what the upstream takes of the requests' bodies on
	// the connection, and initialWindow what it takes on a stream
	// before that stream's WINDOW_UPDATE; sendCond is signalled as
	// either grows, and as a stream that sends ends.
	sendWindow    int
	initialWindow int
	sendCond      sync.Cond
	goingAway     bool
	err           error // why it closed; set once it did
	pingedAt      time.Time
	alive         *time.Timer // pings a silent connection
	idle          *time.Timer // closes a connection without streams
	// received counts the DATA bytes not yet given back to the
	// connection's window; only the reading goroutine uses it.
	received int
}

func newH2Conn(p *h2Streams, nc net.Conn, u *url.URL) *h2Conn {
	cc := &h2Conn{
		pool:          p,
		nc:            nc,
		scheme:        u.Scheme,
		host:          u.Host,
		ready:         make(chan struct{}),
		done:          make(chan struct{}),
		bw:            bufio.NewWriterSize(nc, h2WriteBuffer),
		streams:       make(map[uint32]*h2Stream),
		nextID:        1,
		maxStreams:    h2MaxStreamsUnset,
		maxFrame:      16 << 10,
		sendWindow:    h2InitialWindow,
		initialWindow: h2InitialWindow,
	}
	cc.sendCond.L = &cc.mu
	cc.fr = http2.NewFramer(cc.bw, bufio.NewReaderSize(nc, h2ReadBuffer))
	cc.fr.SetReuseFrames()
	cc.fr.SetMaxReadFrameSize(16 << 10) // what the upstream may send unless told more
	cc.fr.MaxHeaderListSize = h2MaxHeaderList
	cc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	// No header is indexed: the sessions that share a connection send
	// their own Mcp-Session-Id and credentials (see newUpstreamTransport).
	cc.henc = hpack.NewEncoder(&cc.hbuf)
	cc.henc.SetMaxDynamicTableSizeLimit(0)
	cc.lastRead.Store(time.Now().UnixNano())
	cc.alive = time.AfterFunc(h2PingAfter, cc.checkAlive)
	cc.idle = time.AfterFunc(h2IdleTimeout, cc.closeIfIdle)
	return cc
}

// write runs f, which writes frames, under the write lock, as writeLocked
// does.
func (cc *h2Conn) write(f func(fr *http2.Framer) error) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	return cc.writeLocked(f)
}

// writeLocked runs f, which writes frames, under a deadline, and sends
// them; a write that fails closes the connection. Callers hold cc.wmu.
func (cc *h2Conn) writeLocked(f func(fr *http2.Framer) error) error {
	_ = cc.nc.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
	err := f(cc.fr)
	if err == nil {
		err = cc.bw.Flush()
	}
	if err != nil {
		err = fmt.Errorf("%w: writing: %v", errH2Closed, err)
		cc.close(err)
	}
	return err
}

// reserve holds room for one more stream, and reports whether there was.
func (cc *h2Conn) reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil || cc.goingAway || cc.held >= cc.maxStreams {
		return false
	}
	cc.held++
	cc.idle.Stop()
	return true
}

// release gives back the room of a stream. Callers hold cc.mu.
func (cc *h2Conn) release() {
	cc.held--
	if cc.held == 0 {
		if cc.goingAway {
			go cc.close(errH2Closed) // not under cc.mu
			return
		}
		cc.idle.Reset(h2IdleTimeout)
	}
}

// send sends req with body, which stands for req.Body, on a stream held
// by reserve, and returns the stream once the whole request is written.
func (cc *h2Conn) send(req *http.Request, body []byte) (*h2Stream, error) {
	cs := &h2Stream{cc: cc, window: h2StreamWindow}
	cs.cond.L = &cc.mu
	ctx := req.Context()
	// The gateway's requests run under scopes, which afterFunc watches
	// with no channel and no watcher context for the stream's life.
	cs.stop = afterFunc(ctx, func() { cs.abort(causeOf(ctx)) })
	sent, err := cc.open(cs, req, body)
	if err == nil && sent < len(body) {
		err = cc.sendBody(cs, body[sent:])
	}
	if err == io.EOF {
		err = nil // the upstream answered in full before it took the whole body
	}
	if err != nil {
		cs.stop()
		return nil, err
	}
	return cs, nil
}

// response waits for the response headers of req, sent on cs.
func (cc *h2Conn) response(cs *h2Stream, req *http.Request) (*http.Response, error) {
	cc.mu.Lock()
	for cs.status == 0 && cs.err == nil {
		cs.cond.Wait()
	}
	status, header, err := cs.status, cs.header, cs.err
	cs.header = nil
	cc.mu.Unlock()
	if status == 0 {
		cs.Close()
		return nil, err
	}
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        header,
		Body:          cs,
		ContentLength: -1,
		Request:       req,
	}, nil
}

// open gives cs the next stream ID and sends its HEADERS, then what the
// upstream's windows take of body at once, ending the request's side of
// the stream if that is all of it; it returns how much of body it sent.
// IDs are taken under the write lock, so that they go out in order.
func (cc *h2Conn) open(cs *h2Stream, req *http.Request, body []byte) (int, error) {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.mu.Lock()
	if cs.err != nil { // its request ended already
		cc.release()
		cc.mu.Unlock()
		return 0, cs.err
	}
	if cc.err != nil || cc.nextID >= 1<<31-1 {
		cc.goingAway = true
		cc.release()
		cc.mu.Unlock()
		return 0, errH2Unprocessed
	}
	cs.id = cc.nextID
	cc.nextID += 2
	cc.streams[cs.id] = cs
	cs.sendWindow = cc.initialWindow
	sent := cc.takeWindow(cs, len(body))
	cs.sending = sent < len(body)
	maxFrame := cc.maxFrame
	cc.mu.Unlock()

	cc.hbuf.Reset()
	writeRequestFields(cc.henc, req, len(body))
	block := cc.hbuf.Bytes()
	err := cc.writeLocked(func(fr *http2.Framer) error {
		first := block[:min(len(block), maxFrame)]
		block = block[len(first):]
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: cs.id, BlockFragment: first, EndStream: len(body) == 0, EndHeaders: len(block) == 0})
		for err == nil && len(block) > 0 {
			chunk := block[:min(len(block), maxFrame)]
			block = block[len(chunk):]
			err = fr.WriteContinuation(cs.id, len(block) == 0, chunk)
		}
		if err == nil && sent > 0 {
			err = fr.WriteData(cs.id, sent == len(body), body[:sent])
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return sent, nil
}

// sendBody sends body, the rest of cs's request, in DATA frames as the
// upstream's windows take it, ending the request's side of the stream with
// the last. If the stream ends first, it returns how: io.EOF if the
// upstream answered in full.
func (cc *h2Conn) sendBody(cs *h2Stream, body []byte) error {
	for len(body) > 0 {
		cc.mu.Lock()
		n := 0
		for cs.err == nil {
			if n = cc.takeWindow(cs, len(body)); n > 0 {
				break
			}
			cc.sendCond.Wait()
		}
		ended := cs.err
		cs.sending = n < len(body) && ended == nil
		cc.mu.Unlock()
		if n == 0 {
			return ended
		}
		chunk, end := body[:n], n == len(body)
		body = body[n:]
		if err := cc.write(func(fr *http2.Framer) error { return fr.WriteData(cs.id, end, chunk) }); err != nil {
			return err
		}
	}
	return nil
}

// takeWindow takes what the connection's and cs's send windows allow of a
// body of n bytes, in one frame. Callers hold cc.mu.
func (cc *h2Conn) takeWindow(cs *h2Stream, n int) int {
	n = min(n, cs.sendWindow, cc.sendWindow, cc.maxFrame)
	if n <= 0 {
		return 0
	}
	cs.sendWindow -= n
	cc.sendWindow -= n
	return n
}

// readLoop reads the connection's frames until it closes.
func (cc *h2Conn) readLoop() {
	var err error
	for {
		var f http2.Frame
		if f, err = cc.fr.ReadFrame(); err != nil {
			if se, ok := errors.AsType[http2.StreamError](err); ok {
				cc.endStream(se.StreamID, se.Code, fmt.Errorf("upstream HTTP/2 stream: %w", se))
				continue
			}
			break
		}
		cc.lastRead.Store(time.Now().UnixNano())
		if err = cc.handle(f); err != nil {
			break
		}
	}
	cc.close(fmt.Errorf("%w: %v", errH2Closed, err)) // not io.EOF: a stream cut off did not end
}

// handle takes one frame; an error closes the connection.
func (cc *h2Conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return cc.settings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		return cc.write(func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) })
	case *http2.MetaHeadersFrame:
		cc.headers(f)
	case *http2.DataFrame:
		return cc.data(f)
	case *http2.RSTStreamFrame:
		err := error(http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
		if f.ErrCode == http2.ErrCodeRefusedStream {
			err = errH2Unprocessed
		}
		cc.endStream(f.StreamID, 0, fmt.Errorf("upstream reset the stream: %w", err))
	case *http2.WindowUpdateFrame:
		return cc.windowUpdate(f)
	case *http2.GoAwayFrame:
		cc.goAway(f.LastStreamID)
	case *http2.PushPromiseFrame:
		return errors.New("upstream pushed, though push is off")
	}
	return nil // others are ignored
}

// settings applies the upstream's SETTINGS and acknowledges them.
func (cc *h2Conn) settings(f *http2.SettingsFrame) error {
	cc.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			cc.maxStreams = int(min(s.Val, h2MaxStreamsUnset))
		case http2.SettingMaxFrameSize:
			cc.maxFrame = int(s.Val)
		case http2.SettingInitialWindowSize:
			// It applies to the streams open too.
			delta := int(s.Val) - cc.initialWindow
			cc.initialWindow = int(s.Val)
			for _, cs := range cc.streams {
				if cs.sendWindow += delta; cs.sendWindow > h2MaxWindow {
					return errors.New("upstream HTTP/2 SETTINGS took a stream's window past 2^31-1")
				}
			}
			cc.sendCond.Broadcast()
		}
		return nil
	})
	cc.mu.Unlock()
	if err != nil {
		return err
	}
	if err := cc.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() }); err != nil {
		return err
	}
	select {
	case <-cc.ready:
	default:
		close(cc.ready)
	}
	return nil
}

// headers takes a stream's response headers, or its trailers.
func (cc *h2Conn) headers(f *http2.MetaHeadersFrame) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cs := cc.streams[f.StreamID]
	if cs == nil {
		return
	}
	if cs.status == 0 {
		status, err := strconv.Atoi(f.PseudoValue("status"))
		if err != nil || status < 200 {
			if err == nil && status >= 100 && status != 101 && !f.StreamEnded() {
				return // an interim response: the final one follows
			}
			cc.endLocked(cs, fmt.Errorf("upstream HTTP/2 stream: malformed response status %q", f.PseudoValue("status")), http2.ErrCodeProtocol)
			return
		}
		header := make(http.Header, len(f.RegularFields()))
		for _, hf := range f.RegularFields() {
			key := http.CanonicalHeaderKey(hf.Name)
			header[key] = append(header[key], hf.Value)
		}
		cs.status, cs.header = status, header
	}
	if f.StreamEnded() {
		cc.endLocked(cs, io.EOF, 0)
	}
	cs.cond.Broadcast()
}

// data takes a stream's DATA, giving the connection's window back as it
// comes: each stream's own window bounds what waits unread.
func (cc *h2Conn) data(f *http2.DataFrame) error {
	size := int(f.Length)
	if cc.received += size; cc.received >= h2StreamWindow {
		n := cc.received
		cc.received = 0
		if err := cc.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, uint32(n)) }); err != nil {
			return err
		}
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cs := cc.streams[f.StreamID]
	if cs == nil {
		return nil // a stream that ended here; its peer had sent this already
	}
	if cs.status == 0 {
		cc.endLocked(cs, errors.New("upstream HTTP/2 stream: DATA before its response headers"), http2.ErrCodeProtocol)
		return nil
	}
	if cs.window -= size; cs.window < 0 {
		cc.endLocked(cs, errors.New("upstream HTTP/2 stream: sent past its flow-control window"), http2.ErrCodeFlowControl)
		return nil
	}
	cs.buf = append(cs.buf, f.Data()...)
	cs.unacked += size - len(f.Data()) // padding is read as it comes
	if f.StreamEnded() {
		cc.endLocked(cs, io.EOF, 0)
	}
	cs.wakeLocked()
	return nil
}

// windowUpdate grows the connection's send window, or a stream's.
func (cc *h2Conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	inc := int(f.Increment)
	if f.StreamID == 0 {
		if cc.sendWindow += inc; cc.sendWindow > h2MaxWindow {
			return errors.New("upstream HTTP/2 WINDOW_UPDATE took the connection's window past 2^31-1")
		}
	} else if cs := cc.streams[f.StreamID]; cs != nil {
		if cs.sendWindow += inc; cs.sendWindow > h2MaxWindow {
			cc.endLocked(cs, errors.New("upstream HTTP/2 WINDOW_UPDATE took a stream's window past 2^31-1"), http2.ErrCodeFlowControl)
			return nil
		}
	}
	cc.sendCond.Broadcast()
	return nil
}

// goAway stops new streams on the connection, and ends those the upstream
// says it did not take, to be sent again on another.
func (cc *h2Conn) goAway(last uint32) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.goingAway = true
	for id, cs := range cc.streams {
		if id > last {
			cc.endLocked(cs, errH2Unprocessed, 0)
		}
	}
	if cc.held == 0 {
		go cc.close(errH2Closed)
	}
}

// endStream ends stream id with err, if it is open, and resets it with
// code unless 0.
func (cc *h2Conn) endStream(id uint32, code http2.ErrCode, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cs := cc.streams[id]; cs != nil {
		cc.endLocked(cs, err, code)
	}
}

// endLocked ends cs with err, which its body returns once what it holds
// is read, and gives back its room; a code other than 0 resets the stream
// upstream. So does a response that came whole (err io.EOF) while the
// request's body is still going out, with NO_ERROR, which ends the
// request's side of the stream (RFC 9113, 8.1). Callers hold cc.mu.
func (cc *h2Conn) endLocked(cs *h2Stream, err error, code http2.ErrCode) {
	if cs.err == nil {
		cs.err = err
	}
	cs.wakeLocked()
	reset := code != 0 || cs.sending && err == io.EOF
	if cs.sending {
		cc.sendCond.Broadcast()
	}
	if cc.streams[cs.id] != cs {
		return // not sent yet, or ended already
	}
	delete(cc.streams, cs.id)
	if !reset {
		cc.release()
		return
	}
	// The upstream counts the stream against its MAX_CONCURRENT_STREAMS
	// until the RST_STREAM comes, and refuses a stream past them: its room
	// is given back once that is written.
	go func() {
		_ = cc.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(cs.id, code) })
		cc.mu.Lock()
		cc.release()
		cc.mu.Unlock()
	}()
}

// checkAlive pings a connection that has been silent for h2PingAfter, and
// closes it if the ping got no answer in h2PingTimeout.
func (cc *h2Conn) checkAlive() {
	now := time.Now()
	lastRead := time.Unix(0, cc.lastRead.Load())
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	if !cc.pingedAt.IsZero() && lastRead.Before(cc.pingedAt) {
		// The ping is unanswered, and nothing else came either.
		waited := now.Sub(cc.pingedAt)
		if waited < h2PingTimeout {
			cc.alive.Reset(h2PingTimeout - waited)
			cc.mu.Unlock()
			return
		}
		cc.mu.Unlock()
		cc.close(errH2PingTimeout)
		return
	}
	if silent := now.Sub(lastRead); silent < h2PingAfter {
		cc.pingedAt = time.Time{}
		cc.alive.Reset(h2PingAfter - silent)
		cc.mu.Unlock()
		return
	}
	cc.pingedAt = now
	cc.alive.Reset(h2PingTimeout)
	cc.mu.Unlock()
	_ = cc.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{'m', 'c', 'p', '-', 's', 's', 'e'}) })
}

// closeIfIdle closes the connection if it carries no stream.
func (cc *h2Conn) closeIfIdle() {
	cc.mu.Lock()
	idle := cc.held == 0
	cc.mu.Unlock()
	if idle {
		cc.close(errH2Closed)
	}
}

// close closes the connection, ending its streams with err.
func (cc *h2Conn) close(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = err
	for _, cs := range cc.streams {
		cc.endLocked(cs, err, 0)
	}
	cc.alive.Stop()
	cc.idle.Stop()
	cc.mu.Unlock()
	cc.nc.Close()
	close(cc.done)
	cc.pool.remove(cc)
}

// capacity is how many streams the upstream takes at once.
func (cc *h2Conn) capacity() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.maxStreams
}

// closeErr is why the connection closed.
func (cc *h2Conn) closeErr() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err
}

// h2Stream is one request's stream, and its response's body.
type h2Stream struct {
	cc   *h2Conn
	id   uint32
	stop func() bool // stops watching the request's context

	// Under cc.mu:
	cond sync.Cond // signalled as the response, data or the end comes
	// ready, set by park, is called once data or the end comes.
	ready  func()
	status int
	header http.Header // until the response is made
	buf    []byte      // received and not yet read
	// window is what the upstream may still send; unacked, what was
	// read and not yet given back to it.
	window  int
	unacked int
	// sendWindow is what the upstream takes of the request's body on the
	// stream; sending is set while the rest of the body is to be sent.
	sendWindow int
	sending    bool
	// err is how the stream ended: io.EOF at its end, once buf is read;
	// nil while it goes on.
	err    error
	closed bool
}

// Read reads the stream's data, waiting for it.
func (cs *h2Stream) Read(p []byte) (int, error) {
	cs.cc.mu.Lock()
	for len(cs.buf) == 0 && cs.err == nil {
		cs.cond.Wait()
	}
	return cs.readLocked(p)
}

// tryRead reads the stream's data as Read does, but returns errWouldWait
// at once where Read would wait.
func (cs *h2Stream) tryRead(p []byte) (int, error) {
	cs.cc.mu.Lock()
	if len(cs.buf) == 0 && cs.err == nil {
		cs.cc.mu.Unlock()
		return 0, errWouldWait
	}
	return cs.readLocked(p)
}

// park has ready called, once, as soon as the stream has data or ends,
// and reports true; if it has either already, it reports false and calls
// nothing. ready runs on the connection's reading goroutine, under its
// lock, so it must only hand the read on (to a worker, say), never block.
func (cs *h2Stream) park(ready func()) bool {
	cs.cc.mu.Lock()
	defer cs.cc.mu.Unlock()
	if len(cs.buf) > 0 || cs.err != nil {
		return false
	}
	cs.ready = ready
	return true
}

// readLocked reads what the stream holds into p, giving the upstream its
// window back as it is read, and unlocks cc.mu, which the caller holds.
func (cs *h2Stream) readLocked(p []byte) (int, error) {
	cc := cs.cc
	if cs.closed {
		cc.mu.Unlock()
		return 0, errH2BodyClosed
	}
	if len(cs.buf) == 0 {
		err := cs.err
		cc.mu.Unlock()
		return 0, err
	}
	n := copy(p, cs.buf)
	if cs.buf = cs.buf[n:]; len(cs.buf) == 0 {
		cs.buf = nil // an idle stream holds no buffer
	}
	cs.unacked += n
	give := 0
	if cs.unacked >= h2WindowRefresh && cs.err == nil {
		give, cs.unacked = cs.unacked, 0
		cs.window += give
	}
	cc.mu.Unlock()
	if give > 0 {
		_ = cc.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(cs.id, uint32(give)) })
	}
	return n, nil
}

// wakeLocked tells the stream's reader that its response, data or end
// came: the one waiting in Read or response, or the one parked (see
// park). Callers hold cc.mu.
func (cs *h2Stream) wakeLocked() {
	cs.cond.Broadcast()
	if ready := cs.ready; ready != nil {
		cs.ready = nil
		ready()
	}
}

// Close ends the stream, resetting it upstream if it still runs.
func (cs *h2Stream) Close() error {
	cs.stop()
	cs.abort(errH2BodyClosed)
	return nil
}

// abort ends the stream with err, resetting it upstream if it still runs,
// and drops what it holds.
func (cs *h2Stream) abort(err error) {
	cc := cs.cc
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if errors.Is(err, errH2BodyClosed) {
		cs.closed = true
	}
	cs.buf = nil
	cc.endLocked(cs, err, http2.ErrCodeCancel)
}

// checkRequestHeader checks the header fields of a request as net/http
// does before it sends them.
func checkRequestHeader(h http.Header) error {
	for name, values := range h {
		if !httpguts.ValidHeaderFieldName(name) {
			return fmt.Errorf("invalid header field name %q", name)
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid value for header field %q", name)
			}
		}
	}
	return nil
}

// writeRequestFields encodes the header fields of req, with a body of n
// bytes, with enc as HTTP/2 sends them; checkRequestHeader checked them.
// They go straight to the encoder: a list of them first was a tenth of
// what the gateway allocated per relayed call.
func writeRequestFields(enc *hpack.Encoder, req *http.Request, n int) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	_ = enc.WriteField(hpack.HeaderField{Name: ":authority", Value: host})
	_ = enc.WriteField(hpack.HeaderField{Name: ":method", Value: req.Method})
	_ = enc.WriteField(hpack.HeaderField{Name: ":path", Value: req.URL.RequestURI()})
	_ = enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: req.URL.Scheme})
	for name, values := range req.Header {
		lower, ok := lowerFieldNames[name]
		if !ok {
			lower = strings.ToLower(name)
		}
		switch lower {
		case "host", "connection", "proxy-connection", "transfer-encoding", "upgrade", "keep-alive", "content-length":
			continue // HTTP/2 has none of these, or says them otherwise
		}
		for _, v := range values {
			if lower == "te" && v != "trailers" {
				continue
			}
			_ = enc.WriteField(hpack.HeaderField{Name: lower, Value: v})
		}
	}
	switch {
	case n > 0, req.Method == http.MethodPost, req.Method == http.MethodPut, req.Method == http.MethodPatch:
		// As net/http: a method that has a body says its length, even 0.
		_ = enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(n)})
	}
}

// lowerFieldNames holds the HTTP/2 names of the header fields the gateway
// sends upstream most, so that writing them allocates no lower-case copy.
var lowerFieldNames = func() map[string]string {
	m := make(map[string]string)
	for _, name := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Content-Type", "Cookie",
		"Last-Event-Id", "Origin", "Traceparent", "Tracestate", "User-Agent",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		headerSessionID, headerProtocolVersion,
	} {
		m[name] = strings.ToLower(name)
	}
	return m
}()
