package mcpsse

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2cServer is a net/http server that takes h2c, counting the connections
// it accepted.
type h2cServer struct {
	*httptest.Server
	conns atomic.Int32
}

func startH2CServer(t testing.TB, maxStreams uint32, h http.HandlerFunc) *h2cServer {
	return startH2CServerWith(t, &http.HTTP2Config{MaxConcurrentStreams: int(maxStreams)}, h)
}

// startH2CServerWith starts an h2c server with the HTTP/2 settings cfg.
func startH2CServerWith(t testing.TB, cfg *http.HTTP2Config, h http.HandlerFunc) *h2cServer {
	t.Helper()
	s := &h2cServer{Server: httptest.NewUnstartedServer(h)}
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Config.HTTP2 = cfg
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(func() {
		s.CloseClientConnections()
		s.Close()
	})
	return s
}

// holdStream answers 200 and holds the stream until the client ends it.
func holdStream(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// readBody reads resp's body to its end, and closes it.
func readBody(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func newTestH2Streams(t *testing.T) *h2Streams {
	p := newH2Streams(&http.Transport{})
	t.Cleanup(p.shutdown)
	return p
}

// getStream sends a GET for path on p, under ctx.
func getStream(ctx context.Context, p *h2Streams, url string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if header != nil {
		req.Header = header
	}
	return p.RoundTrip(req, nil)
}

// TestH2StreamsRequestBodies: POSTs on one connection carry their bodies
// whole, with their length, past upstream windows far smaller than the
// bodies, each stream's in turn as the upstream reads; the request counts
// as written once, when the upstream has all of it.
func TestH2StreamsRequestBodies(t *testing.T) {
	srv := startH2CServerWith(t, &http.HTTP2Config{MaxReceiveBufferPerStream: 4 << 10, MaxReceiveBufferPerConnection: 64 << 10}, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Length", r.Header.Get("Content-Length"))
		w.Write(body)
	})
	p := newTestH2Streams(t)
	sizes := []int{0, 1, 300 << 10, 40 << 10, 1 << 20}
	errs := make(chan error, len(sizes))
	for _, n := range sizes {
		go func() {
			body := make([]byte, n)
			rand.Read(body)
			var wrote atomic.Int32
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Add(1) }}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodPost, srv.URL, nil)
			if err != nil {
				errs <- err
				return
			}
			resp, err := p.RoundTrip(req, body)
			if err != nil {
				errs <- fmt.Errorf("%d bytes: %v", n, err)
				return
			}
			if wrote.Load() != 1 {
				errs <- fmt.Errorf("%d bytes: the response came with the request written %d times, want 1", n, wrote.Load())
				return
			}
			got, err := readBody(resp)
			switch {
			case err != nil || resp.StatusCode != http.StatusOK:
				errs <- fmt.Errorf("%d bytes: %s, %v", n, resp.Status, err)
			case got != string(body):
				errs <- fmt.Errorf("%d bytes: the upstream got %d bytes, not the body sent", n, len(got))
			case resp.Header.Get("X-Length") != fmt.Sprint(n):
				errs <- fmt.Errorf("%d bytes: Content-Length %q", n, resp.Header.Get("X-Length"))
			default:
				errs <- nil
			}
		}()
	}
	for range sizes {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d POSTs took %d connections, want 1", len(sizes), n)
	}
}

// TestH2StreamsAnswerBeforeBody: an upstream that answers a POST before it
// read the body, and never reads it, gets the rest of it no more, and its
// answer reaches the caller; the connection carries the next request.
func TestH2StreamsAnswerBeforeBody(t *testing.T) {
	srv := startH2CServerWith(t, &http.HTTP2Config{MaxReceiveBufferPerStream: 4 << 10}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			http.Error(w, "too big", http.StatusRequestEntityTooLarge)
			return
		}
		io.Copy(io.Discard, r.Body)
	})
	p := newTestH2Streams(t)
	for _, c := range []struct {
		path string
		size int
		want int
	}{{"/big", 1 << 20, http.StatusRequestEntityTooLarge}, {"/next", 10 << 10, http.StatusOK}} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := p.RoundTrip(req, make([]byte, c.size))
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if _, err := readBody(resp); err != nil || resp.StatusCode != c.want {
			t.Errorf("%s: %s, %v; want %d", c.path, resp.Status, err, c.want)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("the two POSTs took %d connections, want 1", n)
	}
}

// TestH2StreamsMultiplexes: streams share one connection, carry the
// request's headers and the response's, and a stream closed by the client
// ends its request upstream.
func TestH2StreamsMultiplexes(t *testing.T) {
	ended := make(chan string, 3)
	srv := startH2CServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		if r.Proto != "HTTP/2.0" || r.Method != http.MethodGet {
			http.Error(w, "want an HTTP/2 GET, got "+r.Method+" "+r.Proto, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Seen", r.Header.Get("Authorization")+" "+r.Header.Get("Last-Event-Id"))
		fmt.Fprintf(w, "data: %s\n\n", r.URL.Path)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		ended <- r.URL.Path
	})
	p := newTestH2Streams(t)
	ctx := t.Context()
	var bodies []io.ReadCloser
	for i := range 3 {
		header := http.Header{"Authorization": {fmt.Sprint("Bearer ", i)}, "Last-Event-Id": {"7"}}
		resp, err := getStream(ctx, p, fmt.Sprintf("%s/s%d", srv.URL, i), header)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream %d: %s, Content-Type %q", i, resp.Status, resp.Header.Get("Content-Type"))
		}
		if got, want := resp.Header.Get("X-Seen"), fmt.Sprintf("Bearer %d 7", i); got != want {
			t.Errorf("stream %d: the upstream saw %q, want %q", i, got, want)
		}
		want := fmt.Sprintf("data: /s%d\n\n", i)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != want {
			t.Fatalf("stream %d read %q, %v; want %q", i, got, err, want)
		}
		bodies = append(bodies, resp.Body)
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("three streams took %d connections, want 1", n)
	}
	for _, b := range bodies {
		b.Close()
	}
	for range 3 {
		<-ended
	}
	if _, err := bodies[0].Read(make([]byte, 1)); !errors.Is(err, errH2BodyClosed) {
		t.Errorf("read after close: %v, want %v", err, errH2BodyClosed)
	}
}

// TestH2StreamsFlowControl: a stream nobody reads holds up no other on its
// connection, and loses nothing of what it carries past its window.
func TestH2StreamsFlowControl(t *testing.T) {
	big := make([]byte, 3*h2StreamWindow+12345)
	rand.Read(big)
	srv := startH2CServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.WriteString(w, "small")
	})
	p := newTestH2Streams(t)
	ctx := t.Context()
	bigResp, err := getStream(ctx, p, srv.URL+"/big", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bigResp.Body.Close()
	small, err := getStream(ctx, p, srv.URL+"/small", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readBody(small); err != nil || got != "small" {
		t.Fatalf("the small stream read %q, %v, while the big one waited", got, err)
	}
	got, err := io.ReadAll(bigResp.Body)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("the big stream read %d bytes (%v), want %d as sent", len(got), err, len(big))
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("the streams took %d connections, want 1", n)
	}
}

// TestH2StreamsMaxConcurrentStreams: streams past what one connection
// takes open another.
func TestH2StreamsMaxConcurrentStreams(t *testing.T) {
	srv := startH2CServer(t, 2, holdStream)
	p := newTestH2Streams(t)
	for i := range 5 {
		resp, err := getStream(t.Context(), p, srv.URL, nil)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		defer resp.Body.Close()
	}
	if n := srv.conns.Load(); n != 3 {
		t.Errorf("5 streams, 2 a connection, took %d connections, want 3", n)
	}
}

// TestH2StreamsResetFreesRoomOnceSent: a stream closed by the client
// counts against the upstream's MAX_CONCURRENT_STREAMS until its
// RST_STREAM is written, so a stream opened right after it is not one past
// the limit, which a Go server resets with PROTOCOL_ERROR.
func TestH2StreamsResetFreesRoomOnceSent(t *testing.T) {
	srv := startH2CServer(t, 2, holdStream)
	p := newTestH2Streams(t)
	held, err := getStream(t.Context(), p, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Body.Close()
	for i := range 200 {
		resp, err := getStream(t.Context(), p, srv.URL, nil)
		if err != nil {
			t.Fatalf("stream %d after closing the one before: %v", i, err)
		}
		resp.Body.Close()
	}
}

// TestH2StreamsRequestContext: a request whose context ends before the
// response comes returns at once, and ends upstream; one whose context
// ends during the body ends the body.
func TestH2StreamsRequestContext(t *testing.T) {
	started, ended := make(chan struct{}, 1), make(chan struct{}, 2)
	srv := startH2CServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
		} else {
			started <- struct{}{}
		}
		<-r.Context().Done()
		ended <- struct{}{}
	})
	p := newTestH2Streams(t)

	ctx, cancel := context.WithCancelCause(t.Context())
	stop := errors.New("the test stops it")
	go func() {
		<-started
		cancel(stop)
	}()
	if _, err := getStream(ctx, p, srv.URL+"/headers", nil); !errors.Is(err, stop) {
		t.Errorf("RoundTrip = %v, want %v", err, stop)
	}
	<-ended

	ctx, cancel = context.WithCancelCause(t.Context())
	resp, err := getStream(ctx, p, srv.URL+"/body", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	go cancel(stop)
	if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, stop) {
		t.Errorf("Read = %v, want %v", err, stop)
	}
	<-ended
}

// TestH2StreamsPark: a stream read without waiting says when it has
// nothing yet, and a parked stream calls back once, when its data comes,
// when it ends, and when its request's context ends; one that holds data
// already does not park.
func TestH2StreamsPark(t *testing.T) {
	send := make(chan string)
	srv := startH2CServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case chunk, ok := <-send:
				if !ok {
					return // the stream ends
				}
				io.WriteString(w, chunk)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	p := newTestH2Streams(t)
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	resp, err := getStream(ctx, p, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, ok := parkable(resp.Body)
	if !ok {
		t.Fatalf("a body of h2Streams (%T) cannot park", resp.Body)
	}
	buf := make([]byte, 64)
	ready := make(chan struct{}, 2)
	park := func() {
		t.Helper()
		if n, err := body.tryRead(buf); n != 0 || err != errWouldWait {
			t.Fatalf("tryRead of an idle stream = %d, %v; want 0, errWouldWait", n, err)
		}
		if !body.park(func() { ready <- struct{}{} }) {
			t.Fatal("an idle stream did not park")
		}
	}
	readNow := func() (string, error) {
		n, err := body.tryRead(buf)
		return string(buf[:n]), err
	}

	park()
	send <- "data: one\n\n"
	<-ready
	if got, err := readNow(); got != "data: one\n\n" || err != nil {
		t.Errorf("tryRead once woken = %q, %v", got, err)
	}
	park()
	send <- "two"
	<-ready
	send <- "three" // comes while no one is parked: park must refuse
	for got := ""; got != "twothree"; {
		if !body.park(func() { ready <- struct{}{} }) {
			chunk, err := readNow()
			if err != nil {
				t.Fatalf("tryRead = %v", err)
			}
			got += chunk
			continue
		}
		<-ready
	}
	park()
	close(send)
	<-ready
	if got, err := readNow(); got != "" || err != io.EOF {
		t.Errorf("tryRead of an ended stream = %q, %v; want io.EOF", got, err)
	}
	if len(ready) != 0 {
		t.Error("a parked stream called back more than once")
	}

	// A stream whose request's context ends wakes its parked reader:
	// here a scope, as the gateway's requests have, watched through its
	// AfterFunc with no channel made.
	sc := newScope(t.Context())
	send = make(chan string)
	resp, err = getStream(sc, p, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ = parkable(resp.Body)
	park()
	if sc.done != nil {
		t.Error("a request's scope made a channel: it is watched through Done")
	}
	stop := errors.New("the test stops it")
	sc.endWith(context.Canceled, stop)
	<-ready
	if _, err := readNow(); !errors.Is(err, stop) {
		t.Errorf("tryRead of a stream whose request ended = %v, want %v", err, stop)
	}
}

// TestH2StreamsConnectionLost: a connection that breaks ends its streams
// with an error, not a clean end, and the next request opens another.
func TestH2StreamsConnectionLost(t *testing.T) {
	srv := startH2CServer(t, 0, holdStream)
	p := newTestH2Streams(t)
	resp, err := getStream(t.Context(), p, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	srv.CloseClientConnections()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("Read on a broken connection = %v, want an error", err)
	}
	resp, err = getStream(t.Context(), p, srv.URL, nil)
	if err != nil {
		t.Fatalf("after the connection broke: %v", err)
	}
	resp.Body.Close()
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("took %d connections, want 2", n)
	}
}

// TestH2StreamsErrorStatus: a refusal comes through with its body.
func TestH2StreamsErrorStatus(t *testing.T) {
	srv := startH2CServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		http.Error(w, "no GET stream here", http.StatusMethodNotAllowed)
	})
	p := newTestH2Streams(t)
	resp, err := getStream(t.Context(), p, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := readBody(resp)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Status != "405 Method Not Allowed" || resp.Header.Get("Allow") != "POST" {
		t.Errorf("got %q, Allow %q", resp.Status, resp.Header.Get("Allow"))
	}
	if err != nil || body != "no GET stream here\n" {
		t.Errorf("body %q, %v", body, err)
	}
}

// TestH2StreamsIdleAndShutdown: a connection without streams closes on
// closeIdle, and after shutdown nothing opens.
func TestH2StreamsIdleAndShutdown(t *testing.T) {
	srv := startH2CServer(t, 0, func(w http.ResponseWriter, r *http.Request) {})
	p := newTestH2Streams(t)
	resp, err := getStream(t.Context(), p, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	readBody(resp)
	p.mu.Lock()
	cc := p.conns[0]
	p.mu.Unlock()
	p.closeIdle()
	select {
	case <-cc.done:
	default:
		t.Fatal("closeIdle left an idle connection open")
	}
	p.shutdown()
	if _, err := getStream(t.Context(), p, srv.URL, nil); !errors.Is(err, errH2Closed) {
		t.Errorf("after shutdown: %v, want %v", err, errH2Closed)
	}
}

// TestH2StreamsGoAwayRetries: a request the upstream did not take before
// its GOAWAY goes again on a new connection. The upstream is a framer of
// the test's, which sends GOAWAY on its first connection for the first
// request, and answers on the second.
func TestH2StreamsGoAwayRetries(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 2)
	go func() {
		for i := range 2 {
			nc, err := ln.Accept()
			if err != nil {
				served <- err
				return
			}
			go func() {
				defer nc.Close()
				served <- serveOneStream(nc, i == 0)
			}()
		}
	}()
	p := newTestH2Streams(t)
	resp, err := getStream(t.Context(), p, "http://"+ln.Addr().String()+"/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := readBody(resp); err != nil || body != "second" {
		t.Errorf("read %q, %v; want the second connection's answer", body, err)
	}
	p.closeIdle()
	for range 2 {
		if err := <-served; err != nil {
			t.Error(err)
		}
	}
}

// serveOneStream speaks HTTP/2 on nc for one request: GOAWAY with no
// stream taken if goAway, else a 200 with a body.
func serveOneStream(nc net.Conn, goAway bool) error {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(nc, preface); err != nil {
		return err
	}
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		return err
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		h, ok := f.(*http2.MetaHeadersFrame)
		if !ok {
			continue
		}
		if goAway {
			return fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		}
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
			return err
		}
		if err := fr.WriteData(h.StreamID, true, []byte("second")); err != nil {
			return err
		}
		// Wait for the client to close the connection.
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return nil
			}
		}
	}
}

// TestStreamsOverTLS: an https upstream that offers h2 by ALPN gets the
// GET streams on the gateway's own connections; one that offers only
// HTTP/1.1 gets them over net/http's.
func TestStreamsOverTLS(t *testing.T) {
	proto := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }
	h2 := httptest.NewUnstartedServer(http.HandlerFunc(proto))
	h2.EnableHTTP2 = true
	h2.StartTLS()
	defer h2.Close()
	h1 := httptest.NewTLSServer(http.HandlerFunc(proto))
	defer h1.Close()

	for _, c := range []struct {
		srv  *httptest.Server
		want string
	}{{h2, "HTTP/2.0"}, {h1, "HTTP/1.1"}} {
		tr := newUpstreamTransport()
		tr.h1.TLSClientConfig = c.srv.Client().Transport.(*http.Transport).TLSClientConfig
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, c.srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.RoundTrip(req, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.want, err)
		}
		if body, err := readBody(resp); err != nil || body != c.want {
			t.Errorf("the upstream saw %q (%v), want %s", body, err, c.want)
		}
		_, ours := resp.Body.(*h2Stream)
		if ours != (c.want == "HTTP/2.0") {
			t.Errorf("%s: the stream went on h2Streams: %t", c.want, ours)
		}
		tr.shutdown()
	}
}
