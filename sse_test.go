package mcpsse

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestSSEReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		want  []string // data of each event
	}{
		{"one event", "event: message\ndata: {}\n\n", []string{"{}"}},
		{"CRLF lines", "data: a\r\n\r\ndata: b\r\n\r\n", []string{"a", "b"}},
		{"bare CR lines", "data: a\r\rdata: b\r\r", []string{"a", "b"}},
		{"multi-line data joins with LF", "data: {\ndata:  \"a\": 1\ndata: }\n\n", []string{"{\n \"a\": 1\n}"}},
		{"comments and unknown fields skipped", ": ping\n\nretry: 10\nfoo: bar\ndata: x\n\n", []string{"x"}},
		{"no space after colon", "data:x\n\n", []string{"x"}},
		{"event without data is skipped", "event: message\n\ndata: y\n\n", []string{"y"}},
		{"unterminated last event dropped", "data: a\n\ndata: b", []string{"a"}},
		{"byte order mark at the start skipped", "\ufeffdata: a\n\n", []string{"a"}},
		{"byte order mark later is part of the line", "data: a\n\n\ufeffdata: b\n\n", []string{"a"}},
		{"data without colon is an empty line of data", "data\ndata: b\n\n", []string{"\nb"}},
		{"priming event: id and retry with empty data", "id: 1\nretry: 3000\ndata: \n\ndata: m\n\n", []string{"", "m"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newSSEReader(strings.NewReader(tc.input), 1<<20)
			var got []string
			for {
				ev, err := r.next()
				if err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatal(err)
					}
					break
				}
				got = append(got, string(ev.data))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("events %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSSEReaderLimit(t *testing.T) {
	t.Parallel()
	r := newSSEReader(strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 50)
	if _, err := r.next(); !errors.Is(err, errEventTooLarge) {
		t.Errorf("error %v, want errEventTooLarge", err)
	}
}

func TestEventData(t *testing.T) {
	t.Parallel()
	in := "{\r\n  \"jsonrpc\": \"2.0\", \"method\": \"m\", \"params\": {\"text\": \"line\\nbreak \u2028 sep \u2029 \\r\\n\\n\\ndata: x\"}\n}"
	m, err := parseMessage([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got := eventData(m.raw)
	if strings.ContainsAny(string(got), "\r\n\u2028\u2029") {
		t.Errorf("sanitized JSON %q still holds a line break", got)
	}
	want := `{"jsonrpc":"2.0","method":"m","params":{"text":"line\nbreak \u2028 sep \u2029 \r\n\n\ndata: x"}}`
	if string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// The reader keeps the last event ID and the retry as an EventSource does:
// an id without data still sets it, an id with NUL does not, a retry that
// is not all digits is ignored, and a resumed stream keeps both.
func TestSSEReaderLastEventIDAndRetry(t *testing.T) {
	t.Parallel()
	r := newSSEReader(strings.NewReader("id: 1\nretry: 250\ndata: \n\nretry: 1e3\ndata: a\n\nid: x\x00y\ndata: b\n\nid: 2\n\n"), 1<<20)
	for _, want := range []struct{ id, data string }{{"1", ""}, {"1", "a"}, {"1", "b"}} {
		ev, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.id != want.id || string(ev.data) != want.data {
			t.Errorf("event id %q data %q, want id %q data %q", ev.id, ev.data, want.id, want.data)
		}
	}
	if _, err := r.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last event: %v", err)
	}
	if r.lastID != "2" || r.retry != 250*time.Millisecond {
		t.Fatalf("last event ID %q, retry %v; want 2 and 250ms", r.lastID, r.retry)
	}
	r.resumeWith(strings.NewReader("\ufeffdata: c\n\n"))
	ev, err := r.next()
	if err != nil || ev.id != "2" || string(ev.data) != "c" || r.retry != 250*time.Millisecond {
		t.Errorf("resumed: event id %q data %q retry %v, err %v", ev.id, ev.data, r.retry, err)
	}
	if newSSEReader(strings.NewReader(""), 1).retry >= 0 {
		t.Error("a new reader has a retry the stream never set")
	}
}
