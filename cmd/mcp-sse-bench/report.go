package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Targets the gateway is measured against. Memory and idle CPU are
// measured beside the hold floor, in the same run, since absolute figures
// move from run to run.
const (
	targetKiBPerSession = 32 // the plot's line
	// The most RSS a session may add over the floor's, with the upstream
	// stream off and on.
	targetKiBOverFloorOff = 6
	targetKiBOverFloorOn  = 24
	targetThroughput      = 1.0  // times reverse_proxy's
	targetCPUPerCall      = 0.75 // Caddy's CPU per call, times reverse_proxy's
	targetAddedLatency    = 500 * time.Microsecond
)

// table renders the results as Markdown: the machine, the comparison of the
// systems, the gateway against its targets, and every hold's memory beside
// the hold floor's.
func (res *results) table(cfg *config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s; mcp_sse and the hold floor with ping_interval %v.\n\n", machine(), cfg.ping)

	row := func(name string, cell func(system string) string) {
		fmt.Fprintf(&b, "| %s |", name)
		for _, s := range systems {
			fmt.Fprintf(&b, " %s |", cell(s))
		}
		b.WriteString("\n")
	}
	// callRow is a row of the call workloads, which the floor takes no
	// part in.
	callRow := func(name string, cell func(system string) string) {
		row(name, func(s string) string {
			if s == systemFloor {
				return "–"
			}
			return cell(s)
		})
	}
	fmt.Fprintf(&b, "| |")
	for _, s := range systems {
		fmt.Fprintf(&b, " %s |", s)
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---:|", len(systems)))
	b.WriteString("\n")
	if cfg.calls {
		callRow(fmt.Sprintf("one session, %d sequential calls: p50 / p99", cfg.sequentialCalls), func(s string) string {
			r := res.sequential[s]
			return fmt.Sprintf("%s / %s", ms(quantile(r.latency, .5)), ms(quantile(r.latency, .99)))
		})
		callRow(fmt.Sprintf("%d sessions, closed loop: calls/s", cfg.loopSessions), func(s string) string {
			r := res.loop[s]
			return fmt.Sprintf("%.0f", r.rate())
		})
		callRow("… p50 / p99 latency", func(s string) string {
			r := res.loop[s]
			return fmt.Sprintf("%s / %s", ms(quantile(r.latency, .5)), ms(quantile(r.latency, .99)))
		})
		callRow("… failed calls", func(s string) string { return fmt.Sprint(res.loop[s].errors) })
		callRow("… CPU of the server / of the MCP server behind it (cores)", func(s string) string {
			r := res.loop[s]
			if s == systemDirect {
				return fmt.Sprintf("%.2f", r.cpu)
			}
			return fmt.Sprintf("%.2f / %.2f", r.cpu, r.upstreamCPU)
		})
		callRow("… CPU per call, all servers (µs)", func(s string) string {
			r := res.loop[s]
			return fmt.Sprintf("%.0f", (r.cpu+r.upstreamCPU)/r.rate()*1e6)
		})
	}
	for i, n := range cfg.sweep {
		row(fmt.Sprintf("%d idle sessions: RSS per session", n), func(s string) string {
			if i >= len(res.sweep[s]) {
				return "–"
			}
			return rssCell(res.sweep[s][i])
		})
	}
	if len(cfg.sweep) > 0 {
		last := len(cfg.sweep) - 1
		row(fmt.Sprintf("setup rate, %d sessions (sessions/s)", cfg.sweep[last]), func(s string) string {
			if last >= len(res.sweep[s]) {
				return "–"
			}
			return fmt.Sprintf("%.0f", res.sweep[s][last].setupRate())
		})
	}
	b.WriteString("\nSDK SSE direct is the Go SDK's HTTP+SSE server with no gateway; its RSS is that server's, which\n" +
		"also runs the tools. The others' RSS is Caddy's alone. Only mcp_sse and the hold floor send keep-alive\n" +
		"pings. The hold floor is bench_hold on the same Caddy build: the endpoint event, then pings, no session;\n" +
		"it takes part in the idle holds only.\n\n")

	b.WriteString("| target | measured | met |\n|---|---|:-:|\n")
	target := func(name, measured string, met bool) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, measured, yes(met))
	}
	// beside checks r against floor, which floors names in the rows
	// ("the hold floor's"): the bare floor, which the targets name, or
	// the one that also accepts the setup POSTs, whose cost is Caddy's
	// serving of the two requests every session sends.
	beside := func(r, floor *holdResult, floors string, overFloor float64) {
		over := r.kibPerSession() - floor.kibPerSession()
		target(fmt.Sprintf("… RSS at most %s + %.0f KiB per session", floors, overFloor),
			fmt.Sprintf("%.1f KiB, the floor's + %.1f KiB (floor %.1f KiB; RSS %d MiB, peak %d MiB)",
				r.kibPerSession(), over, floor.kibPerSession(), r.held.rss>>20, r.peakRSS>>20),
			over <= overFloor)
		target(fmt.Sprintf("… CPU while idle (after the first tenth of the hold) at most %s", floors),
			fmt.Sprintf("%.1f%% (floor %.1f%%)", 100*r.idleCPU, 100*floor.idleCPU), r.idleCPU <= floor.idleCPU)
	}
	hold := func(r *holdResult, floors targetHolds, how string, overFloor float64) {
		if r == nil {
			return
		}
		target(fmt.Sprintf("%d sessions %s, held %v: none dropped", r.sessions+r.failed, how, r.holdElapsed.Round(time.Second)),
			fmt.Sprintf("%d failed to open, %d dropped (setup %.0f sessions/s)", r.failed, r.dropped, r.setupRate()),
			r.failed == 0 && r.dropped == 0)
		if floors.floor != nil { // else nothing to measure against in this run
			beside(r, floors.floor, "the hold floor's", overFloor)
		}
		if floors.floorPosts != nil {
			beside(r, floors.floorPosts, "the floor's with the setup POSTs", overFloor)
		}
	}
	for _, stream := range []string{streamOn, streamOff} {
		overFloor := float64(targetKiBOverFloorOn)
		if stream == streamOff {
			overFloor = targetKiBOverFloorOff
		}
		hold(res.h1.gateway[stream], res.h1, "with a TCP connection each, "+stream, overFloor)
		hold(res.h2c.gateway[stream], res.h2c, "over h2c, "+stream, overFloor)
	}
	if cfg.calls {
		gw, proxy := res.loop[systemGateway], res.loop[systemProxy]
		if proxy.rate() > 0 && gw.rate() > 0 {
			ratio := gw.rate() / proxy.rate()
			target(fmt.Sprintf("throughput, %d sessions: at least %.1fx reverse_proxy (aim 1.5x)", cfg.loopSessions, targetThroughput),
				fmt.Sprintf("%.2fx (%.0f vs %.0f calls/s)", ratio, gw.rate(), proxy.rate()), ratio >= targetThroughput)
			gwCall, proxyCall := gw.cpu/gw.rate()*1e6, proxy.cpu/proxy.rate()*1e6
			target(fmt.Sprintf("Caddy's CPU per call at most %.2fx reverse_proxy's (the upstream's not counted)", targetCPUPerCall),
				fmt.Sprintf("%.2fx (%.0f vs %.0f µs)", gwCall/proxyCall, gwCall, proxyCall), gwCall <= targetCPUPerCall*proxyCall)
		}
		added := quantile(res.sequential[systemGateway].latency, .5) - quantile(res.upstream.latency, .5)
		target(fmt.Sprintf("added p50 latency at most %v over calling the upstream directly", targetAddedLatency),
			fmt.Sprintf("%s (p50 %s through mcp_sse, %s to the Streamable HTTP upstream)",
				ms(added), ms(quantile(res.sequential[systemGateway].latency, .5)), ms(quantile(res.upstream.latency, .5))),
			added <= targetAddedLatency)
	}
	b.WriteString(res.floorTables(cfg))
	return b.String()
}

// rssCell is a hold's RSS per session, with its failures if any.
func rssCell(r holdResult) string {
	cell := fmt.Sprintf("%.1f KiB", r.kibPerSession())
	if r.failed > 0 || r.dropped > 0 {
		cell += fmt.Sprintf(" (%d failed, %d dropped)", r.failed, r.dropped)
	}
	return cell
}

// plot writes the latency and memory plots into dir; the latency plots
// only if the call workloads ran.
func (res *results) plot(dir string) error {
	var seq, loop []latencySeries
	var mem []memorySeries
	for _, s := range systems {
		if r, ok := res.sequential[s]; ok {
			seq = append(seq, latencySeries{System: s, Percentiles: percentilesOf(r.latency)})
		}
		if r, ok := res.loop[s]; ok {
			loop = append(loop, latencySeries{System: s, Percentiles: percentilesOf(r.latency)})
		}
		m := memorySeries{System: s}
		for _, r := range res.sweep[s] {
			m.Points = append(m.Points, memoryPoint{Sessions: r.sessions, KiBPerSession: r.kibPerSession()})
		}
		mem = append(mem, m)
	}
	// The holds at the target scale, one line per system and way of
	// holding the sessions: a point for HTTP/1.1 and one for h2c.
	targets := func(name string, rs ...*holdResult) {
		m := memorySeries{System: name}
		for _, r := range rs {
			if r != nil {
				m.Points = append(m.Points, memoryPoint{Sessions: r.sessions, KiBPerSession: r.kibPerSession()})
			}
		}
		if len(m.Points) > 0 {
			mem = append(mem, m)
		}
	}
	for _, stream := range []string{streamOn, streamOff} {
		targets(systemGateway+", "+stream, res.h1.gateway[stream], res.h2c.gateway[stream])
	}
	targets(systemFloor+", target holds", res.h1.floor, res.h2c.floor)
	if len(seq) > 0 {
		if err := writeLatencyPlot(filepath.Join(dir, "latency-sequential.png"), "One session, sequential tools/call", seq); err != nil {
			return err
		}
	}
	if len(loop) > 0 {
		if err := writeLatencyPlot(filepath.Join(dir, "latency-closed-loop.png"), "1,000 sessions, closed-loop tools/call", loop); err != nil {
			return err
		}
	}
	return writeMemoryPlot(filepath.Join(dir, "memory.png"), "Server RSS per idle session", mem, targetKiBPerSession)
}

// machine describes where the run happened.
func machine() string {
	model := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if info, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(info), "\n")
		var kb int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(line, "MemTotal:"), "%d", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("%d × %s%s, %s, %s", runtime.NumCPU(), model, mem, runtime.Version(), time.Now().Format("2006-01-02"))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
