package mcpsse

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce  sync.Once
	binaryPath string
	buildErr   error
)

// caddyBinary builds ./cmd/caddy once per test run: a process of its own
// is the only way to test what happens when Caddy exits.
func caddyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mcp-sse-caddy")
		if err != nil {
			buildErr = err
			return
		}
		binaryPath = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", binaryPath, "./cmd/caddy").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binaryPath
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCaddy runs the built Caddy with a Caddyfile and waits until url
// answers. The process is killed at the end of the test if still running.
func startCaddy(t *testing.T, caddyfile, url string) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(config, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBinary(t), "run", "--config", config)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	logs, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() || os.Getenv("CADDY_LOG") != "" {
			out, _ := os.ReadFile(logs.Name())
			t.Logf("caddy log:\n%s", out)
		}
		logs.Close()
	})
	waitFor(t, func() error {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	return cmd
}

// TestShutdownEndsStreamsPromptly opens 1,000 initialized sessions on a
// Caddy process and stops it with SIGTERM under Caddy's default, eternal
// grace period: every stream must end, every upstream session must be
// deleted, and the process must exit, within the 5 seconds the module
// promises (a handler that ended streams only in Cleanup would hang here
// forever).
// startGateway runs the built Caddy with one site on a free loopback
// address: an mcp_sse handler for upstream with the given subdirectives,
// and "up" on other paths. It returns the process and the site's address.
func startGateway(t *testing.T, upstream, subdirectives string) (*exec.Cmd, string) {
	t.Helper()
	addr := freeAddr(t)
	base := "http://" + addr
	cmd := startCaddy(t, fmt.Sprintf(`{
	admin off
	persist_config off
}
http://%s {
	bind 127.0.0.1
	mcp_sse {
		upstream %s
		%s
	}
	respond "up" 200
}
`, addr, upstream, subdirectives), base+"/")
	return cmd, addr
}

func TestShutdownEndsStreamsPromptly(t *testing.T) {
	const sessions = 1000
	up := newTestUpstream(t)
	cmd, addr := startGateway(t, up.URL, "")
	base := "http://" + addr

	streamClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	postClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	streams := make([]*rawStream, sessions)
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	sem := make(chan struct{}, 50)
	for i := range streams {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			req, err := http.NewRequest(http.MethodGet, base+"/sse", nil)
			var s *rawStream
			if err == nil {
				s, err = openStream(streamClient, req)
			}
			if err == nil {
				err = s.initialize(postClient, base)
			}
			streams[i] = s
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("opening sessions: %v", err)
		}
	}

	// Connections the clients opened but never sent a request on would
	// hold Go's server Shutdown for 5 seconds, whatever the handler does.
	postClient.CloseIdleConnections()
	streamClient.CloseIdleConnections()

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("caddy exited with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("caddy still running 5s after SIGTERM with %d sessions open", sessions)
	}
	t.Logf("caddy exited %v after SIGTERM with %d sessions open", time.Since(start), sessions)

	for i, s := range streams {
		if _, err := io.Copy(io.Discard, s.resp.Body); err != nil {
			t.Errorf("stream %d broke instead of ending: %v", i, err)
			break
		}
	}
	if n := len(up.deleted); n != sessions {
		t.Errorf("%d upstream sessions deleted, want %d", n, sessions)
	}
}
