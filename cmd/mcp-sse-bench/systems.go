package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The systems compared, by the names the table and plots use.
const (
	systemGateway = "mcp_sse"
	systemProxy   = "reverse_proxy"
	systemDirect  = "SDK SSE direct"
	// systemFloor is bench_hold on the same Caddy build: an endpoint
	// event and pings, no session. It holds streams only, for the
	// memory a stream costs Caddy whatever its handler.
	systemFloor = "hold floor"
	// systemFloorPosts is the hold floor whose clients also post what
	// sets a session up (initialize, notifications/initialized), which
	// it accepts and drops: Caddy's own cost of those requests. It is
	// measured in the target holds only, as part of systemFloor.
	systemFloorPosts = "hold floor, setup POSTs accepted"
)

// systems is every system, in the order of the table's columns.
var systems = []string{systemGateway, systemProxy, systemDirect, systemFloor}

// stopTimeout bounds a child's graceful stop, which for the gateway includes
// deleting every upstream session.
const stopTimeout = 60 * time.Second

// proc is a child process the bench started.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // why it exited, once done is closed
}

// startProc starts argv with its output appended to logPath.
func startProc(logPath string, env []string, argv ...string) (*proc, *os.File, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = log
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, stdout.(*os.File), nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop asks the process to end, and kills it if it has not within
// stopTimeout.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// upstream is the MCP server process: Streamable HTTP for the gateway,
// HTTP+SSE for the baselines.
type upstream struct {
	*proc
	streamable string // host:port
	sse        string // host:port
}

// startUpstream starts this program's upstream subcommand; h2c says
// whether its Streamable HTTP server takes h2c besides HTTP/1.1.
func startUpstream(dir string, h2c bool) (*upstream, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p, stdout, err := startProc(filepath.Join(dir, "upstream.log"), nil, self, "upstream", fmt.Sprintf("-h2c=%t", h2c))
	if err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("upstream did not start: %v (see %s)", err, filepath.Join(dir, "upstream.log"))
	}
	addrs := strings.Fields(line)
	if len(addrs) != 2 {
		p.stop()
		return nil, fmt.Errorf("upstream printed %q, want two addresses", line)
	}
	return &upstream{proc: p, streamable: addrs[0], sse: addrs[1]}, nil
}

// deployment is one system serving HTTP+SSE, ready for clients.
type deployment struct {
	streamURL string
	opening   opening // how far its clients open their sessions
	pid       int     // the process measured: the gateway, or the server itself
	upstream  int     // the MCP server's process; 0 for the floor, which has none
	// admin is the host:port of Caddy's admin endpoint, where the
	// benchmark's build serves /bench/memstats; empty for a system not
	// on Caddy.
	admin string
	stop  func()
}

// deployOptions vary how a system is deployed.
type deployOptions struct {
	h2c              bool // Caddy also takes h2c
	noUpstreamStream bool // mcp_sse with upstream_stream off
	setupPosts       bool // the floor's clients post a session's setup messages
}

// deploy starts a fresh upstream and, for the systems in front of it, a
// fresh Caddy, so that every measurement starts from processes at rest.
// The floor has no upstream.
func deploy(ctx context.Context, cfg *config, system string, opts deployOptions) (*deployment, error) {
	if system == systemFloor {
		d, err := startCaddy(ctx, cfg, system, opts, fmt.Sprintf("bench_hold {\n\t\tping_interval %v\n\t}", cfg.ping))
		if err != nil {
			return nil, err
		}
		d.opening = toEndpoint
		if opts.setupPosts {
			d.opening = postingSetup
		}
		return d, nil
	}
	up, err := startUpstream(cfg.out, cfg.upstreamH2C)
	if err != nil {
		return nil, err
	}
	if system == systemDirect {
		return &deployment{streamURL: "http://" + up.sse + "/sse", pid: up.pid(), upstream: up.pid(), stop: up.stop}, nil
	}
	handler := "reverse_proxy " + up.sse
	if system == systemGateway {
		stream := ""
		if opts.noUpstreamStream {
			stream = "\n\t\tupstream_stream off"
		}
		handler = fmt.Sprintf("mcp_sse {\n\t\tupstream http://%s/mcp\n\t\tping_interval %v%s\n\t}", up.streamable, cfg.ping, stream)
	}
	d, err := startCaddy(ctx, cfg, system, opts, handler)
	if err != nil {
		up.stop()
		return nil, err
	}
	d.upstream = up.pid()
	stopCaddy := d.stop
	d.stop = func() {
		stopCaddy()
		up.stop()
	}
	return d, nil
}

// startCaddy runs the benchmark's Caddy build with handler on a free
// loopback port, and its admin endpoint on another.
func startCaddy(ctx context.Context, cfg *config, system string, opts deployOptions, handler string) (*deployment, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	port, adminPort := ports[0], ports[1]
	protocols := "h1 h2"
	if opts.h2c {
		protocols = "h1 h2 h2c"
	}
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	servers {
		protocols %s
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	%s
}
`, adminPort, protocols, port, handler)
	path := filepath.Join(cfg.out, "Caddyfile."+strings.ReplaceAll(system, " ", "_"))
	if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	state := filepath.Join(cfg.out, "caddy-state")
	env := []string{"XDG_DATA_HOME=" + state, "XDG_CONFIG_HOME=" + state}
	caddy, _, err := startProc(filepath.Join(cfg.out, "caddy.log"), env, cfg.caddy, "run", "--adapter", "caddyfile", "--config", path)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListening(ctx, addr, caddy); err != nil {
		caddy.stop()
		return nil, fmt.Errorf("%s: %w (see %s)", system, err, filepath.Join(cfg.out, "caddy.log"))
	}
	return &deployment{
		streamURL: "http://" + addr + "/sse",
		pid:       caddy.pid(),
		admin:     fmt.Sprintf("127.0.0.1:%d", adminPort),
		stop:      caddy.stop,
	}, nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are taken, so that none repeats
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitListening waits until addr takes connections or p exits.
func waitListening(ctx context.Context, addr string, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("caddy exited before it listened: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("nothing listens on %s: %w", addr, ctx.Err())
		case <-tick.C:
		}
	}
}
