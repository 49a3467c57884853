package mcpsse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// pingComment is the keep-alive: an SSE comment, which every client ignores.
// A named event or a data line would not do: the Go SDK's client decodes the
// data of every event after `endpoint` as JSON-RPC and closes the session on
// anything else.
var pingComment = []byte(": ping\n\n")

// appendEndpointEvent appends the `endpoint` event that opens every stream.
func appendEndpointEvent(dst []byte, endpoint string) []byte {
	dst = append(dst, "event: endpoint\ndata: "...)
	dst = append(dst, endpoint...)
	return append(dst, "\n\n"...)
}

// appendMessageEvent appends a `message` event carrying data, which must be
// compact JSON (sanitizeJSON makes it so). The id names the session and the
// event's position in it.
func appendMessageEvent(dst []byte, sessionID string, seq uint64, data []byte) []byte {
	dst = append(dst, "id: "...)
	dst = append(dst, sessionID...)
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, "\nevent: message\ndata: "...)
	dst = append(dst, data...)
	return append(dst, "\n\n"...)
}

var (
	lineSeparator      = []byte("\u2028")
	paragraphSeparator = []byte("\u2029")
)

// sanitizeJSON returns raw as one line of compact JSON that no SSE parser
// can split: valid JSON has line breaks only as whitespace between tokens,
// which compacting removes, and U+2028 and U+2029, which some JavaScript
// parsers treat as line ends, can only stand inside strings, where their
// escaped form means the same.
func sanitizeJSON(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(raw))
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	out := b.Bytes()
	if bytes.Contains(out, lineSeparator) || bytes.Contains(out, paragraphSeparator) {
		out = bytes.ReplaceAll(out, lineSeparator, []byte(`\u2028`))
		out = bytes.ReplaceAll(out, paragraphSeparator, []byte(`\u2029`))
	}
	return out, nil
}

// sseEvent is one event read from an upstream stream.
type sseEvent struct {
	name string
	id   string
	data []byte
}

// errEventTooLarge is returned for an upstream event over the size limit.
var errEventTooLarge = errors.New("event too large")

// sseReader reads events from a text/event-stream body as the SSE
// specification parses them: lines end in CRLF, LF or CR; data lines join
// with LF; comments and unknown fields are skipped.
type sseReader struct {
	r       *bufio.Reader
	maxSize int
	line    []byte
	pending []byte // the rest of a chunk after a bare CR
}

func newSSEReader(r io.Reader, maxSize int) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 32<<10), maxSize: maxSize}
}

// next returns the next event with data. At the end of the body it
// returns io.EOF; an event cut off by the end of the body is dropped, as
// the specification requires.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	var data []byte
	hasData := false
	size := 0
	for {
		line, err := s.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		size += len(line)
		if size > s.maxSize {
			return sseEvent{}, fmt.Errorf("%w: over %d bytes", errEventTooLarge, s.maxSize)
		}
		if len(line) == 0 {
			if hasData {
				ev.data = data
				return ev, nil
			}
			ev = sseEvent{}
			size = 0
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		case "event":
			ev.name = string(value)
		case "id":
			ev.id = string(value)
		}
	}
}

// readLine returns the next line without its terminator. The returned
// slice is valid until the next call.
func (s *sseReader) readLine() ([]byte, error) {
	if s.pending != nil {
		return s.splitCR(s.pending), nil
	}
	s.line = s.line[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		s.line = append(s.line, chunk...)
		if len(s.line) > s.maxSize {
			return nil, fmt.Errorf("%w: a line over %d bytes", errEventTooLarge, s.maxSize)
		}
		switch {
		case err == nil:
			line := bytes.TrimSuffix(s.line[:len(s.line)-1], []byte("\r"))
			return s.splitCR(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(s.line) > 0 {
				// A final line without terminator ends an incomplete event.
				return nil, io.ErrUnexpectedEOF
			}
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}

// splitCR returns line up to its first bare CR and keeps the rest for the
// next call.
func (s *sseReader) splitCR(line []byte) []byte {
	before, after, found := bytes.Cut(line, []byte("\r"))
	if found {
		s.pending = after
	} else {
		s.pending = nil
	}
	return before
}
