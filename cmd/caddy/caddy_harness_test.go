package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// The Caddy harness: the in-process Caddy that caddytest runs, its logs,
// and the built Caddy for tests that need a process of their own.
//
// The tests that load configs into the in-process Caddy run one at a time:
// caddytest runs one Caddy per test process, on fixed ports. The tests
// that start the built Caddy take free ports, and still run one at a time,
// because they measure time and memory.

// The in-process Caddy that caddytest runs serves these.
const (
	gatewayURL = "http://127.0.0.1:9080"
	adminURL   = "http://localhost:2999"
)

// loadCaddyfile loads site blocks into the in-process Caddy as a new config
// (a reload when one is running), with the global options every test uses.
func loadCaddyfile(t *testing.T, sites string) {
	t.Helper()
	loadCaddyfileWith(t, "", sites)
}

// loadCaddyfileWith is loadCaddyfile with more global options.
func loadCaddyfileWith(t *testing.T, globals, sites string) {
	t.Helper()
	tester := caddytest.NewTester(t)
	tester.InitServer(caddyfileGlobals(globals)+sites, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// caddyfileGlobals is the global options block of every test config, with
// more options.
func caddyfileGlobals(more string) string {
	return `{
	admin localhost:2999
	http_port 9080
	https_port 9443
	skip_install_trust
	local_certs
` + more + `
}
`
}

// caddyLog is a file the in-process Caddy writes its logs to as JSON lines.
type caddyLog struct {
	path string
}

// logEntry is one line of a caddyLog, with every field kept.
type logEntry map[string]any

func (e logEntry) String() string {
	b, _ := json.Marshal(map[string]any(e))
	return string(b)
}

// newCaddyLog returns a log file for the test and the global option that
// makes Caddy write the logs of the given loggers at level and above to it.
func newCaddyLog(t *testing.T, level string, loggers ...string) (*caddyLog, string) {
	l := &caddyLog{path: filepath.Join(t.TempDir(), "caddy.log")}
	include := ""
	if len(loggers) > 0 {
		include = "include " + strings.Join(loggers, " ")
	}
	return l, fmt.Sprintf(`log {
	output file %s
	format json
	level %s
	%s
}`, l.path, level, include)
}

// entries returns what was logged so far.
func (l *caddyLog) entries(t *testing.T) []logEntry {
	t.Helper()
	data, err := os.ReadFile(l.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []logEntry
	for line := range strings.Lines(string(data)) {
		var e logEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// gatewaySite is a site on gatewayURL with one mcp_sse handler for upstream
// and the given extra subdirectives; other paths answer "next".
func gatewaySite(upstream, subdirectives string) string {
	return fmt.Sprintf(`http://127.0.0.1:9080 {
	bind 127.0.0.1
	mcp_sse {
		upstream %s
		%s
	}
	respond "next" 200
}
`, upstream, subdirectives)
}

// bounded returns a context for calls that must not hang the test run.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it returns nil, for states that announce
// themselves by no signal a test can wait on.
func waitFor(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	buildOnce  sync.Once
	binaryPath string
	buildErr   error
)

// caddyBinary builds this command once per test run: a process of its own
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
		out, err := exec.Command("go", "build", "-o", binaryPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
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

// caddyProcess is a running built Caddy and the file its logs go to.
type caddyProcess struct {
	*exec.Cmd
	logPath string
}

// logged returns the JSON log lines of the process with the message msg.
func (p *caddyProcess) logged(t *testing.T, msg string) []logEntry {
	t.Helper()
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []logEntry
	for line := range strings.Lines(string(data)) {
		var e logEntry
		if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// startCaddy runs the built Caddy with a Caddyfile and waits until url
// answers. The process is killed at the end of the test if still running.
func startCaddy(t *testing.T, caddyfile, url string) *caddyProcess {
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
	return &caddyProcess{Cmd: cmd, logPath: logs.Name()}
}

// startGateway runs the built Caddy with one site on a free loopback
// address: an mcp_sse handler for upstream with the given subdirectives,
// and "up" on other paths. It returns the process and the site's address.
func startGateway(t *testing.T, upstream, subdirectives string) (*caddyProcess, string) {
	t.Helper()
	return startGatewayWith(t, upstream, subdirectives, "")
}

// startGatewayWith is startGateway with more directives for the site.
func startGatewayWith(t *testing.T, upstream, subdirectives, site string) (*caddyProcess, string) {
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
	%s
	respond "up" 200
}
`, addr, upstream, subdirectives, site), base+"/")
	return cmd, addr
}

// tryLoad posts a config to the in-process Caddy's /load, as `caddy
// reload` does, and returns the status and body of the answer without
// judging them: for configs that Caddy should refuse.
func tryLoad(t *testing.T, contentType string, config []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(adminURL+"/load", contentType, bytes.NewReader(config))
	if err != nil {
		t.Fatalf("POST /load: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// runningConfig returns the in-process Caddy's running config as JSON.
func runningConfig(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get(adminURL + "/config/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cfg map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
		t.Fatalf("decoding the running config: %v", err)
	}
	return cfg
}

// withHandlerField returns cfg with key set to value in every mcp_sse
// handler, however deep in subroutes it sits.
func withHandlerField(t *testing.T, cfg map[string]any, key string, value any) []byte {
	t.Helper()
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "mcp_sse" {
				v[key] = value
			}
			for _, child := range v {
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	walk(cfg)
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hostClient is an HTTP client that sends every request to the in-process
// Caddy, whatever host its URL names, for sites told apart by host.
func hostClient() *http.Client {
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, "127.0.0.1:9080")
		},
	}}
}
