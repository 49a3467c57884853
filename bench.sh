#!/bin/sh
# Builds the benchmark's Caddy (mcp_sse, plus the bench_hold floor and the
# /bench/memstats admin route) and the load generator, then measures the
# gateway beside the Go SDK's SSE server, stock reverse_proxy and the hold
# floor. The table is printed and written, with plots, to bench-results/.
# Flags go to mcp-sse-bench (see bin/mcp-sse-bench -h); the full run takes
# ~45 minutes, -calls=false skips the call workloads.
set -eu
cd "$(dirname "$0")"
go build -o bin/caddy-bench ./cmd/mcp-sse-bench/caddy
go build -o bin/mcp-sse-bench ./cmd/mcp-sse-bench
exec bin/mcp-sse-bench -caddy bin/caddy-bench "$@"
