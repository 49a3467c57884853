package main

import (
	"fmt"
	"slices"
	"strings"
)

// holdColumn is one system's hold in a table beside the floor.
type holdColumn struct {
	name string
	r    *holdResult
}

// floorTables renders every hold's memory per session beside the hold
// floor's, hold by hold: the sweep's on every system, then the target
// holds on the gateway with either upstream stream setting.
func (res *results) floorTables(cfg *config) string {
	var b strings.Builder
	b.WriteString("\nMemory per session beside the hold floor. RSS is the process's, divided by the sessions held; over the\n" +
		"floor, the difference with the floor's and its share of it. The Go runtime's figures (not the SDK's\n" +
		"server's: it is not on Caddy) are read from Caddy's /bench/memstats after a collection at the end of\n" +
		"the hold, less the same reading before the sessions opened, divided by the sessions.\n")
	floorFirst := slices.Concat([]string{systemFloor}, slices.DeleteFunc(slices.Clone(systems), func(s string) bool { return s == systemFloor }))
	for i, n := range cfg.sweep {
		var cols []holdColumn
		for _, s := range floorFirst {
			if i < len(res.sweep[s]) {
				cols = append(cols, holdColumn{s, &res.sweep[s][i]})
			}
		}
		writeFloorTable(&b, fmt.Sprintf("%d idle sessions, one TCP connection each, held %v", n, cfg.sweepHold), cols)
	}
	for _, t := range []struct {
		holds targetHolds
		n     int
		how   string
	}{
		{res.h1, cfg.h1Sessions, "one TCP connection each"},
		{res.h2c, cfg.h2cSessions, "over h2c"},
	} {
		var cols []holdColumn
		if t.holds.floor != nil {
			cols = append(cols, holdColumn{systemFloor, t.holds.floor}, holdColumn{systemFloorPosts, t.holds.floorPosts})
		}
		for _, stream := range []string{streamOn, streamOff} {
			if r := t.holds.gateway[stream]; r != nil {
				cols = append(cols, holdColumn{systemGateway + ", " + stream, r})
			}
		}
		writeFloorTable(&b, fmt.Sprintf("%d idle sessions, %s, held %v", t.n, t.how, cfg.hold), cols)
	}
	return b.String()
}

// writeFloorTable writes one hold's table, the floor's column first if it
// was measured.
func writeFloorTable(b *strings.Builder, title string, cols []holdColumn) {
	if len(cols) == 0 {
		return
	}
	fmt.Fprintf(b, "\n| %s |", title)
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", c.name)
	}
	fmt.Fprintf(b, "\n|---|%s\n", strings.Repeat("---:|", len(cols)))
	row := func(name string, cell func(r *holdResult) string) {
		fmt.Fprintf(b, "| %s |", name)
		for _, c := range cols {
			fmt.Fprintf(b, " %s |", cell(c.r))
		}
		b.WriteString("\n")
	}
	mem := func(name string, figure func(m sessionMem) string) {
		row(name, func(r *holdResult) string {
			m, ok := r.memPerSession()
			if !ok {
				return "–"
			}
			return figure(m)
		})
	}
	kib := func(bytes float64) string { return fmt.Sprintf("%.1f KiB", bytes/1024) }

	row("RSS per session", func(r *holdResult) string { return rssCell(*r) })
	// over is the row of each hold's RSS over that of floor, for the
	// holds after it.
	over := func(name string, floor int) {
		row(name, func(r *holdResult) string {
			if i := slices.IndexFunc(cols, func(c holdColumn) bool { return c.r == r }); i <= floor {
				return "–"
			}
			d := r.kibPerSession() - cols[floor].r.kibPerSession()
			return fmt.Sprintf("%+.1f KiB (%+.0f%%)", d, 100*d/cols[floor].r.kibPerSession())
		})
	}
	if cols[0].name == systemFloor {
		over("… over the floor", 0)
	}
	if len(cols) > 1 && cols[1].name == systemFloorPosts {
		over("… over the floor with the setup POSTs", 1)
	}
	mem("goroutine stacks per session", func(m sessionMem) string { return kib(m.stacks) })
	mem("heap in use per session (live objects and the free room of their spans)", func(m sessionMem) string { return kib(m.heapInUse) })
	mem("live heap per session", func(m sessionMem) string { return kib(m.heapLive) })
	mem("free heap still resident, per session", func(m sessionMem) string { return kib(m.heapFree) })
	mem("all the Go runtime mapped, per session", func(m sessionMem) string { return kib(m.totalMapped) })
	mem("goroutines per session", func(m sessionMem) string { return fmt.Sprintf("%.2f", m.goroutines) })
	row("CPU while idle (after the first tenth of the hold)", func(r *holdResult) string { return fmt.Sprintf("%.1f%%", 100*r.idleCPU) })
}
