package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The cluster harness: a Redis server of the test's own, several built
// Caddys that share their sessions through it, a Caddy in front of them as
// a load balancer, and the TypeScript SDK client that calls through it.
//
// Every process is the test's own, ended by its PID, on free loopback
// ports. The cluster tests do not run in parallel: they measure leases
// and pauses in seconds, which a loaded machine stretches.

// redisServerPath is Debian's redis-server (package redis-server), which
// CI installs.
const redisServerPath = "/usr/bin/redis-server"

// redisServer is a redis-server process of the test's own, on a free
// loopback port, that keeps nothing on disk.
type redisServer struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

// startRedis runs redis-server on a free loopback port and waits until it
// answers PING. It is killed at the end of the test. Outside CI a machine
// without redis-server skips the test; in CI that is a failure.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := os.Stat(redisServerPath); err != nil {
		partMissing(t, fmt.Sprintf("redis-server cannot run: %v (apt-get install redis-server)", err))
	}
	r := &redisServer{t: t, addr: freeAddr(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(func() {
		r.kill()
		if t.Failed() {
			out, _ := os.ReadFile(r.logPath())
			t.Logf("redis log:\n%s", out)
		}
	})
	return r
}

// url is the Redis URL of the server's database 0.
func (r *redisServer) url() string { return "redis://" + r.addr + "/0" }

func (r *redisServer) logPath() string { return filepath.Join(r.dir, "redis.log") }

// start runs the server on its address, empty, and waits until it
// answers PING.
func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	logs, err := os.OpenFile(r.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	defer logs.Close()
	// No snapshot and no append-only file: a restarted server starts
	// empty, as one that lost its memory does.
	r.cmd = exec.Command(redisServerPath,
		"--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	r.cmd.Stdout, r.cmd.Stderr = logs, logs
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	waitFor(r.t, func() error { return redisPing(r.addr) })
}

// redisPing sends PING in Redis's inline protocol and expects +PONG: the
// test module needs no Redis client for that.
func redisPing(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the answer to PING: %w", err)
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("redis answered PING with %q", line)
	}
	return nil
}

// kill ends the server with SIGKILL, as a crash does. It is idempotent.
func (r *redisServer) kill() {
	killAndReap(r.cmd)
}

// restart kills the server if it runs and starts it again, empty, on the
// same port.
func (r *redisServer) restart() {
	r.t.Helper()
	r.kill()
	r.start()
}

// pause stops the server with SIGSTOP: it holds its connections and
// answers nothing until resume.
func (r *redisServer) pause() { sendSignal(r.t, r.cmd, syscall.SIGSTOP) }

// resume continues a paused server with SIGCONT.
func (r *redisServer) resume() { sendSignal(r.t, r.cmd, syscall.SIGCONT) }

// killAndReap kills a process the test started, by its PID, and waits for
// it, unless it has been waited for already.
func killAndReap(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Kill() // SIGKILL ends a stopped process too
	_ = cmd.Wait()
}

// sendSignal sends sig to a process the test started.
func sendSignal(t *testing.T, cmd *exec.Cmd, sig syscall.Signal) {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v to %d: %v", sig, cmd.Process.Pid, err)
	}
}

// instanceHeader names, on every answer of a cluster instance, the
// instance that gave it.
const instanceHeader = "X-Gateway-Instance"

// gatewayCluster is n built Caddys whose mcp_sse handlers share their
// sessions through one Redis server, and a Caddy in front of them that
// balances requests over them.
type gatewayCluster struct {
	redis     *redisServer
	instances []*clusterInstance
	lb        *caddyProcess
	lbAddr    string
}

// clusterInstance is one Caddy of a cluster, on an address it keeps
// across restarts.
type clusterInstance struct {
	t         *testing.T
	name      string // what it answers in instanceHeader
	addr      string
	caddyfile string
	proc      *caddyProcess // the running process, or the last one
}

// startCluster starts a Redis server, n Caddys that share sessions through
// it, each with one site on a free loopback address whose mcp_sse handler
// has upstream, resume_window 1m, the cluster and the given subdirectives,
// and the load balancer in front of them.
func startCluster(t *testing.T, upstream string, n int, subdirectives string) *gatewayCluster {
	t.Helper()
	return startClusterWith(t, upstream, n, subdirectives, "")
}

// startClusterWith is startCluster with more directives for each
// instance's site.
func startClusterWith(t *testing.T, upstream string, n int, subdirectives, site string) *gatewayCluster {
	t.Helper()
	c := &gatewayCluster{redis: startRedis(t)}
	var backends []string
	for i := range n {
		g := &clusterInstance{t: t, name: fmt.Sprint(i), addr: freeAddr(t)}
		g.caddyfile = fmt.Sprintf(`{
	admin off
	persist_config off
}
http://%s {
	bind 127.0.0.1
	header %s %s%s
	mcp_sse {
		upstream %s
		resume_window 1m
		cluster redis {
			url %s
		}%s
	}
	respond "up" 200
}
`, g.addr, instanceHeader, g.name, onLines("\t", site), upstream, c.redis.url(), onLines("\t\t", subdirectives))
		g.start()
		c.instances = append(c.instances, g)
		backends = append(backends, g.addr)
	}
	c.lbAddr = freeAddr(t)
	// A load balancer without affinity: each request goes to the next
	// instance, so a session's stream and its POSTs land on different
	// ones. Requests to an instance that is gone (killed, or shut down
	// and so no longer listening) fail to connect, which reverse_proxy
	// retries on the next instance for every method within
	// lb_try_duration; fail_duration then skips it for 2 s (passive
	// health, max_fails 1) rather than trying it first each time, and
	// forgets it soon enough for a restarted instance to get requests
	// again. Without keep-alive each request dials afresh: a POST sent
	// on an idle connection that a stopping instance closes just then
	// would fail after it was written, which reverse_proxy does not
	// retry for a POST (it could have been taken), and the client would
	// see a 502 that is the balancer's, not the cluster's. A paused
	// (SIGSTOPped) instance still accepts connections in its kernel, so
	// no balancer setting skips it: the tests that pause one talk to the
	// instances directly. flush_interval -1 passes events as they come.
	c.lb = startCaddy(t, fmt.Sprintf(`{
	admin off
	persist_config off
}
http://%s {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy round_robin
		lb_try_duration 5s
		lb_try_interval 50ms
		fail_duration 2s
		flush_interval -1
		transport http {
			dial_timeout 1s
			keepalive off
		}
	}
}
`, c.lbAddr, strings.Join(backends, " ")), "http://"+c.lbAddr+"/")
	return c
}

// onLines puts directives on lines of their own after the one they
// follow, indented, so that the Caddyfile stays formatted (Caddy warns
// about one that is not) whether there are any or not.
func onLines(indent, directives string) string {
	var b strings.Builder
	for line := range strings.Lines(directives) {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString("\n" + indent + line)
		}
	}
	return b.String()
}

// url is the load balancer's URL for path.
func (c *gatewayCluster) url(path string) string { return "http://" + c.lbAddr + path }

// instance returns the instance that answers name in instanceHeader.
func (c *gatewayCluster) instance(t *testing.T, name string) *clusterInstance {
	t.Helper()
	for _, g := range c.instances {
		if g.name == name {
			return g
		}
	}
	t.Fatalf("no cluster instance answers %s %q", instanceHeader, name)
	return nil
}

// waitRouted waits until the load balancer sends requests to g again, as
// it does once g answers and the balancer has forgotten its failures.
func (c *gatewayCluster) waitRouted(t *testing.T, g *clusterInstance) {
	t.Helper()
	waitFor(t, func() error {
		resp, err := http.Get(c.url("/"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if got := resp.Header.Get(instanceHeader); got != g.name {
			return fmt.Errorf("the load balancer sent a request to instance %q, still not to %s", got, g.name)
		}
		return nil
	})
}

// base is the instance's own URL, without the load balancer.
func (g *clusterInstance) base() string { return "http://" + g.addr }

// start runs the instance's Caddy on its address and waits until it
// answers.
func (g *clusterInstance) start() {
	g.t.Helper()
	g.proc = startCaddy(g.t, g.caddyfile, g.base()+"/")
}

// kill ends the instance with SIGKILL, as a crash does: nothing of it
// runs on, not even its shutdown.
func (g *clusterInstance) kill() {
	g.t.Helper()
	killAndReap(g.proc.Cmd)
	g.t.Logf("killed instance %s (pid %d)", g.name, g.proc.Process.Pid)
}

// stop shuts the instance down with SIGTERM and fails unless it exits
// cleanly within 5 seconds, as the module promises. One that does not is
// made to dump its goroutines into its log, which the test prints: by
// SIGABRT, since Caddy traps SIGQUIT, and its handler would wait behind
// the SIGTERM it is stuck in.
func (g *clusterInstance) stop() {
	g.t.Helper()
	start := time.Now()
	sendSignal(g.t, g.proc.Cmd, syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- g.proc.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			g.t.Errorf("instance %s exited with %v", g.name, err)
		}
		g.t.Logf("instance %s exited %v after SIGTERM", g.name, time.Since(start))
	case <-time.After(5 * time.Second):
		// Reaped here, so that startCaddy's cleanup does not wait for
		// the process as well.
		_ = g.proc.Process.Signal(syscall.SIGABRT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = g.proc.Process.Kill()
			<-exited
		}
		g.t.Fatalf("instance %s still running 5 s after SIGTERM; its goroutines are in its log", g.name)
	}
}

// pause stops the instance with SIGSTOP: it keeps its connections and
// sockets but runs no code, neither to write nor to renew a lease.
func (g *clusterInstance) pause() { sendSignal(g.t, g.proc.Cmd, syscall.SIGSTOP) }

// resume continues a paused instance with SIGCONT.
func (g *clusterInstance) resume() { sendSignal(g.t, g.proc.Cmd, syscall.SIGCONT) }

// logged returns the JSON log lines of the instance's running (or last)
// process with the message msg.
func (g *clusterInstance) logged(msg string) []logEntry {
	g.t.Helper()
	return g.proc.logged(g.t, msg)
}

// postsBySession counts the POSTs to the message endpoint in the
// instance's access log (the site's `log` directive), by session.
func (g *clusterInstance) postsBySession() map[string]int {
	g.t.Helper()
	n := map[string]int{}
	for _, e := range g.logged("handled request") {
		req, _ := e["request"].(map[string]any)
		uri, _ := req["uri"].(string)
		if req["method"] != http.MethodPost || !strings.Contains(uri, "/message?") {
			continue
		}
		if u, err := url.Parse(uri); err == nil {
			n[u.Query().Get("sessionId")]++
		}
	}
	return n
}

// instanceTally is an http.RoundTripper that counts which cluster
// instance answered each request a client sent, by instanceHeader.
type instanceTally struct {
	mu      sync.Mutex
	posts   map[string]int // by instance
	streams []string       // the instance of each stream, in order
	session string         // the sessionId the client posts to
}

func (c *instanceTally) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	name := resp.Header.Get(instanceHeader)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch r.Method {
	case http.MethodPost:
		if c.posts == nil {
			c.posts = map[string]int{}
		}
		c.posts[name]++
		c.session = r.URL.Query().Get("sessionId")
	case http.MethodGet:
		c.streams = append(c.streams, name)
	}
	return resp, nil
}

// tally returns the POSTs counted by instance, the instance of each
// stream, and the session the POSTs went to.
func (c *instanceTally) tally() (posts map[string]int, streams []string, session string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.posts), slices.Clone(c.streams), c.session
}

// postCount is how many POSTs the upstream got.
func (u *testUpstream) postCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.postHeaders)
}

// tsLoop is testdata/tsclient/cluster.mjs running: the TypeScript SDK
// client calling echo over and over, through stream losses, until the
// test ends its stdin.
type tsLoop struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	streams chan tsStream // each stream the client opened, as it opened
	done    chan struct{} // closed once stdout ended
	result  []byte        // the last line, once done
}

// tsStream is a stream the client opened, as cluster.mjs reports it.
type tsStream struct {
	Stream string // the instance that answered the GET
	Status int
}

// tsClusterRun is what cluster.mjs reports at its end.
type tsClusterRun struct {
	Calls, Failed, Losses int
	Errors                []string
	Posts                 map[string]int // by instance
}

// startTSLoop starts cluster.mjs on the stream at sseURL, with the given
// call timeout and Authorization header.
func startTSLoop(t *testing.T, sseURL string, callTimeout time.Duration, authorization string) *tsLoop {
	t.Helper()
	l := &tsLoop{
		cmd:     nodeCommand(t, "cluster.mjs", sseURL, fmt.Sprint(callTimeout.Milliseconds()), authorization),
		streams: make(chan tsStream, 1000),
		done:    make(chan struct{}),
	}
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatalf("starting cluster.mjs: %v", err)
	}
	go func() {
		defer close(l.done)
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			var s tsStream
			if json.Unmarshal(lines.Bytes(), &s) == nil && s.Status != 0 {
				l.streams <- s
				continue
			}
			l.result = append([]byte(nil), lines.Bytes()...)
		}
	}()
	t.Cleanup(func() {
		killAndReap(l.cmd) // a no-op once finish waited for it
	})
	return l
}

// nextStream waits for the next stream the client opened that the
// cluster took (200), and returns the instance that holds it.
func (l *tsLoop) nextStream(t *testing.T) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case s := <-l.streams:
			if s.Status == http.StatusOK {
				return s.Stream
			}
			t.Logf("the client's stream was refused: %d from instance %q", s.Status, s.Stream)
		case <-l.done:
			t.Fatalf("cluster.mjs ended without opening another stream; it printed %s", l.result)
		case <-timeout:
			t.Fatal("the client opened no stream within 15 s")
		}
	}
}

// callsGoOn waits, for 15 s at most, until the upstream got n POSTs in
// all while the client calls: for a test that wants calls going on before
// (or after) it acts. It fails the test at once if the client ended, and
// only reports a wait that ran out, so that the test still reads what the
// client made of it.
func (l *tsLoop) callsGoOn(t *testing.T, up *testUpstream, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for up.postCount() < n {
		select {
		case <-l.done:
			t.Fatalf("cluster.mjs ended while calling; it printed %q", l.result)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Errorf("the upstream got %d POSTs in 15 s, want %d: the client's calls do not go on", up.postCount(), n)
			return
		}
	}
}

// finish ends the client's loop after its current call and returns what
// it reports.
func (l *tsLoop) finish(t *testing.T) tsClusterRun {
	t.Helper()
	l.stdin.Close()
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
		t.Fatal("cluster.mjs did not end within 30 s of its stdin")
	}
	err := l.cmd.Wait()
	var run tsClusterRun
	if err != nil || json.Unmarshal(l.result, &run) != nil {
		t.Fatalf("cluster.mjs: %v, printed %q", err, l.result)
	}
	t.Logf("TypeScript client: %+v", run)
	return run
}
