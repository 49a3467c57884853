package mcpsse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxUpstreamMessage bounds one message from the upstream, so that a broken
// upstream cannot make the gateway buffer without end.
const maxUpstreamMessage = 64 << 20

// relayAnswer relays, under ctx, the upstream's answer to m, JSON or an event stream,
// message by message in the order the upstream sent them. For a request it
// returns an error unless the response to it came through; onResponse, if
// set, sees that response before the client does.
func (s *session) relayAnswer(ctx context.Context, resp *http.Response, m message, onResponse func(message), cfg *settings) error {
	if err := checkStatus(resp); err != nil {
		// A refused credential is the client's to answer, by status.
		if se := err.(*statusError); !se.refusesCredential() && m.kind == kindRequest && s.relayErrorBody(ctx, resp, m) {
			return nil
		}
		return err
	}
	to := answerTo{quiet: m.quiet, onResponse: onResponse}
	if m.kind == kindRequest {
		to.id = m.id
		to.pending = m.pended
	}
	mt, _ := mediaType(resp.Header.Get("Content-Type"))
	switch mt {
	case "text/event-stream":
		return s.relayAnswerEvents(ctx, resp.Body, to, cfg)
	case "application/json":
		body, err := readJSONAnswer(resp.Body)
		if err != nil {
			return err
		}
		found, err := s.relayPayload(ctx, body, &to)
		switch {
		case to.id == nil && errors.Is(err, errNotMCP):
			// A notification or response has no answer to wait for
			// (202 without a body, as the specification has it); a body
			// that is no message is none, and must not stop the session,
			// which a failed notifications/initialized would.
			if c := s.store.logger().Check(zapcore.DebugLevel, "upstream answered a notification or response with a body that is not MCP"); c != nil {
				c.Write(zap.String("session", s.tag), zap.String("method", m.method), zap.Error(err))
			}
			return nil
		case err == nil && to.id != nil && !found:
			err = errNoResponse
		}
		return err
	}
	if to.id == nil {
		// Notifications and responses are accepted with any 2xx,
		// 202 without a body as the specification has it.
		return nil
	}
	if mt == "" {
		return fmt.Errorf("%w: %s without a body", errNotMCP, resp.Status)
	}
	return fmt.Errorf("%w: %s with %q", errNotMCP, resp.Status, mt)
}

// readJSONAnswer reads an upstream answer of type application/json, up to
// maxUpstreamMessage.
func readJSONAnswer(body io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(body, maxUpstreamMessage+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBrokenAnswer, err)
	}
	if len(b) > maxUpstreamMessage {
		return nil, fmt.Errorf("%w: an answer over %d bytes", errNotMCP, maxUpstreamMessage)
	}
	return b, nil
}

// errorBodyResponse returns the JSON-RPC response to the request id found
// in the body of a failed upstream request, if it holds one.
func errorBodyResponse(resp *http.Response, id json.RawMessage) (message, bool) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return message{}, false
	}
	r, err := parseMessage(body)
	return r, err == nil && r.kind == kindResponse && sameID(r.id, id)
}

// relayErrorBody relays a JSON-RPC error response to m found in the body of
// a failed upstream request, and reports whether it did.
func (s *session) relayErrorBody(ctx context.Context, resp *http.Response, m message) bool {
	r, ok := errorBodyResponse(resp, m.id)
	return ok && s.relayToClient(ctx, r.raw, r.kind, answerTo{}) == nil
}

// answerTo says what an upstream answer answers: the request with id, if
// any; quiet, if none of it is for the client; onResponse, if set, sees the
// response before the client does. In a cluster, pending says that the
// request is recorded as relayed here (see pend), and its answer's
// progress is too; stream is the reader of the upstream's GET stream, for
// its messages.
type answerTo struct {
	id         json.RawMessage
	quiet      bool
	onResponse func(message)
	pending    bool
	stream     *sseReader
}

// relayEvents relays the messages of one body of an upstream event stream.
// For a request it returns once the response came through, and an error if
// the body ends before; else it relays until the body ends.
func (s *session) relayEvents(ctx context.Context, events *sseReader, to *answerTo) error {
	progress := events.lastID
	for {
		ev, ok, err := events.parse()
		if !ok && err == nil {
			// An idle stream's goroutine waits in this read, right under
			// this frame rather than under next's: the upstream GET
			// stream's goroutine waits here for the session's life, and
			// Go halves a waiting goroutine's stack only while it uses
			// under a quarter of it.
			if err = events.fill(); err == nil {
				continue
			}
			if err == errWouldWait {
				return err // the GET stream's relay parks (see relayListenBody)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && to.id == nil {
				return nil // what waits for no response ends cleanly
			}
			return eventsError(err)
		}
		if to.pending && events.lastID != progress {
			progress = events.lastID
			s.progressed(to.id, progress)
		}
		if len(ev.data) == 0 {
			// A priming event (an id, maybe a retry, empty data), which
			// 2025-11-25 servers open their answers with, or a keep-alive:
			// no message, as the SDK clients read it.
			continue
		}
		found, err := s.relayPayload(ctx, ev.data, to)
		if err != nil || found {
			return err
		}
	}
}

// answerEndWait bounds the wait for the end of an answer stream once the
// response came through. Servers end it right after the response, as the
// specification has them do; one that leaves it open has it cut.
const answerEndWait = 250 * time.Millisecond

// relayAnswerRest relays what an answer stream still holds after the
// response, up to its end. Reading that end, where closing the body would
// cut the stream short, lets the stream end cleanly: over HTTP/2 with no
// RST_STREAM for the upstream to handle, over HTTP/1.1 with the connection
// kept for the next request. A stream still open after answerEndWait is
// cut, its request ended; a body that is not an upstream request's is left
// to its closing.
func (s *session) relayAnswerRest(ctx context.Context, events *sseReader, to answerTo) {
	body, ok := events.r.(*endOnClose)
	if !ok {
		return
	}
	cut := time.AfterFunc(answerEndWait, body.request.end)
	defer cut.Stop()
	to.id, to.pending, to.onResponse = nil, false, nil
	if err := s.relayEvents(ctx, events, &to); err != nil {
		if c := s.store.logger().Check(zapcore.DebugLevel, "upstream answer stream did not end after the response"); c != nil {
			c.Write(zap.String("session", s.tag), zap.Error(err))
		}
	}
}

// relayPayload relays one JSON-RPC message or batch from the upstream and
// reports whether it held the response to the request.
func (s *session) relayPayload(ctx context.Context, payload []byte, to *answerTo) (bool, error) {
	msgs, err := parseMessages(payload)
	if err != nil {
		return false, fmt.Errorf("%w: %v", errNotMCP, err)
	}
	found := false
	for _, r := range msgs {
		isAnswer := to.id != nil && r.kind == kindResponse && sameID(r.id, to.id)
		if isAnswer && to.onResponse != nil {
			to.onResponse(r)
		}
		found = found || isAnswer
		if to.quiet {
			continue
		}
		if c := s.store.logger().Check(zapcore.DebugLevel, "relaying upstream message"); c != nil {
			c.Write(zap.String("session", s.tag), zap.Stringer("kind", r.kind), zap.String("method", r.method))
		}
		if err := s.relayToClient(ctx, r.raw, r.kind, *to); err != nil {
			return found, err
		}
	}
	return found, nil
}
