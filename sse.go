package mcpsse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
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
// compact JSON (eventData makes it so). The id names the session and the
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

// eventData returns a message's compact JSON, as message.raw holds it, as
// one line that no SSE parser can split: compact JSON has no line breaks
// (valid JSON has them only as whitespace between tokens), and U+2028 and
// U+2029, which some JavaScript parsers treat as line ends, can only stand
// inside strings, where their escaped form means the same.
func eventData(compact []byte) []byte {
	if !bytes.Contains(compact, lineSeparator) && !bytes.Contains(compact, paragraphSeparator) {
		return compact
	}
	out := bytes.ReplaceAll(compact, lineSeparator, []byte(`\u2028`))
	return bytes.ReplaceAll(out, paragraphSeparator, []byte(`\u2029`))
}

// sseEvent is one event read from an upstream stream. Its id is the
// stream's last event ID when it came, as an EventSource has it: set by
// the latest id field, this event's or an earlier one's.
type sseEvent struct {
	name string
	id   string
	data []byte
}

// errEventTooLarge is returned for an upstream event over the size limit.
var errEventTooLarge = errors.New("event too large")

// sseReader reads events from a text/event-stream body as the SSE
// specification parses them: lines end in CRLF, LF or CR; data lines join
// with LF; comments and unknown fields are skipped. Like an EventSource, it
// keeps the last event ID and the reconnection time the stream set, also
// across the bodies of a resumed stream (see resumeWith).
type sseReader struct {
	// lastID is the latest id field's value: what Last-Event-ID resumes
	// the stream from. An id with a NUL in it is ignored.
	lastID string
	// retry is the reconnection time the stream's latest valid retry
	// field set, or -1 if none did.
	retry time.Duration

	r       io.Reader
	maxSize int
	// waitless makes fill return errWouldWait where reading r would
	// wait, if r can tell (see parkingBody).
	waitless bool
	buf      []byte // unread bytes are buf[start:]
	start    int
	scanned  int  // bytes of buf[start:] known to hold no line end
	skipLF   bool // the last line ended in CR: a LF right after it belongs to it
	eof      bool
	started  bool // the first line, which may open with a byte order mark, was read

	// The event being read, whose lines may come in several reads.
	name    string
	data    []byte
	hasData bool
	size    int
}

// byteOrderMark may open a stream, and is not part of its first line.
var byteOrderMark = []byte("\ufeff")

func newSSEReader(r io.Reader, maxSize int) *sseReader {
	return &sseReader{r: r, maxSize: maxSize, retry: -1}
}

// sseBufferSize is the size a reader's buffer starts at.
const sseBufferSize = 512

// sseBuffers holds the buffers of readers that are done (see release), for
// the next: every answer to a request is read by a reader of its own.
var sseBuffers = sync.Pool{New: func() any { return new([sseBufferSize]byte) }}

// release gives s's buffer back for other readers to take, once s is
// done: nothing it returned points into the buffer, but s must not be
// read again.
func (s *sseReader) release() {
	putSSEBuffer(s.buf)
	s.buf, s.start, s.scanned = nil, 0, 0
}

// putSSEBuffer puts buf in the pool if it has the size the pool's have.
func putSSEBuffer(buf []byte) {
	if cap(buf) == sseBufferSize {
		sseBuffers.Put((*[sseBufferSize]byte)(buf[:sseBufferSize]))
	}
}

// resumeWith goes on reading from r, the body of the request that resumed
// the stream, keeping the last event ID and reconnection time; an event
// the previous body cut off is dropped.
func (s *sseReader) resumeWith(r io.Reader) {
	s.release()
	*s = sseReader{lastID: s.lastID, retry: s.retry, r: r, maxSize: s.maxSize, waitless: s.waitless}
}

// next returns the next event with data. At the end of the body it
// returns io.EOF; an event cut off by the end of the body is dropped, as
// the specification requires, and reported as io.ErrUnexpectedEOF.
func (s *sseReader) next() (sseEvent, error) {
	for {
		ev, ok, err := s.parse()
		if ok || err != nil {
			return ev, err
		}
		if err := s.fill(); err != nil {
			return sseEvent{}, err
		}
	}
}

// parse reads the whole lines the buffer holds, and returns the event
// they complete (ok), or none if it needs more of the body (see fill). It
// fails as next does.
func (s *sseReader) parse() (sseEvent, bool, error) {
	for {
		line, ok, err := s.bufferedLine()
		if err != nil {
			if errors.Is(err, io.EOF) && (s.hasData || s.size > 0) {
				err = io.ErrUnexpectedEOF
			}
			return sseEvent{}, false, err
		}
		if !ok {
			return sseEvent{}, false, nil
		}
		if !s.started {
			s.started = true
			line = bytes.TrimPrefix(line, byteOrderMark)
		}
		s.size += len(line) + 1
		if s.size > s.maxSize {
			return sseEvent{}, false, fmt.Errorf("%w: over %d bytes", errEventTooLarge, s.maxSize)
		}
		if len(line) == 0 {
			if s.hasData {
				ev := sseEvent{name: s.name, id: s.lastID, data: s.data}
				s.name, s.data, s.hasData, s.size = "", nil, false, 0
				return ev, true, nil
			}
			s.name, s.size = "", 0
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if s.hasData {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			s.hasData = true
		case "event":
			s.name = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				s.lastID = string(value)
			}
		case "retry":
			// Base 10 takes ASCII digits only, as the specification does.
			if ms, err := strconv.ParseUint(string(value), 10, 32); err == nil {
				s.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// bufferedLine returns the next line the buffer holds whole, without its
// terminator, valid until the next fill; ok is false if there is none yet.
// At the end of the body it returns io.EOF, or io.ErrUnexpectedEOF after a
// line with no end.
func (s *sseReader) bufferedLine() (line []byte, ok bool, err error) {
	data := s.buf[s.start:]
	if s.skipLF && len(data) > 0 {
		if data[0] == '\n' {
			s.start++
			data = data[1:]
		}
		s.skipLF = false
	}
	if i := bytes.IndexAny(data[min(s.scanned, len(data)):], "\r\n"); i >= 0 {
		i += min(s.scanned, len(data))
		s.start += i + 1
		s.scanned = 0
		s.skipLF = data[i] == '\r'
		return data[:i], true, nil
	}
	s.scanned = len(data)
	switch {
	case s.eof && len(data) > 0:
		return nil, false, io.ErrUnexpectedEOF
	case s.eof:
		return nil, false, io.EOF
	case len(data) > s.maxSize:
		return nil, false, fmt.Errorf("%w: a line over %d bytes", errEventTooLarge, s.maxSize)
	}
	return nil, false, nil
}

// fill moves the unread bytes to the front of the buffer, growing it when
// they take more than half of it (and dropping a large buffer once a large
// line is done), and reads more. The buffer starts small, and from the
// pool: a session's upstream GET stream holds its reader for the
// session's life, mostly idle.
func (s *sseReader) fill() error {
	const large = 64 << 10
	unread := s.buf[s.start:]
	switch {
	case s.buf == nil:
		s.buf = sseBuffers.Get().(*[sseBufferSize]byte)[:0]
	case len(unread) > cap(s.buf)/2 || (cap(s.buf) > large && len(unread) < sseBufferSize):
		buf := make([]byte, len(unread), max(2*len(unread), sseBufferSize))
		copy(buf, unread)
		putSSEBuffer(s.buf)
		s.buf = buf
	default:
		s.buf = s.buf[:copy(s.buf, unread)]
	}
	s.start = 0
	n, err := s.read(s.buf[len(s.buf):cap(s.buf)])
	s.buf = s.buf[:len(s.buf)+n]
	if errors.Is(err, io.EOF) {
		s.eof = true
		return nil
	}
	return err
}

// read reads from the body, without waiting if the reader is waitless and
// the body can tell.
func (s *sseReader) read(p []byte) (int, error) {
	if s.waitless {
		if b, ok := parkable(s.r); ok {
			return b.tryRead(p)
		}
	}
	return s.r.Read(p)
}

// idle gives back the buffer of a reader that holds no unread bytes, as
// its relay parks: it takes one again when it reads on.
func (s *sseReader) idle() {
	if s.start == len(s.buf) {
		s.release()
	}
}

// errWouldWait is returned where a read would wait for the body.
var errWouldWait = errors.New("nothing to read yet")

// parkingBody is a response body that can be read without waiting and
// says when it has more to read, so that a stream that idles for a
// session's life needs no goroutine waiting on it. The bodies of
// h2Streams are.
type parkingBody interface {
	// tryRead reads as Read does, but returns errWouldWait at once
	// where Read would wait.
	tryRead(p []byte) (int, error)
	// park has ready called, once, as soon as the body has more to read
	// or has ended, and reports true; if it has either already, it
	// reports false and calls nothing. ready must not block.
	park(ready func()) bool
}

// parkable returns body as a parkingBody, if it is one.
func parkable(body io.Reader) (parkingBody, bool) {
	if b, ok := body.(*endOnClose); ok {
		body = b.ReadCloser
	}
	pb, ok := body.(parkingBody)
	return pb, ok
}
