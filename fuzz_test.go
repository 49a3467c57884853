package mcpsse

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// FuzzParseMessages feeds POST bodies to parseMessages and checks what the
// gateway relies on:
//   - it never panics, and refuses with a *rpcError: codeParseError for a
//     body that is not JSON, codeInvalidRequest for JSON that is not a
//     JSON-RPC message or batch; the refusal encodes as a JSON-RPC error
//     response with a null id;
//   - each accepted message is as checkMessage describes;
//   - readEnvelope reads what json.Unmarshal reads, where it reads at all.
func FuzzParseMessages(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		checkEnvelope(t, body)
		msgs, err := parseMessages(body)
		if err != nil {
			checkRefusal(t, body, err)
			return
		}
		if len(msgs) == 0 {
			t.Fatal("accepted a body with no messages")
		}
		for _, m := range msgs {
			checkMessage(t, m)
		}
	})
}

// FuzzSSEReader reads a fuzzed upstream event stream and checks that:
//   - the reader never panics and ends, with io.EOF, io.ErrUnexpectedEOF or
//     errEventTooLarge, having returned no more events than the stream has
//     bytes;
//   - no event's data is over the size limit;
//   - the events and the error class do not depend on how the stream is cut
//     into reads: in the largest reads, one byte at a time, or in sizes drawn
//     from chunking, but for the one case where io.EOF comes with the last
//     bytes, explained below;
//   - every JSON-RPC payload among the events is as checkMessage describes,
//     as relayPayload sees it on its way to the client.
//
// The size limit is small so that mutated inputs cross it often: reading
// a stream of a few KiB one byte at a time takes milliseconds.
func FuzzSSEReader(f *testing.F) {
	const maxSize = 1 << 8
	f.Fuzz(func(t *testing.T, stream []byte, chunking byte) {
		events, err := readEvents(bytes.NewReader(stream), maxSize)
		end := endClass(err)
		if end == "" {
			t.Fatalf("stream ended with %v", err)
		}
		if len(events) > len(stream) {
			t.Fatalf("%d events from %d bytes", len(events), len(stream))
		}
		for _, ev := range events {
			if len(ev.data) > maxSize {
				t.Fatalf("event data of %d bytes, over the limit of %d", len(ev.data), maxSize)
			}
		}

		// The line-length check in readLine fires on a line over maxSize
		// that has no line end yet; next's event-size check fires once such
		// a line is read whole. Either fires at the same line, so where the
		// reads end does not matter, as long as io.EOF comes in a read of
		// its own, as bytes.Reader and these readers deliver it.
		cuts := map[string]io.Reader{
			"one byte at a time": iotest.OneByteReader(bytes.NewReader(stream)),
			"chunked":            &chunkReader{data: stream, state: chunking},
		}
		for name, r := range cuts {
			got, gotErr := readEvents(r, maxSize)
			checkSameEvents(t, name, events, got)
			if gotEnd := endClass(gotErr); gotEnd != end {
				t.Fatalf("%s: stream ended with %q, in the largest reads with %q", name, gotEnd, end)
			}
		}
		// A reader may return io.EOF with the last bytes, as net/http's body
		// does. A last line over maxSize without a line end is then known to
		// be cut off before it is known to be too long: the stream ends with
		// io.ErrUnexpectedEOF instead of errEventTooLarge.
		got, gotErr := readEvents(iotest.DataErrReader(bytes.NewReader(stream)), maxSize)
		checkSameEvents(t, "EOF with the last bytes", events, got)
		gotEnd := endClass(gotErr)
		cutLongLine := len(stream)-1-bytes.LastIndexAny(stream, "\r\n") > maxSize
		if gotEnd != end && !(cutLongLine && end == "event too large" && gotEnd == "unexpected EOF") {
			t.Fatalf("EOF with the last bytes: stream ended with %q, in the largest reads with %q", gotEnd, end)
		}

		for _, ev := range events {
			msgs, err := parseMessages(ev.data)
			if err != nil {
				continue
			}
			for _, m := range msgs {
				checkMessage(t, m)
			}
		}
	})
}

// checkEnvelope checks that readEnvelope, given a valid JSON object, or
// each object of a batch, either declines it or reads what
// json.Unmarshal reads from it.
func checkEnvelope(t *testing.T, body []byte) {
	t.Helper()
	raw := bytes.Trim(body, jsonSpace)
	var batch []json.RawMessage
	if len(raw) > 0 && raw[0] == '[' && json.Unmarshal(raw, &batch) == nil {
		for _, m := range batch {
			checkEnvelope(t, m)
		}
		return
	}
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return
	}
	var got, want envelope
	if !readEnvelope(raw, &got) {
		return
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("readEnvelope read %s, which json.Unmarshal refuses: %v", raw, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("readEnvelope read %s as %+v, json.Unmarshal as %+v", raw, got, want)
	}
}

// checkRefusal checks the error parseMessages refused body with.
func checkRefusal(t *testing.T, body []byte, err error) {
	t.Helper()
	// serveMessage asserts the type; anything else would panic there.
	rpcErr, ok := err.(*rpcError)
	if !ok {
		t.Fatalf("error %v is a %T, not a *rpcError", err, err)
	}
	want := codeInvalidRequest
	if !json.Valid(body) {
		want = codeParseError
	}
	if rpcErr.code != want {
		t.Fatalf("error code %d (%v), want %d", rpcErr.code, err, want)
	}
	resp, err := parseMessage(errorResponse(nil, rpcErr.code, rpcErr.msg))
	if err != nil || resp.kind != kindResponse || string(resp.id) != "null" {
		t.Fatalf("refusal encodes as %s (%v), not a response with a null id", resp.raw, err)
	}
}

// checkMessage checks an accepted message on its way through the gateway:
//   - its kind matches its id and method, and its raw form is compact JSON
//     that parses back to the same message;
//   - for a request, the error response the gateway sends when the upstream
//     fails parses as a response with the same id;
//   - eventData makes it one line that means the same, and a message
//     event carrying that line reads back unchanged.
func checkMessage(t *testing.T, m message) {
	t.Helper()
	switch m.kind {
	case kindRequest:
		if m.id == nil || m.method == "" {
			t.Fatalf("request %s with id %s and method %q", m.raw, m.id, m.method)
		}
	case kindNotification:
		if m.id != nil || m.method == "" {
			t.Fatalf("notification %s with id %s and method %q", m.raw, m.id, m.method)
		}
	case kindResponse:
		if m.id == nil || m.method != "" {
			t.Fatalf("response %s with id %s and method %q", m.raw, m.id, m.method)
		}
	}

	var compact bytes.Buffer
	if err := json.Compact(&compact, m.raw); err != nil || !bytes.Equal(compact.Bytes(), m.raw) {
		t.Fatalf("raw message %q is not compact JSON (%v)", m.raw, err)
	}
	again, err := parseMessage(m.raw)
	if err != nil {
		t.Fatalf("raw message %s does not parse again: %v", m.raw, err)
	}
	if again.kind != m.kind || again.method != m.method || !bytes.Equal(again.id, m.id) {
		t.Fatalf("raw message %s parses again as %v %q id %s, was %v %q id %s",
			m.raw, again.kind, again.method, again.id, m.kind, m.method, m.id)
	}

	if m.kind == kindRequest {
		// json.Marshal escapes <, > and & in the id, so the echo is the
		// same JSON value but not always the same bytes.
		resp := errorResponse(m.id, codeInternalError, "upstream: failed")
		r, err := parseMessage(resp)
		if err != nil || r.kind != kindResponse {
			t.Fatalf("error response %s to %s does not parse as a response: %v", resp, m.raw, err)
		}
		if !reflect.DeepEqual(decodeJSON(t, r.id), decodeJSON(t, m.id)) {
			t.Fatalf("error response %s to %s has another id", resp, m.raw)
		}
	}

	data := eventData(m.raw)
	if i := bytes.IndexAny(data, "\r\n\u2028\u2029"); i >= 0 {
		t.Fatalf("sanitized %s holds a line break at byte %d", data, i)
	}
	if !json.Valid(data) {
		t.Fatalf("sanitized %q is not valid JSON", data)
	}
	if !reflect.DeepEqual(decodeJSON(t, data), decodeJSON(t, m.raw)) {
		t.Fatalf("sanitized %s does not mean %s", data, m.raw)
	}
	checkEventRoundTrip(t, data)
}

// checkEventRoundTrip checks that data comes back unchanged from a message
// event read by the upstream SSE reader, which parses as clients do.
func checkEventRoundTrip(t *testing.T, data []byte) {
	t.Helper()
	stream := appendMessageEvent(nil, "session", 7, data)
	events, err := readEvents(bytes.NewReader(stream), len(stream))
	if !errors.Is(err, io.EOF) || len(events) != 1 {
		t.Fatalf("message event %q reads as %d events, then %v", stream, len(events), err)
	}
	ev := events[0]
	if ev.name != "message" || ev.id != "session:7" || !bytes.Equal(ev.data, data) {
		t.Fatalf("message event %q reads as %q id %q data %q", stream, ev.name, ev.id, ev.data)
	}
}

// decodeJSON decodes valid JSON as encoding/json does, numbers kept as text
// so that none is out of range.
func decodeJSON(t *testing.T, data []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", data, err)
	}
	return v
}

// readEvents reads events from r until the reader returns an error.
func readEvents(r io.Reader, maxSize int) ([]sseEvent, error) {
	events := newSSEReader(r, maxSize)
	var all []sseEvent
	for {
		ev, err := events.next()
		if err != nil {
			return all, err
		}
		all = append(all, ev)
	}
}

// endClass names how an event stream ended, or returns "" for an error the
// reader should not return from an in-memory stream.
func endClass(err error) string {
	switch {
	case errors.Is(err, errEventTooLarge):
		return "event too large"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, io.EOF):
		return "EOF"
	}
	return ""
}

// checkSameEvents checks that a stream cut into reads as named gave the
// events it gave in the largest reads.
func checkSameEvents(t *testing.T, name string, want, got []sseEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, in the largest reads %d", name, len(got), len(want))
	}
	for i := range want {
		if got[i].name != want[i].name || got[i].id != want[i].id || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("%s: event %d is %q id %q data %q, in the largest reads %q id %q data %q",
				name, i, got[i].name, got[i].id, got[i].data, want[i].name, want[i].id, want[i].data)
		}
	}
}

// chunkReader returns data in reads of 1 to 61 bytes, their sizes drawn
// from state, so that line ends, CRLF pairs and field names fall across
// reads at varied points.
type chunkReader struct {
	data  []byte
	state byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	// A full-period generator over the byte: multiplier 1 mod 4, odd step.
	r.state = r.state*37 + 11
	n := copy(p, r.data[:min(1+int(r.state%61), len(r.data))])
	r.data = r.data[n:]
	return n, nil
}
