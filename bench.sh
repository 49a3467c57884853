#!/bin/sh
# Builds Caddy with mcp_sse and the load generator, then measures the
# gateway beside the Go SDK's SSE server and stock reverse_proxy. The table
# is printed and written, with plots, to bench-results/. Flags go to
# mcp-sse-bench (see bin/mcp-sse-bench -h); the full run takes ~35 minutes.
set -eu
cd "$(dirname "$0")"
go build -o bin/caddy ./cmd/caddy
go build -o bin/mcp-sse-bench ./cmd/mcp-sse-bench
exec bin/mcp-sse-bench -caddy bin/caddy "$@"
