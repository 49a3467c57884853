package floor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"runtime/metrics"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(MemStatsAPI{})
}

// MemStatsAPI serves the Go runtime's memory on Caddy's admin endpoint:
//
//	GET /bench/memstats  collects garbage, then answers MemStats as JSON
//
// Caddy loads it with the admin endpoint; it has no configuration.
type MemStatsAPI struct{}

// CaddyModule returns the Caddy module information.
func (MemStatsAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.bench_memstats",
		New: func() caddy.Module { return new(MemStatsAPI) },
	}
}

// MemStatsPath is the admin route of MemStatsAPI.
const MemStatsPath = "/bench/memstats"

// Routes returns the memstats route.
func (MemStatsAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: MemStatsPath, Handler: caddy.AdminHandlerFunc(serveMemStats)}}
}

// MemStats is the process's memory right after a garbage collection, from
// runtime/metrics, in bytes but for the goroutines.
type MemStats struct {
	// HeapLive is the heap the collection found live.
	HeapLive uint64 `json:"heap_live_bytes"`
	// HeapInUse is the heap's spans in use: live objects, and the room
	// between them that their spans hold (fragmentation).
	HeapInUse uint64 `json:"heap_in_use_bytes"`
	// HeapFree is the heap's free spans still resident: what the
	// collection freed and the runtime has not yet given back to the
	// operating system (it keeps some below its next collection's goal).
	HeapFree uint64 `json:"heap_free_bytes"`
	// Stacks is the memory reserved for goroutine stacks.
	Stacks uint64 `json:"stacks_bytes"`
	// Goroutines is how many goroutines there are.
	Goroutines uint64 `json:"goroutines"`
	// TotalMapped is all the memory the Go runtime mapped, resident or not.
	TotalMapped uint64 `json:"total_mapped_bytes"`
}

// The runtime/metrics samples MemStats is made of.
const (
	metricHeapLive    = "/gc/heap/live:bytes"
	metricHeapObjects = "/memory/classes/heap/objects:bytes"
	metricHeapUnused  = "/memory/classes/heap/unused:bytes"
	metricHeapFree    = "/memory/classes/heap/free:bytes"
	metricStacks      = "/memory/classes/heap/stacks:bytes"
	metricGoroutines  = "/sched/goroutines:goroutines"
	metricTotal       = "/memory/classes/total:bytes"
)

// readMemStats collects garbage, so that the heap holds live objects only,
// and reads the process's memory.
func readMemStats() (MemStats, error) {
	runtime.GC()
	names := []string{metricHeapLive, metricHeapObjects, metricHeapUnused, metricHeapFree, metricStacks, metricGoroutines, metricTotal}
	samples := make([]metrics.Sample, len(names))
	for i, name := range names {
		samples[i].Name = name
	}
	metrics.Read(samples)
	v := make(map[string]uint64, len(samples))
	for _, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return MemStats{}, fmt.Errorf("reading %s: runtime/metrics has no such counter", s.Name)
		}
		v[s.Name] = s.Value.Uint64()
	}
	return MemStats{
		HeapLive:    v[metricHeapLive],
		HeapInUse:   v[metricHeapObjects] + v[metricHeapUnused],
		HeapFree:    v[metricHeapFree],
		Stacks:      v[metricStacks],
		Goroutines:  v[metricGoroutines],
		TotalMapped: v[metricTotal],
	}, nil
}

func serveMemStats(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	m, err := readMemStats()
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(m)
}

// Interface guards
var _ caddy.AdminRouter = MemStatsAPI{}
