package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The raw SSE client: reads the gateway's stream line by line.

// rawStream is an SSE client that reads the gateway's stream line by line,
// for what the SDK clients hide: comments, ids, framing.
type rawStream struct {
	resp     *http.Response
	lines    *bufio.Reader
	endpoint string
}

// openRaw opens a stream and reads its endpoint event.
func openRaw(t *testing.T, client *http.Client, url string, header http.Header) *rawStream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	s, err := openStream(client, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.resp.Body.Close() })
	return s
}

// openStream opens a stream and reads its endpoint event; it fails no test,
// for use in goroutines.
func openStream(client *http.Client, req *http.Request) (*rawStream, error) {
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	s := &rawStream{resp: resp, lines: bufio.NewReader(resp.Body)}
	ev, err := s.next()
	if err == nil && ev.name != "endpoint" {
		err = fmt.Errorf("first event is %q, want endpoint", ev.name)
	}
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("reading the endpoint event: %w", err)
	}
	s.endpoint = string(ev.data)
	return s, nil
}

// rawEvent is one event or comment as it came over the wire.
type rawEvent struct {
	name, id string
	data     []byte
	comment  string
	lines    []string
}

// next reads the next event or comment block.
func (s *rawStream) next() (rawEvent, error) {
	var ev rawEvent
	for {
		line, err := s.lines.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" && len(ev.lines) == 0 {
				return ev, io.EOF
			}
			return ev, fmt.Errorf("reading stream: %w (partial %q)", err, line)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if len(ev.lines) == 0 {
				continue
			}
			return ev, nil
		}
		ev.lines = append(ev.lines, line)
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			ev.comment = value
		case "event":
			ev.name = value
		case "id":
			ev.id = value
		case "data":
			ev.data = append(ev.data, value...)
		}
	}
}

// nextMessage skips comments and returns the next message event.
func (s *rawStream) nextMessage() (rawEvent, error) {
	for {
		ev, err := s.next()
		if err != nil || ev.comment == "" {
			return ev, err
		}
	}
}

// post sends body to the stream's message endpoint and returns the status.
func (s *rawStream) post(t *testing.T, body string) int {
	t.Helper()
	return s.postVia(t, http.DefaultClient, gatewayURL, body)
}

// postVia is post through client to the site at base.
func (s *rawStream) postVia(t *testing.T, client *http.Client, base, body string) int {
	t.Helper()
	resp, err := client.Post(base+s.endpoint, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", s.endpoint, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// initialize sends initialize and waits for its answer on the stream.
func (s *rawStream) initialize(client *http.Client, base string) error {
	resp, err := client.Post(base+s.endpoint, "application/json", strings.NewReader(initializeRequest))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("initialize answered %s", resp.Status)
	}
	ev, err := s.nextMessage()
	if err != nil {
		return err
	}
	if !strings.Contains(string(ev.data), `"result"`) {
		return errors.New("initialize failed: " + string(ev.data))
	}
	return nil
}

const initializeRequest = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
