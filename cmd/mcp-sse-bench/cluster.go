package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runCluster measures what sharing sessions through Redis costs: the
// latency of a call whose POST reaches another instance than the one
// holding the stream, beside the same call on the holder and on a gateway
// without a cluster; the Redis commands per call; and the memory per idle
// session with and without the cluster.
//
//	bin/mcp-sse-bench cluster -caddy bin/caddy
func runCluster(args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	caddy := fs.String("caddy", "bin/caddy", "the Caddy binary with mcp_sse")
	redisServer := fs.String("redis-server", "redis-server", "the redis-server binary (Debian's package)")
	out := fs.String("out", "bench-results/cluster", "the directory for the table and logs")
	calls := fs.Int("calls", 2000, "sequential calls per placement")
	idle := fs.Int("idle", 5000, "idle sessions held for the memory figure (0 skips)")
	hold := fs.Duration("hold", 20*time.Second, "how long the idle sessions are held")
	_ = fs.Parse(args)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	ctx := context.Background()
	cfg := &config{caddy: *caddy, out: *out, upstreamH2C: true, ping: 15 * time.Second}

	redisAddr, stopRedis, err := startRedis(*redisServer, *out)
	if err != nil {
		return err
	}
	defer stopRedis()
	up, err := startUpstream(*out, true)
	if err != nil {
		return err
	}
	defer up.stop()
	cluster := fmt.Sprintf("cluster redis {\n\t\t\turl redis://%s/0\n\t\t}", redisAddr)
	a, err := startGatewayCaddy(ctx, cfg, "A", up, cluster)
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := startGatewayCaddy(ctx, cfg, "B", up, cluster)
	if err != nil {
		return err
	}
	defer b.stop()
	alone, err := startGatewayCaddy(ctx, cfg, "alone", up, "")
	if err != nil {
		return err
	}
	defer alone.stop()

	client := newHTTPClient(clientOptions{sources: 1})
	var table strings.Builder
	fmt.Fprintf(&table, "# Cluster: %s\n\n%d sequential echo calls each, one session, loopback; Redis %s.\n\n", time.Now().Format(time.DateOnly), *calls, redisAddr)
	fmt.Fprintf(&table, "| placement | p50 | p90 | p99 | Redis commands per call |\n|---|---|---|---|---|\n")
	var p50s []time.Duration
	for _, pl := range []struct {
		name   string
		stream *deployment
		post   *deployment
	}{
		{"no cluster", alone, alone},
		{"cluster, POST on the stream's instance", a, a},
		{"cluster, POST on another instance", a, b},
	} {
		log.Printf("sequential calls: %s", pl.name)
		s, err := openSSE(ctx, client, pl.stream.streamURL, throughInitialize)
		if err != nil {
			return fmt.Errorf("%s: %w", pl.name, err)
		}
		s.endpoint = strings.Replace(s.endpoint, hostOf(pl.stream.streamURL), hostOf(pl.post.streamURL), 1)
		before, err := redisCommands(redisAddr)
		if err != nil {
			return err
		}
		r, err := sequential(ctx, s, 100, *calls)
		s.close()
		if err != nil {
			return fmt.Errorf("%s: %w", pl.name, err)
		}
		after, err := redisCommands(redisAddr)
		if err != nil {
			return err
		}
		p50s = append(p50s, quantile(r.latency, .5))
		fmt.Fprintf(&table, "| %s | %s | %s | %s | %s |\n", pl.name, ms(quantile(r.latency, .5)), ms(quantile(r.latency, .9)),
			ms(quantile(r.latency, .99)), commandsPerCall(before, after, 100+*calls))
	}
	fmt.Fprintf(&table, "\nAdded p50 of a POST on another instance: %s over the stream's instance, %s over no cluster.\n",
		ms(p50s[2]-p50s[1]), ms(p50s[2]-p50s[0]))
	if *idle > 0 {
		fmt.Fprintf(&table, "\n| %d idle sessions held %v | RSS per session | added per session |\n|---|---|---|\n", *idle, *hold)
		for _, d := range []struct {
			name string
			dep  *deployment
		}{{"no cluster", alone}, {"cluster", a}} {
			log.Printf("holding %d idle sessions: %s", *idle, d.name)
			r, err := holdIdle(ctx, client, d.dep, *idle, *hold, log.Printf)
			if err != nil {
				return fmt.Errorf("%s: %w", d.name, err)
			}
			fmt.Fprintf(&table, "| %s | %.1f KiB | %.1f KiB |\n", d.name, r.kibPerSession(), r.addedKiBPerSession())
		}
	}
	fmt.Print(table.String())
	return os.WriteFile(filepath.Join(*out, "results.md"), []byte(table.String()), 0o644)
}

// startRedis runs redis-server on a free loopback port, without
// persistence, and returns its address and how to stop it.
func startRedis(bin, dir string) (string, func(), error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	p, _, err := startProc(filepath.Join(dir, "redis.log"), nil, bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir)
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListening(context.Background(), addr, p); err != nil {
		p.stop()
		return "", nil, fmt.Errorf("redis-server: %w", err)
	}
	return addr, p.stop, nil
}

// startGatewayCaddy runs a Caddy with an mcp_sse handler for up, with more
// subdirectives, on a free port.
func startGatewayCaddy(ctx context.Context, cfg *config, name string, up *upstream, more string) (*deployment, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	servers {
		protocols h1
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	mcp_sse {
		upstream http://%s/mcp
		%s
	}
}
`, port, up.streamable, more)
	path := filepath.Join(cfg.out, "Caddyfile."+name)
	if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	state := filepath.Join(cfg.out, "caddy-state-"+name)
	env := []string{"XDG_DATA_HOME=" + state, "XDG_CONFIG_HOME=" + state}
	p, _, err := startProc(filepath.Join(cfg.out, "caddy-"+name+".log"), env, cfg.caddy, "run", "--adapter", "caddyfile", "--config", path)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListening(ctx, addr, p); err != nil {
		p.stop()
		return nil, fmt.Errorf("caddy %s: %w", name, err)
	}
	return &deployment{streamURL: "http://" + addr + "/sse", pid: p.pid(), upstream: up.pid(), stop: p.stop}, nil
}

// hostOf returns the host:port of a URL.
func hostOf(u string) string {
	host, _, _ := strings.Cut(strings.TrimPrefix(u, "http://"), "/")
	return host
}

// redisCommands reads how often the Redis server ran each command (those
// run by scripts included), from INFO commandstats.
func redisCommands(addr string) (map[string]int, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("INFO commandstats\r\n")); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return nil, fmt.Errorf("INFO commandstats: %q %v", head, err)
	}
	size, _ := strconv.Atoi(strings.TrimSpace(head[1:]))
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	counts := make(map[string]int)
	for line := range strings.Lines(string(body)) {
		// cmdstat_get:calls=1,usec=…
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		counts[name], _ = strconv.Atoi(n)
	}
	return counts, nil
}

// commandsPerCall lists the commands run per call between two readings,
// the INFO calls themselves left out.
func commandsPerCall(before, after map[string]int, calls int) string {
	var parts []string
	total := 0
	for name, n := range after {
		d := n - before[name]
		if name == "info" || float64(d)/float64(calls) < 0.05 {
			continue // the INFO calls, and the periodic work of the instances
		}
		total += d
		parts = append(parts, fmt.Sprintf("%s %.1f", name, float64(d)/float64(calls)))
	}
	if total == 0 {
		return "none"
	}
	slices.Sort(parts)
	return fmt.Sprintf("%.1f: %s", float64(total)/float64(calls), strings.Join(parts, ", "))
}
