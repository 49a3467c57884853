package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// clientOptions says how the generator connects.
type clientOptions struct {
	// h2c multiplexes every session over HTTP/2 cleartext connections;
	// otherwise each stream has its own HTTP/1.1 connection.
	h2c bool
	// sources is how many loopback source addresses (127.0.0.2 and up)
	// the connections are spread over.
	sources int
}

// newHTTPClient returns the client every session of a run shares.
func newHTTPClient(opts clientOptions) *http.Client {
	var next atomic.Uint32
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := *dialer
			if opts.sources > 0 {
				n := next.Add(1) % uint32(opts.sources)
				d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+n))}
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	if opts.h2c {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Client{Transport: t}
}

// answer is a JSON-RPC response read from a stream.
type answer struct {
	id    int64
	error string
}

// sseSession is one HTTP+SSE session, read the way an MCP client reads it.
type sseSession struct {
	client   *http.Client
	endpoint string
	cancel   context.CancelFunc
	answers  chan answer
	// ended is closed when the stream ends; err says why.
	ended chan struct{}
	err   error
	// closing is set once the generator itself closes the session.
	closing atomic.Bool
	nextID  int64
}

// opening says how far openSSE takes a session.
type opening int

const (
	// throughInitialize initializes the session, as an MCP client does.
	throughInitialize opening = iota
	// toEndpoint stops at the endpoint event: the hold floor has no
	// session to initialize.
	toEndpoint
	// postingSetup posts initialize and notifications/initialized after
	// the endpoint event, as a client sets a session up, and reads no
	// answer: the hold floor accepts the messages and does nothing more.
	postingSetup
)

// openSSE opens a session at the stream URL and, as how says, initializes
// it.
func openSSE(ctx context.Context, client *http.Client, streamURL string, how opening) (*sseSession, error) {
	base, err := url.Parse(streamURL)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, streamURL, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening the stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("opening the stream: %s", resp.Status)
	}
	s := &sseSession{
		client:  client,
		cancel:  cancel,
		answers: make(chan answer, 16), // room for late answers to calls that timed out
		ended:   make(chan struct{}),
		nextID:  1,
	}
	endpoint := make(chan string, 1)
	go s.read(resp.Body, endpoint)
	select {
	case e := <-endpoint:
		u, err := base.Parse(e)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("endpoint %q: %v", e, err)
		}
		s.endpoint = u.String()
	case <-s.ended:
		cancel()
		return nil, fmt.Errorf("the stream ended before the endpoint event: %w", s.err)
	case <-ctx.Done():
		s.close()
		return nil, ctx.Err()
	}
	switch how {
	case toEndpoint:
		return s, nil
	case postingSetup:
		if err := s.post(ctx, request(1, "initialize", initializeParams)); err != nil {
			s.close()
			return nil, fmt.Errorf("initialize: %w", err)
		}
		if err := s.post(ctx, []byte(initialized)); err != nil {
			s.close()
			return nil, fmt.Errorf("notifications/initialized: %w", err)
		}
		return s, nil
	}
	if err := s.initialize(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// What every session sends: its initialize params, the notification that
// follows, and the params of its echo calls.
const (
	initializeParams = `{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"mcp-sse-bench","version":"1.0.0"}}`
	initialized      = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	echoParams       = `{"name":"echo","arguments":{"text":"hello"}}`
)

// request is a JSON-RPC request.
func request(id int64, method, params string) []byte {
	return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params)
}

func (s *sseSession) initialize(ctx context.Context) error {
	if _, err := s.call(ctx, "initialize", initializeParams); err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if err := s.post(ctx, []byte(initialized)); err != nil {
		return fmt.Errorf("notifications/initialized: %w", err)
	}
	return nil
}

// callEcho calls the echo tool and waits for its result.
func (s *sseSession) callEcho(ctx context.Context) error {
	_, err := s.call(ctx, "tools/call", echoParams)
	return err
}

// call posts a request and waits for its response on the stream.
func (s *sseSession) call(ctx context.Context, method, params string) (answer, error) {
	id := s.nextID
	s.nextID++
	if err := s.post(ctx, request(id, method, params)); err != nil {
		return answer{}, err
	}
	for {
		select {
		case a := <-s.answers:
			if a.id != id {
				continue // a late answer to an earlier call
			}
			if a.error != "" {
				return a, fmt.Errorf("%s: %s", method, a.error)
			}
			return a, nil
		case <-s.ended:
			return answer{}, fmt.Errorf("the stream ended: %w", s.err)
		case <-ctx.Done():
			return answer{}, ctx.Err()
		}
	}
}

// post sends one message to the session's endpoint.
func (s *sseSession) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST: %s", resp.Status)
	}
	return nil
}

// read reads the stream until it ends: the endpoint event, then responses.
func (s *sseSession) read(body io.ReadCloser, endpoint chan<- string) {
	defer close(s.ended)
	defer body.Close()
	err := readEvents(bufio.NewReaderSize(body, 1024), func(event string, data []byte) {
		switch event {
		case "endpoint":
			endpoint <- string(data)
		case "message":
			if a, ok := parseAnswer(data); ok {
				select {
				case s.answers <- a:
				default: // nobody waits for it
				}
			}
		}
	})
	if err == nil {
		err = io.EOF
	}
	s.err = err
}

// dropped reports whether the stream ended without the generator closing it.
func (s *sseSession) dropped() bool {
	select {
	case <-s.ended:
		return !s.closing.Load()
	default:
		return false
	}
}

// close ends the session's stream and waits for its reader.
func (s *sseSession) close() {
	s.closing.Store(true)
	s.cancel()
	<-s.ended
}

// readEvents calls fn for every event of an SSE stream until it ends.
func readEvents(r *bufio.Reader, fn func(event string, data []byte)) error {
	var event string
	var data []byte
	for {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		switch {
		case len(line) == 0:
			if data != nil {
				if event == "" {
					event = "message"
				}
				fn(event, data)
			}
			event, data = "", nil
		case line[0] == ':':
			// a comment: a keep-alive ping
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "event":
				event = string(value)
			case "data":
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, value...)
			}
		}
	}
}

// readLine reads one line without its end, however long it is.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = r.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err != nil {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// parseAnswer reads the id and error of a response; notifications and
// requests from the server are not answers.
func parseAnswer(data []byte) (answer, bool) {
	var m struct {
		ID    *int64 `json:"id"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
		Method string `json:"method"`
	}
	if json.Unmarshal(data, &m) != nil || m.ID == nil || m.Method != "" {
		return answer{}, false
	}
	a := answer{id: *m.ID}
	if m.Error != nil {
		a.error = m.Error.Message
		if a.error == "" {
			a.error = "error without a message"
		}
	}
	return a, true
}

// streamableSession is a session with a Streamable HTTP server, called
// directly: the floor for the gateway's added latency.
type streamableSession struct {
	client    *http.Client
	url       string
	sessionID string
	nextID    int64
}

// openStreamable initializes a Streamable HTTP session at url.
func openStreamable(ctx context.Context, client *http.Client, url string) (*streamableSession, error) {
	s := &streamableSession{client: client, url: url, nextID: 1}
	if err := s.call(ctx, "initialize", initializeParams); err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	resp, err := s.post(ctx, []byte(initialized))
	if err != nil {
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	resp.Body.Close()
	return s, nil
}

func (s *streamableSession) callEcho(ctx context.Context) error {
	return s.call(ctx, "tools/call", echoParams)
}

// call posts a request and reads its response from the POST's answer.
func (s *streamableSession) call(ctx context.Context, method, params string) error {
	id := s.nextID
	s.nextID++
	resp, err := s.post(ctx, request(id, method, params))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if s.sessionID == "" {
		s.sessionID = resp.Header.Get("Mcp-Session-Id")
	}
	var got *answer
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		err = readEvents(bufio.NewReader(resp.Body), func(_ string, data []byte) {
			if a, ok := parseAnswer(data); ok && a.id == id {
				got = &a
			}
		})
		if errors.Is(err, io.EOF) {
			err = nil
		}
	} else {
		var data []byte
		if data, err = io.ReadAll(resp.Body); err == nil {
			if a, ok := parseAnswer(data); ok && a.id == id {
				got = &a
			}
		}
	}
	switch {
	case err != nil:
		return err
	case got == nil:
		return fmt.Errorf("%s: no response", method)
	case got.error != "":
		return fmt.Errorf("%s: %s", method, got.error)
	}
	return nil
}

func (s *streamableSession) post(ctx context.Context, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if s.sessionID != "" {
		req.Header.Set("Mcp-Session-Id", s.sessionID)
		req.Header.Set("Mcp-Protocol-Version", "2024-11-05")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		return nil, fmt.Errorf("POST: %s", resp.Status)
	}
	return resp, nil
}
