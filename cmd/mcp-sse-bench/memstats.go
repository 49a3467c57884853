package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mcp-sse/caddy-mcp-sse/cmd/mcp-sse-bench/floor"
)

// readMemStats reads the Go runtime's memory of d's Caddy from the
// benchmark build's /bench/memstats, which collects garbage first; nil for
// a system not on Caddy.
func readMemStats(ctx context.Context, d *deployment) (*floor.MemStats, error) {
	if d.admin == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.admin+floor.MemStatsPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading memstats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("reading memstats: %s %q (is -caddy the benchmark's build? go build -o bin/caddy-bench ./cmd/mcp-sse-bench/caddy)", resp.Status, body)
	}
	m := new(floor.MemStats)
	if err := json.NewDecoder(resp.Body).Decode(m); err != nil {
		return nil, fmt.Errorf("reading memstats: %w", err)
	}
	return m, nil
}
