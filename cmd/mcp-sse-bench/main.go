// Command mcp-sse-bench measures the mcp_sse gateway beside what a user
// would run instead, in one run on one machine: the Go SDK's own HTTP+SSE
// server reached directly (no gateway at all), and stock Caddy
// reverse_proxy in front of that server; and, for the idle holds, beside
// the hold floor, the least a Caddy handler does to hold a stream. It
// starts every process itself (the upstream MCP server, this program's
// `upstream` subcommand, and one Caddy per measurement, the benchmark's
// build in ./caddy), drives them as a raw HTTP+SSE client over several
// loopback source addresses, reads the servers' memory and CPU from /proc
// and Caddy's Go runtime memory from its admin endpoint, prints a table
// and writes it, with PNG plots, to the output directory.
//
//	go build -o bin/caddy-bench ./cmd/mcp-sse-bench/caddy
//	go run ./cmd/mcp-sse-bench -caddy bin/caddy-bench
package main

import (
	"context"
	"flag"
	"fmt"
	stdlog "log"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// log reports progress on stderr. It is this program's own: the upstream
// subcommand links Caddy in (through the demo server), and Caddy sends the
// standard logger to its own.
var log = stdlog.New(os.Stderr, "", stdlog.Ltime)

// config is the run's settings, from the flags.
type config struct {
	caddy       string
	out         string
	sources     int
	upstreamH2C bool
	ping        time.Duration

	calls           bool // run the call workloads, not only the holds
	sequentialCalls int
	loopSessions    int
	loopWarmup      time.Duration
	loopTime        time.Duration
	sweep           []int
	sweepHold       time.Duration
	h1Sessions      int
	h2cSessions     int
	hold            time.Duration
}

func main() {
	if len(os.Args) > 1 {
		sub := map[string]func([]string) error{"upstream": runUpstream, "hold": runHold, "loop": runLoop, "cluster": runCluster}[os.Args[1]]
		if sub != nil {
			if err := sub(os.Args[2:]); err != nil {
				log.Fatal(err)
			}
			return
		}
	}
	var cfg config
	var sweep string
	flag.StringVar(&cfg.caddy, "caddy", "bin/caddy-bench", "the benchmark's Caddy build, with mcp_sse and bench_hold (go build -o bin/caddy-bench ./cmd/mcp-sse-bench/caddy)")
	flag.StringVar(&cfg.out, "out", "bench-results", "the directory for the table, plots and logs")
	flag.BoolVar(&cfg.upstreamH2C, "upstream-h2c", true, "let the upstream take h2c, so that mcp_sse multiplexes its sessions; false measures an HTTP/1.1-only upstream")
	flag.DurationVar(&cfg.ping, "ping", 15*time.Second, "the gateway's ping_interval")
	flag.IntVar(&cfg.sources, "sources", 16, "loopback source addresses to spread connections over (127.0.0.2 and up)")
	flag.BoolVar(&cfg.calls, "calls", true, "run the call workloads (sequential, closed loop); false runs the idle holds only, for a quick memory run")
	flag.IntVar(&cfg.sequentialCalls, "sequential", 2000, "calls of the one-session sequential latency run")
	flag.IntVar(&cfg.loopSessions, "loop-sessions", 1000, "sessions of the closed-loop throughput run")
	flag.DurationVar(&cfg.loopWarmup, "loop-warmup", 5*time.Second, "warmup of the closed-loop run, not measured")
	flag.DurationVar(&cfg.loopTime, "loop-time", 20*time.Second, "measured time of the closed-loop run")
	flag.StringVar(&sweep, "sweep", "1000,2500,5000,9000", "session counts held by every system for the memory plot")
	flag.DurationVar(&cfg.sweepHold, "sweep-hold", 15*time.Second, "how long each sweep point is held")
	flag.IntVar(&cfg.h1Sessions, "sessions", 15000, "sessions the gateway and the floor hold, one TCP connection each (0 skips)")
	flag.IntVar(&cfg.h2cSessions, "h2c-sessions", 100000, "sessions the gateway and the floor hold over h2c connections (0 skips)")
	flag.DurationVar(&cfg.hold, "hold", 5*time.Minute, "how long the gateway and the floor hold those sessions")
	only := flag.String("systems", strings.Join(systems, ","), "the systems to measure, of "+strings.Join(systems, ", "))
	flag.Parse()
	var chosen []string
	for name := range strings.SplitSeq(*only, ",") {
		if !slices.Contains(systems, name) {
			log.Fatalf("-systems: no system %q", name)
		}
		chosen = append(chosen, name)
	}
	systems = chosen
	for f := range strings.SplitSeq(sweep, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			log.Fatalf("-sweep: %q is not a session count", f)
		}
		cfg.sweep = append(cfg.sweep, n)
	}
	if _, err := os.Stat(cfg.caddy); err != nil {
		log.Fatalf("-caddy: %v (build it with: go build -o bin/caddy-bench ./cmd/mcp-sse-bench/caddy)", err)
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, &cfg)
	if err != nil {
		log.Fatal(err)
	}
	table := res.table(&cfg)
	fmt.Print(table)
	if err := os.WriteFile(cfg.out+"/results.md", []byte(table), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := res.plot(cfg.out); err != nil {
		log.Fatal(err)
	}
	log.Printf("table, plots and logs are in %s", cfg.out)
}

// results is everything a run measured, by system.
type results struct {
	sequential map[string]loadResult
	upstream   loadResult // Streamable HTTP, called directly
	loop       map[string]loadResult
	sweep      map[string][]holdResult
	// The holds at the target scale, with one connection per session or
	// over h2c.
	h1, h2c targetHolds
}

// targetHolds are the holds at the target scale over one transport.
type targetHolds struct {
	gateway map[string]*holdResult // by upstream stream setting
	floor   *holdResult            // nil unless the floor is measured
	// floorPosts is the floor whose clients also post a session's setup
	// messages, which it only accepts; nil unless the floor is measured.
	floorPosts *holdResult
}

// The gateway's two upstream stream settings.
const (
	streamOn  = "upstream_stream on (default)"
	streamOff = "upstream_stream off"
)

// run measures every workload on every system, each on fresh processes:
// the call workloads (unless cfg.calls is off) and the sweep of idle
// holds on each system, then the holds at the target scale on the floor
// and the gateway.
func run(ctx context.Context, cfg *config) (*results, error) {
	res := &results{
		sequential: make(map[string]loadResult),
		loop:       make(map[string]loadResult),
		sweep:      make(map[string][]holdResult),
		h1:         targetHolds{gateway: make(map[string]*holdResult)},
		h2c:        targetHolds{gateway: make(map[string]*holdResult)},
	}
	h1 := newHTTPClient(clientOptions{sources: cfg.sources})

	if cfg.calls {
		log.Print("sequential calls, Streamable HTTP upstream called directly")
		up, err := startUpstream(cfg.out, cfg.upstreamH2C)
		if err != nil {
			return nil, err
		}
		direct, err := openStreamable(ctx, h1, "http://"+up.streamable+"/mcp")
		if err == nil {
			res.upstream, err = sequential(ctx, direct, cfg.sequentialCalls/10, cfg.sequentialCalls)
		}
		up.stop()
		if err != nil {
			return nil, fmt.Errorf("upstream direct: %w", err)
		}
	}

	for _, system := range systems {
		if cfg.calls && system != systemFloor {
			log.Printf("%s: sequential calls, then %d sessions in a closed loop", system, cfg.loopSessions)
			d, err := deploy(ctx, cfg, system, deployOptions{})
			if err != nil {
				return nil, err
			}
			seq, loop, err := measureCalls(ctx, cfg, h1, d)
			d.stop()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", system, err)
			}
			res.sequential[system], res.loop[system] = seq, loop
			log.Printf("  sequential p50 %v; closed loop %.0f calls/s, %d errors", quantile(seq.latency, .5), loop.rate(), loop.errors)
			if loop.firstErr != nil {
				log.Printf("  first error: %v", loop.firstErr)
			}
		}

		for _, n := range cfg.sweep {
			log.Printf("%s: holding %d sessions for %v", system, n, cfg.sweepHold)
			r, err := holdOn(ctx, cfg, h1, system, deployOptions{}, n, cfg.sweepHold)
			if err != nil {
				return nil, err
			}
			res.sweep[system] = append(res.sweep[system], r)
		}
	}

	h2c := newHTTPClient(clientOptions{h2c: true, sources: cfg.sources})
	for _, t := range []struct {
		holds  *targetHolds
		n      int
		how    string
		client *http.Client
		opts   deployOptions
	}{
		{&res.h1, cfg.h1Sessions, "one TCP connection each", h1, deployOptions{}},
		{&res.h2c, cfg.h2cSessions, "over h2c", h2c, deployOptions{h2c: true}},
	} {
		if t.n == 0 {
			continue
		}
		if slices.Contains(systems, systemFloor) {
			for _, f := range []struct {
				r     **holdResult
				posts bool
				what  string
			}{{&t.holds.floor, false, ""}, {&t.holds.floorPosts, true, ", with the setup POSTs"}} {
				log.Printf("%s%s: holding %d sessions, %s, for %v", systemFloor, f.what, t.n, t.how, cfg.hold)
				opts := t.opts
				opts.setupPosts = f.posts
				r, err := holdOn(ctx, cfg, t.client, systemFloor, opts, t.n, cfg.hold)
				if err != nil {
					return nil, err
				}
				*f.r = &r
			}
		}
		for _, stream := range []string{streamOn, streamOff} {
			log.Printf("%s, %s: holding %d sessions, %s, for %v", systemGateway, stream, t.n, t.how, cfg.hold)
			opts := t.opts
			opts.noUpstreamStream = stream == streamOff
			r, err := holdOn(ctx, cfg, t.client, systemGateway, opts, t.n, cfg.hold)
			if err != nil {
				return nil, err
			}
			t.holds.gateway[stream] = &r
		}
	}
	return res, nil
}

// measureCalls runs the sequential and the closed-loop workloads on d.
func measureCalls(ctx context.Context, cfg *config, client *http.Client, d *deployment) (seq, loop loadResult, err error) {
	s, err := openSSE(ctx, client, d.streamURL, d.opening)
	if err != nil {
		return seq, loop, err
	}
	seq, err = sequential(ctx, s, cfg.sequentialCalls/10, cfg.sequentialCalls)
	s.close()
	if err != nil {
		return seq, loop, err
	}
	loop, err = closedLoop(ctx, client, d, cfg.loopSessions, cfg.loopWarmup, cfg.loopTime)
	return seq, loop, err
}

// holdOn deploys system and holds n idle sessions on it.
func holdOn(ctx context.Context, cfg *config, client *http.Client, system string, opts deployOptions, n int, hold time.Duration) (holdResult, error) {
	d, err := deploy(ctx, cfg, system, opts)
	if err != nil {
		return holdResult{}, err
	}
	defer d.stop()
	r, err := holdIdle(ctx, client, d, n, hold, log.Printf)
	if err != nil {
		return r, fmt.Errorf("%s, %d sessions: %w", system, n, err)
	}
	log.Printf("  %.1f KiB per session (RSS %d MiB), %d dropped, idle CPU %.1f%%", r.kibPerSession(), r.held.rss>>20, r.dropped, 100*r.idleCPU)
	if m, ok := r.memPerSession(); ok {
		log.Printf("  per session: %.1f KiB of stacks, %.1f KiB of heap in use (%.1f KiB live), %.2f goroutines",
			m.stacks/1024, m.heapInUse/1024, m.heapLive/1024, m.goroutines)
	}
	if r.openErr != nil {
		log.Printf("  first failure to open: %v", r.openErr)
	}
	return r, nil
}
