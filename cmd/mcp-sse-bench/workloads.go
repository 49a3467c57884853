package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcp-sse/caddy-mcp-sse/cmd/mcp-sse-bench/floor"
)

// openConcurrency is how many sessions the generator opens at once.
const openConcurrency = 100

// inParallel calls fn for 0 to n-1, openConcurrency calls at a time.
func inParallel(n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(openConcurrency, n) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// openSessions opens n sessions as far as how says, openConcurrency at a
// time. It returns those that opened, how long that took, and the first
// error of those that did not.
func openSessions(ctx context.Context, client *http.Client, streamURL string, how opening, n int, progress func(opened int)) ([]*sseSession, time.Duration, int, error) {
	start := time.Now()
	sessions := make([]*sseSession, n)
	var (
		failed   atomic.Int64
		firstErr error
		errOnce  sync.Once
	)
	inParallel(n, func(i int) {
		if ctx.Err() != nil {
			return
		}
		s, err := openSSE(ctx, client, streamURL, how)
		if err != nil {
			failed.Add(1)
			errOnce.Do(func() { firstErr = err })
			return
		}
		sessions[i] = s
		if progress != nil && (i+1)%10000 == 0 {
			progress(i + 1)
		}
	})
	elapsed := time.Since(start)
	return slices.DeleteFunc(sessions, func(s *sseSession) bool { return s == nil }), elapsed, int(failed.Load()), firstErr
}

// closeSessions closes every session, a few at a time.
func closeSessions(sessions []*sseSession) {
	inParallel(len(sessions), func(i int) { sessions[i].close() })
}

// holdResult is what holding idle sessions measured.
type holdResult struct {
	sessions    int           // opened (and initialized, but on the floor)
	failed      int           // failed to open
	openErr     error         // why the first failed
	setup       time.Duration // to open them all
	dropped     int           // whose stream ended during the hold
	before      procSample    // the server at rest, before the sessions
	held        procSample    // at the end of the hold
	peakRSS     int64
	idleCPU     float64 // share of one core used during the hold
	holdElapsed time.Duration
	// memBefore and memHeld are the Go runtime's memory at rest and at
	// the end of the hold, for a system on Caddy; nil for the others.
	memBefore, memHeld *floor.MemStats
}

// setupRate is sessions opened per second.
func (r holdResult) setupRate() float64 { return float64(r.sessions) / r.setup.Seconds() }

// kibPerSession is the server's whole resident memory per session held.
func (r holdResult) kibPerSession() float64 {
	return float64(r.held.rss) / 1024 / float64(max(r.sessions, 1))
}

// addedKiBPerSession is what each session added to the memory at rest.
func (r holdResult) addedKiBPerSession() float64 {
	return float64(r.held.rss-r.before.rss) / 1024 / float64(max(r.sessions, 1))
}

// sessionMem is what each session of a hold added to the Go runtime's
// memory (bytes) and goroutines.
type sessionMem struct {
	heapLive, heapInUse, heapFree, stacks, totalMapped, goroutines float64
}

// memPerSession is what each session added to the Go runtime's figures;
// false if the system reports none.
func (r holdResult) memPerSession() (sessionMem, bool) {
	if r.memBefore == nil || r.memHeld == nil {
		return sessionMem{}, false
	}
	n := float64(max(r.sessions, 1))
	per := func(held, before uint64) float64 { return (float64(held) - float64(before)) / n }
	b, h := r.memBefore, r.memHeld
	return sessionMem{
		heapLive:    per(h.HeapLive, b.HeapLive),
		heapInUse:   per(h.HeapInUse, b.HeapInUse),
		heapFree:    per(h.HeapFree, b.HeapFree),
		stacks:      per(h.Stacks, b.Stacks),
		totalMapped: per(h.TotalMapped, b.TotalMapped),
		goroutines:  per(h.Goroutines, b.Goroutines),
	}, true
}

// holdIdle opens n sessions, holds them idle for hold while sampling the
// server process and, at rest and at the end, the Go runtime's memory of
// a system on Caddy, then closes them.
func holdIdle(ctx context.Context, client *http.Client, d *deployment, n int, hold time.Duration, logf func(string, ...any)) (holdResult, error) {
	var r holdResult
	var err error
	if r.before, err = sampleProc(d.pid); err != nil {
		return r, err
	}
	if r.memBefore, err = readMemStats(ctx, d); err != nil {
		return r, err
	}
	sessions, setup, failed, openErr := openSessions(ctx, client, d.streamURL, d.opening, n, func(opened int) {
		logf("  %d sessions open", opened)
	})
	defer closeSessions(sessions)
	r.sessions, r.setup, r.failed, r.openErr = len(sessions), setup, failed, openErr
	logf("  %d sessions opened in %v (%.0f/s), %d failed", r.sessions, setup.Round(time.Millisecond), r.setupRate(), failed)

	start, err := sampleProc(d.pid)
	if err != nil {
		return r, err
	}
	r.peakRSS = start.rss
	// The idle CPU is measured after the first tenth of the hold (30s at
	// most): until then the server still collects what opening the
	// sessions left behind.
	settle := time.Now().Add(min(hold/10, 30*time.Second))
	var settled *procSample
	tick := time.NewTicker(min(5*time.Second, hold))
	defer tick.Stop()
	deadline := time.NewTimer(hold)
	defer deadline.Stop()
	for done := false; !done; {
		select {
		case <-tick.C:
		case <-deadline.C:
			done = true
		case <-ctx.Done():
			return r, ctx.Err()
		}
		s, err := sampleProc(d.pid)
		if err != nil {
			return r, err
		}
		r.peakRSS = max(r.peakRSS, s.rss)
		r.held = s
		if settled == nil && !s.at.Before(settle) {
			settled = &s
		}
	}
	r.holdElapsed = r.held.at.Sub(start.at)
	if settled == nil || settled.at.Equal(r.held.at) {
		settled = &start // a hold too short to settle
	}
	r.idleCPU = cpuShare(*settled, r.held)
	for _, s := range sessions {
		if s.dropped() {
			r.dropped++
		}
	}
	if r.memHeld, err = readMemStats(ctx, d); err != nil {
		return r, err
	}
	return r, nil
}

// loadResult is what a run of calls measured.
type loadResult struct {
	calls    int
	errors   int
	firstErr error
	elapsed  time.Duration
	latency  []time.Duration // sorted
	cpu      float64         // the server's CPU, as a share of one core
	// upstreamCPU is the MCP server's, when it is not the server measured.
	upstreamCPU float64
}

func (r loadResult) rate() float64 { return float64(r.calls) / r.elapsed.Seconds() }

// closedLoop opens n sessions; each calls echo, waits for its result and
// calls again, for warmup and then duration, which is measured.
func closedLoop(ctx context.Context, client *http.Client, d *deployment, n int, warmup, duration time.Duration) (loadResult, error) {
	var r loadResult
	sessions, _, failed, err := openSessions(ctx, client, d.streamURL, d.opening, n, nil)
	defer closeSessions(sessions)
	if failed > 0 {
		return r, fmt.Errorf("%d of %d sessions failed to open: %w", failed, n, err)
	}
	var measuring, stopped atomic.Bool
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() {
			var lat []time.Duration
			var calls, errs int
			var firstErr error
			for !stopped.Load() {
				t := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := s.callEcho(cctx)
				cancel()
				if !measuring.Load() || stopped.Load() {
					continue
				}
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				calls++
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			r.calls += calls
			r.errors += errs
			if r.firstErr == nil {
				r.firstErr = firstErr
			}
			r.latency = append(r.latency, lat...)
			mu.Unlock()
		})
	}
	time.Sleep(warmup) // a load generator's warmup: not waiting for a signal
	measuring.Store(true)
	from, errFrom := sampleProc(d.pid)
	upFrom, errUpFrom := sampleProc(d.upstream)
	time.Sleep(duration)
	to, errTo := sampleProc(d.pid)
	upTo, errUpTo := sampleProc(d.upstream)
	stopped.Store(true)
	wg.Wait()
	if err := errors.Join(errFrom, errUpFrom, errTo, errUpTo); err != nil {
		return r, err
	}
	r.elapsed = to.at.Sub(from.at)
	r.cpu = cpuShare(from, to)
	if d.upstream != d.pid {
		r.upstreamCPU = cpuShare(upFrom, upTo)
	}
	slices.Sort(r.latency)
	return r, nil
}

// caller is a session that calls echo.
type caller interface {
	callEcho(ctx context.Context) error
}

// sequential calls echo n times one after the other, after warmup calls.
func sequential(ctx context.Context, c caller, warmup, n int) (loadResult, error) {
	var r loadResult
	for range warmup {
		if err := c.callEcho(ctx); err != nil {
			return r, err
		}
	}
	start := time.Now()
	for range n {
		t := time.Now()
		if err := c.callEcho(ctx); err != nil {
			return r, err
		}
		r.latency = append(r.latency, time.Since(t))
		r.calls++
	}
	r.elapsed = time.Since(start)
	slices.Sort(r.latency)
	return r, nil
}

// quantile returns the q-quantile (0..1) of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// percentilesOf returns the plotted percentiles of sorted durations.
func percentilesOf(sorted []time.Duration) []percentile {
	var ps []percentile
	for _, p := range []float64{50, 90, 99, 99.9} {
		ps = append(ps, percentile{P: p, Value: quantile(sorted, p/100)})
	}
	return ps
}

// runHold opens sessions at a URL and holds them until interrupted: the
// idle-hold workload on its own, for looking at a server with other tools.
func runHold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	streamURL := fs.String("url", "http://127.0.0.1:8080/sse", "the stream URL")
	n := fs.Int("n", 1000, "how many sessions to open")
	h2c := fs.Bool("h2c", false, "multiplex the sessions over h2c connections")
	sources := fs.Int("sources", 16, "loopback source addresses to spread connections over")
	endpointOnly := fs.Bool("endpoint-only", false, "stop at the endpoint event, as against the hold floor, which has no session to initialize")
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client := newHTTPClient(clientOptions{h2c: *h2c, sources: *sources})
	how := throughInitialize
	if *endpointOnly {
		how = toEndpoint
	}
	sessions, setup, failed, err := openSessions(ctx, client, *streamURL, how, *n, func(opened int) {
		log.Printf("%d sessions open", opened)
	})
	defer closeSessions(sessions)
	log.Printf("%d sessions opened in %v, %d failed (first error: %v); holding them until interrupted", len(sessions), setup, failed, err)
	<-ctx.Done()
	dropped := 0
	for _, s := range sessions {
		if s.dropped() {
			dropped++
		}
	}
	log.Printf("%d sessions dropped", dropped)
	return nil
}

// runLoop runs the closed-loop workload against a URL and prints its
// figures: for profiling a server while it works.
func runLoop(args []string) error {
	fs := flag.NewFlagSet("loop", flag.ExitOnError)
	streamURL := fs.String("url", "http://127.0.0.1:8080/sse", "the stream URL")
	n := fs.Int("n", 1000, "how many sessions call at once")
	duration := fs.Duration("time", 20*time.Second, "how long to measure")
	pid := fs.Int("pid", 0, "the server process to sample, if any")
	_ = fs.Parse(args)
	client := newHTTPClient(clientOptions{sources: 16})
	d := &deployment{streamURL: *streamURL, pid: *pid, upstream: *pid}
	if d.pid == 0 {
		d.pid, d.upstream = os.Getpid(), os.Getpid()
	}
	r, err := closedLoop(context.Background(), client, d, *n, 2*time.Second, *duration)
	if err != nil {
		return err
	}
	log.Printf("%.0f calls/s, p50 %v, p99 %v, %d errors, server CPU %.2f cores", r.rate(), quantile(r.latency, .5), quantile(r.latency, .99), r.errors, r.cpu)
	return nil
}
