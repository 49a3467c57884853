package mcpsse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// benchSessionID is a session ID as open makes them.
const benchSessionID = "9b2f6c1e-4d7a-4e35-8c1b-2f0a6d9e7b13"

// benchSmallResult is a tools/call result of about 100 bytes.
const benchSmallResult = `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"It is 21 C and sunny in Paris."}],"isError":false}}`

// benchLargeResult is a tools/call result of 64 KiB.
var benchLargeResult = func() string {
	const head = `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"`
	const tail = `"}],"isError":false}}`
	text := strings.Repeat("All work and no play makes Jack a dull boy. ", 64<<10/44+1)
	return head + text[:64<<10-len(head)-len(tail)] + tail
}()

// benchMessages are the messages the encoding and relay benchmarks use.
var benchMessages = []struct {
	name string
	raw  string
}{
	{"small", benchSmallResult},
	{"large", benchLargeResult},
}

// benchUpstreamEvent is how a Streamable HTTP upstream sends raw.
func benchUpstreamEvent(raw string) []byte {
	return []byte("event: message\ndata: " + raw + "\n\n")
}

// BenchmarkEventData turns a message into event data: as is, or with
// U+2028 escaped.
func BenchmarkEventData(b *testing.B) {
	cases := append(benchMessages[:len(benchMessages):len(benchMessages)], struct{ name, raw string }{
		"large-u2028", strings.Replace(benchLargeResult, "Jack", "Jack\u2028", 100),
	})
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			raw := []byte(tc.raw)
			want := strings.ReplaceAll(tc.raw, "\u2028", `\u2028`)
			if got := eventData(raw); string(got) != want {
				b.Fatalf("eventData changed the message wrongly: %.80q…", got)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				eventData(raw)
			}
		})
	}
}

// BenchmarkAppendMessageEvent encodes a message event into a reused buffer,
// as a stream does.
func BenchmarkAppendMessageEvent(b *testing.B) {
	for _, tc := range benchMessages {
		b.Run(tc.name, func(b *testing.B) {
			data := eventData([]byte(tc.raw))
			want := "id: " + benchSessionID + ":42\nevent: message\ndata: " + tc.raw + "\n\n"
			buf := appendMessageEvent(nil, benchSessionID, 42, data)
			if string(buf) != want {
				b.Fatalf("event %.80q…, want %.80q…", buf, want)
			}
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = appendMessageEvent(buf[:0], benchSessionID, 42, data)
			}
		})
	}
}

// BenchmarkAppendEndpointEvent encodes the event that opens a stream, as
// the handler does.
func BenchmarkAppendEndpointEvent(b *testing.B) {
	endpoint := "/mcp/message?sessionId=" + benchSessionID
	want := "event: endpoint\ndata: " + endpoint + "\n\n"
	if got := appendEndpointEvent(nil, endpoint); string(got) != want {
		b.Fatalf("event %q, want %q", got, want)
	}
	b.SetBytes(int64(len(want)))
	b.ReportAllocs()
	for b.Loop() {
		appendEndpointEvent(nil, endpoint)
	}
}

// benchResponseWriter takes a stream's events and keeps only their size.
type benchResponseWriter struct {
	header  http.Header
	written int
}

func (w *benchResponseWriter) Header() http.Header         { return w.header }
func (w *benchResponseWriter) WriteHeader(int)             {}
func (w *benchResponseWriter) Write(p []byte) (int, error) { w.written += len(p); return len(p), nil }
func (w *benchResponseWriter) Flush()                      {}

// BenchmarkStreamWriteMessage writes message events to a stream, which
// keeps its buffer between events unless it grew large.
func BenchmarkStreamWriteMessage(b *testing.B) {
	for _, tc := range benchMessages {
		b.Run(tc.name, func(b *testing.B) {
			data := eventData([]byte(tc.raw))
			w := &benchResponseWriter{header: make(http.Header)}
			st := newStream(w, httptest.NewRequest(http.MethodGet, "/sse", nil), &settings{})
			if err := st.writeMessage(benchSessionID, 1, data); err != nil {
				b.Fatal(err)
			}
			want := len(appendMessageEvent(nil, benchSessionID, 1, data))
			if w.written != want {
				b.Fatalf("wrote %d bytes, want %d", w.written, want)
			}
			b.SetBytes(int64(want))
			b.ReportAllocs()
			for b.Loop() {
				_ = st.writeMessage(benchSessionID, 1, data)
			}
		})
	}
}

// BenchmarkParseMessages parses what clients POST.
func BenchmarkParseMessages(b *testing.B) {
	request := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"}}}`
	var batch []string
	for i := range 10 {
		batch = append(batch, strings.Replace(request, `"id":7`, `"id":`+strconv.Itoa(i+1), 1))
	}
	cases := []struct {
		name string
		body string
		kind messageKind
		n    int
	}{
		{"request", request, kindRequest, 1},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"timeout"}}`, kindNotification, 1},
		{"batch10", "[" + strings.Join(batch, ",") + "]", kindRequest, 10},
		{"response-large", benchLargeResult, kindResponse, 1},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			body := []byte(tc.body)
			msgs, err := parseMessages(body)
			if err != nil {
				b.Fatal(err)
			}
			if len(msgs) != tc.n || msgs[0].kind != tc.kind || msgs[tc.n-1].kind != tc.kind {
				b.Fatalf("parsed %d messages, first %v; want %d of kind %v", len(msgs), msgs[0].kind, tc.n, tc.kind)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = parseMessages(body)
			}
		})
	}
}

// BenchmarkSSEReader reads an upstream's answer to a POST: one message
// event, with a new reader each time, as relayAnswerEvents makes one per
// answer and releases it after.
func BenchmarkSSEReader(b *testing.B) {
	for _, tc := range benchMessages {
		b.Run(tc.name, func(b *testing.B) {
			body := benchUpstreamEvent(tc.raw)
			r := bytes.NewReader(body)
			ev, err := newSSEReader(r, maxUpstreamMessage).next()
			if err != nil {
				b.Fatal(err)
			}
			if ev.name != "message" || string(ev.data) != tc.raw {
				b.Fatalf("event %q with data %.80q…, want message with the result", ev.name, ev.data)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(body)
				events := newSSEReader(r, maxUpstreamMessage)
				_, _ = events.next()
				events.release()
			}
		})
	}
}

// benchRelaySession is a session that relays to its events channel, with
// no upstream and no stream.
func benchRelaySession(b *testing.B) *session {
	u, _ := url.Parse("http://127.0.0.1:1/mcp")
	store := newSessionStore("", u, "", &settings{policy: policy{queueSize: 1}, logger: zap.NewNop()}, nil)
	sess := store.newSession(benchSessionID, "", "", "")
	b.Cleanup(func() {
		sess.ctx.end()
		store.upstream.close()
	})
	return sess
}

// BenchmarkRelayPayload relays an upstream's application/json answer to a
// request to the session's queue.
func BenchmarkRelayPayload(b *testing.B) {
	for _, tc := range benchMessages {
		b.Run(tc.name, func(b *testing.B) {
			sess := benchRelaySession(b)
			payload := []byte(tc.raw)
			to := answerTo{id: json.RawMessage("7")}
			found, err := sess.relayPayload(sess.ctx, payload, &to)
			if err != nil || !found {
				b.Fatalf("found %v, error %v; want the response", found, err)
			}
			if got := sess.events.take().data; string(got) != tc.raw {
				b.Fatalf("queued %.80q…, want the result", got)
			}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = sess.relayPayload(sess.ctx, payload, &to)
				sess.events.take()
			}
		})
	}
}

// BenchmarkRelayEvents relays an upstream's text/event-stream answer to a
// request to the session's queue.
func BenchmarkRelayEvents(b *testing.B) {
	for _, tc := range benchMessages {
		b.Run(tc.name, func(b *testing.B) {
			sess := benchRelaySession(b)
			body := benchUpstreamEvent(tc.raw)
			r := bytes.NewReader(body)
			to := answerTo{id: json.RawMessage("7")}
			if err := sess.relayAnswerEvents(sess.ctx, r, to, sess.store.settings()); err != nil {
				b.Fatal(err)
			}
			if got := sess.events.take().data; string(got) != tc.raw {
				b.Fatalf("queued %.80q…, want the result", got)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(body)
				_ = sess.relayAnswerEvents(sess.ctx, r, to, sess.store.settings())
				sess.events.take()
			}
		})
	}
}

// benchStore returns a store holding n sessions opened as for a stream
// request, and their IDs. Cleanup stops and removes them.
func benchStore(b *testing.B, n int) (*sessionStore, []string) {
	u, _ := url.Parse("http://127.0.0.1:1/mcp")
	cfg := &settings{policy: policy{queueSize: 1}, logger: zap.NewNop()}
	store := newSessionStore("", u, "", cfg, nil)
	ids := make([]string, 0, n)
	b.Cleanup(func() {
		for _, id := range ids {
			if sess := store.get(id); sess != nil {
				sess.ctx.end()
				store.remove(id)
			}
		}
		store.upstream.close()
	})
	r := httptest.NewRequest(http.MethodGet, "/sse", nil)
	for range n {
		sess, err := store.open(r, cfg)
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, sess.id)
	}
	return store, ids
}

var benchStoreSizes = []int{1, 1_000, 100_000}

// BenchmarkSessionStoreGet looks sessions up by ID, as every POST does,
// cycling through all of them.
func BenchmarkSessionStoreGet(b *testing.B) {
	for _, n := range benchStoreSizes {
		store, ids := benchStore(b, n)
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			if sess := store.get(ids[n-1]); sess == nil || sess.id != ids[n-1] {
				b.Fatal("session not found")
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				store.get(ids[i])
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

// BenchmarkSessionStoreGetParallel is BenchmarkSessionStoreGet with
// lookups from GOMAXPROCS goroutines at once.
func BenchmarkSessionStoreGetParallel(b *testing.B) {
	for _, n := range benchStoreSizes {
		store, ids := benchStore(b, n)
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			if sess := store.get(ids[0]); sess == nil || sess.id != ids[0] {
				b.Fatal("session not found")
			}
			var start atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(start.Add(7919)) % n
				for pb.Next() {
					store.get(ids[i])
					if i++; i == n {
						i = 0
					}
				}
			})
		})
	}
}

// benchUpstream answers as a Streamable HTTP server does: initialize with
// a session ID, notifications with 202, requests with benchSmallResult
// (id 7) on an event stream. The GET stream is not offered.
func benchUpstream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, _ := io.ReadAll(r.Body)
	switch {
	case bytes.Contains(body, []byte(`"method":"initialize"`)):
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(headerSessionID, "upstream-1")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"bench","version":"1"}}}`)
	case !bytes.Contains(body, []byte(`"id"`)):
		w.WriteHeader(http.StatusAccepted)
	default:
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write(benchUpstreamEvent(benchSmallResult))
	}
}

// BenchmarkExchange relays a tools/call through an initialized session
// to an h2c upstream in the same process and takes its answer from the
// session's queue: the gateway's upstream side of a call, the upstream's
// own work (a Go HTTP/2 server) included in the figures.
func BenchmarkExchange(b *testing.B) {
	up := startH2CServer(b, 0, benchUpstream)
	u, _ := url.Parse(up.URL + "/mcp")
	cfg := &settings{policy: policy{
		queueSize: 16, upstreamTimeout: 10 * time.Second, upstreamProtocol: upstreamProtocolSession,
	}, logger: zap.NewNop()}
	store := newSessionStore("", u, "", cfg, nil)
	sess := store.newSession(benchSessionID, "", "", "")
	b.Cleanup(func() {
		sess.ctx.end()
		store.upstream.close()
	})
	call := func(raw string) []byte {
		msgs, err := parseMessages([]byte(raw))
		if err != nil {
			b.Fatal(err)
		}
		if err := sess.forward(msgs, http.Header{"User-Agent": {"bench"}}, cfg, nil); err != nil {
			b.Fatal(err)
		}
		if msgs[0].kind == kindNotification {
			<-sess.written()
			return nil
		}
		<-sess.events.ready
		ev, _ := sess.events.pop()
		return ev.data
	}
	call(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
	call(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	const request = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"}}}`
	if got := call(request); string(got) != benchSmallResult {
		b.Fatalf("answer %q, want %q", got, benchSmallResult)
	}
	b.ReportAllocs()
	for b.Loop() {
		call(request)
	}
}
