package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestStuckClientsDoNotHoldMemory opens 200 sessions on a Caddy process
// whose clients never read their streams while the upstream floods each of
// them with 1 MiB messages. The gateway's memory must stay within what its
// queue settings allow, every stuck session must end after send_timeout
// (upstream DELETE and closed connection included), and a session that
// reads must keep working throughout.
func TestStuckClientsDoNotHoldMemory(t *testing.T) {
	const (
		stuckSessions = 200
		queueSize     = 2
		messageSize   = 1 << 20
		// Each flood is this many progress notifications and a result:
		// a gateway that took it all in would hold 200 × 33 MiB = 6.6 GiB,
		// more than twice the bound below.
		floodMessages = 32
		// Besides its queue, a stuck session holds up to 5 messages: the
		// one being written to the client, the one waiting for room in the
		// queue and its parsed form, and the upstream reader's buffer,
		// which reads ahead up to twice the message.
		heldBesidesQueue = 5
		// The Go runtime (GOGC=100) lets the heap grow to twice what was
		// live after the last collection.
		gcHeadroom = 2
		// For what does not grow with the messages (connections, their
		// buffers, goroutine stacks), and for the collector running behind
		// its goal while the floods allocate fast.
		slack = 256 << 20
		// Relaying costs the gateway some 27 ms of CPU per MiB (each
		// message is validated, parsed and compacted), so two cores need
		// about 15 s to take in as much as the bound. A gateway without
		// backpressure must have that long before the stuck sessions end,
		// or it could not hold more than a correct one, and the bound
		// would prove nothing.
		sendTimeout = "20s"
	)
	bound := int64(stuckSessions*(queueSize+heldBesidesQueue)*messageSize*gcHeadroom + slack)

	up := newTestUpstream(t)
	up.answerCalls("flood", floodAnswer(floodMessages, messageSize))
	// Over loopback, Linux sizes socket buffers for 64 KiB segments: the
	// upstream's send buffers would take in some 4 MiB of each flood, and
	// Caddy's send buffers some 2 MiB of each stuck stream (see
	// stuckClientSocket), over 1 GiB of kernel memory for 200 sessions,
	// which puts the machine's TCP stack under memory pressure. Accepted
	// connections take the listener's send buffer size.
	if err := setSocketOption(up.Listener.(*net.TCPListener), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 64<<10); err != nil {
		t.Fatal(err)
	}
	caddy, addr := startGateway(t, up.URL, fmt.Sprintf("queue_size %d\n\t\tsend_timeout %s", queueSize, sendTimeout))
	base := "http://" + addr
	pid := caddy.Process.Pid
	baseline := procStatus(t, pid, "VmRSS")

	// A gateway that took the floods in would take gigabytes from the
	// machine before the end of the test could tell.
	overBound := make(chan int64, 1)
	stopWatch := make(chan struct{})
	var watching sync.WaitGroup
	watching.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-stopWatch:
				return
			}
			if rss, err := readProcStatus(pid, "VmRSS"); err == nil && rss-baseline > bound {
				_ = caddy.Process.Kill()
				overBound <- rss
				return
			}
		}
	})
	defer watching.Wait()
	defer close(stopWatch)

	reader := connect(t, base+"/sse", nil, nil)
	if got, err := callText(bounded(t), reader, "add", map[string]any{"a": 1, "b": 2}); err != nil || got != "3" {
		t.Fatalf("the reading session before the floods: %q, %v", got, err)
	}

	dialer := &net.Dialer{Control: stuckClientSocket}
	postClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 50}}
	defer postClient.CloseIdleConnections()
	stuck := make([]*stuckStream, stuckSessions)
	defer func() {
		for _, s := range stuck {
			if s != nil {
				s.conn.Close()
			}
		}
	}()
	forEach(t, stuck, func(i int) error {
		s, err := openStuckStream(dialer, addr)
		if err != nil {
			return err
		}
		stuck[i] = s
		if err := s.post(postClient, base, initializeRequest); err != nil {
			return err
		}
		return s.post(postClient, base, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	})
	flooding := time.Now()
	forEach(t, stuck, func(i int) error {
		return stuck[i].post(postClient, base, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"flood","arguments":{},"_meta":{"progressToken":"flood"}}}`)
	})

	calling := time.Now()
	if got, err := callText(bounded(t), reader, "echo", map[string]any{"text": "during"}); err != nil || got != "during" {
		t.Errorf("the reading session during the floods: %q, %v", got, err)
	}
	called := time.Since(calling)
	endedDuring := len(up.deleted)

	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	for ended := 0; ended < stuckSessions; ended++ {
		select {
		case <-up.deleted:
		case rss := <-overBound:
			t.Fatalf("Caddy's RSS grew by %d MiB with %d sessions stuck, over the bound of %d MiB; killed it",
				(rss-baseline)>>20, stuckSessions, bound>>20)
		case <-timeout.C:
			t.Fatalf("%d of %d stuck sessions ended", ended, stuckSessions)
		}
	}
	endedAfter := time.Since(flooding)

	// Only now read what the stuck clients were sent: the gateway must
	// have closed each connection, so that the read ends.
	for i, s := range stuck {
		if err := s.drain(10 * time.Second); err != nil {
			t.Errorf("stuck client %d: %v", i, err)
			break
		}
	}

	if got, err := callText(bounded(t), reader, "echo", map[string]any{"text": "after"}); err != nil || got != "after" {
		t.Errorf("the reading session after the floods: %q, %v", got, err)
	}

	peak := procStatus(t, pid, "VmHWM")
	growth := peak - baseline
	t.Logf("Caddy's RSS: %d MiB at the start, %d MiB at the peak, %.1f MiB more per stuck session (bound %d MiB, %.1f per session)",
		baseline>>20, peak>>20, float64(growth)/stuckSessions/(1<<20), bound>>20, float64(bound)/stuckSessions/(1<<20))
	t.Logf("the stuck sessions ended within %v of their floods; the reading session's call during them took %v, and %d had ended by then",
		endedAfter.Round(time.Millisecond), called.Round(time.Millisecond), endedDuring)
	if growth > bound {
		t.Errorf("Caddy's RSS grew by %d MiB with %d sessions stuck, over the bound of %d MiB", growth>>20, stuckSessions, bound>>20)
	}
}

// floodAnswer answers a tool call with an event stream of messages
// progress notifications of size bytes each, then a result of that size,
// as fast as the gateway takes them. The events are written by hand from
// one buffer: encoding them through the Go SDK costs about 15 ms of CPU
// each, thousands of times here, and many times that under the race
// detector.
func floodAnswer(messages, size int) http.HandlerFunc {
	big := bytes.Repeat([]byte("x"), size)
	return func(w http.ResponseWriter, r *http.Request) {
		var call struct {
			ID json.RawMessage `json:"id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&call); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range messages + 1 {
			head := fmt.Sprintf(`event: message`+"\n"+`data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"flood","progress":%d,"total":%d,"message":"`, i+1, messages)
			tail := `"}}` + "\n\n"
			if i == messages {
				head = fmt.Sprintf(`event: message`+"\n"+`data: {"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"`, call.ID)
				tail = `"}]}}` + "\n\n"
			}
			for _, p := range [][]byte{[]byte(head), big, []byte(tail)} {
				if _, err := w.Write(p); err != nil {
					return // the gateway let go of the call
				}
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

// forEach runs f for each index of s, 50 at a time, and fails the test if
// any fails.
func forEach[T any](t *testing.T, s []T, f func(i int) error) {
	t.Helper()
	errs := make(chan error, len(s))
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	for i := range s {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- f(i)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// stuckClientSocket gives a stuck client's socket a small receive buffer,
// so that the kernel takes in little of what the gateway writes before the
// gateway's write blocks, and a segment size such as real networks have:
// Linux sizes the sending side's buffer in segments, and over loopback's
// 64 KiB segments Caddy's kernel would hold some 2 MiB of each stuck
// stream instead of a few dozen KiB.
func stuckClientSocket(network, address string, c syscall.RawConn) error {
	if err := smallReceiveBuffer(network, address, c); err != nil {
		return err
	}
	var sockErr error
	err := c.Control(func(fd uintptr) {
		sockErr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1448)
	})
	if err != nil {
		return err
	}
	return sockErr
}

// setSocketOption sets an integer socket option on l.
func setSocketOption(l *net.TCPListener, level, option, value int) error {
	c, err := l.SyscallConn()
	if err != nil {
		return err
	}
	var sockErr error
	if err := c.Control(func(fd uintptr) {
		sockErr = syscall.SetsockoptInt(int(fd), level, option, value)
	}); err != nil {
		return err
	}
	return sockErr
}

// stuckStream is a client that reads its stream up to the endpoint event
// and then never again, over a connection of its own.
type stuckStream struct {
	conn     net.Conn
	rd       *bufio.Reader
	endpoint string
}

// openStuckStream opens a stream and reads up to the data line of its
// endpoint event.
func openStuckStream(dialer *net.Dialer, addr string) (*stuckStream, error) {
	conn, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &stuckStream{conn: conn, rd: bufio.NewReader(conn)}
	_, err = fmt.Fprintf(conn, "GET /sse HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", addr)
	var status string
	if err == nil {
		status, err = s.rd.ReadString('\n')
	}
	if err == nil && !strings.HasPrefix(status, "HTTP/1.1 200 ") {
		err = fmt.Errorf("stream answered %q", status)
	}
	for err == nil && s.endpoint == "" {
		var line string
		line, err = s.rd.ReadString('\n')
		if rest, ok := strings.CutPrefix(line, "data: "); ok {
			s.endpoint = strings.TrimSpace(rest)
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening a stream: %w", err)
	}
	return s, nil
}

// post sends a message to the session's endpoint; the answers stay unread
// on the stream.
func (s *stuckStream) post(client *http.Client, base, body string) error {
	resp, err := client.Post(base+s.endpoint, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %.60s: %s", body, resp.Status)
	}
	return nil
}

// drain reads what is left on the connection, and fails unless the gateway
// closes it within timeout.
func (s *stuckStream) drain(timeout time.Duration) error {
	if err := s.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, s.rd); os.IsTimeout(err) {
		return fmt.Errorf("connection still open %v after its session ended", timeout)
	}
	return nil // EOF or reset: closed either way
}

// procStatus returns a memory figure (VmRSS, VmHWM, …) of process pid, in
// bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	n, err := readProcStatus(pid, field)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readProcStatus(pid int, field string) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s in /proc/%d/status: %v", field, pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
