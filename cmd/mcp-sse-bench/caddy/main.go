// Command caddy is the benchmark's Caddy: the standard modules and mcp_sse,
// as cmd/caddy has them, plus the floor's bench_hold handler and the
// admin route /bench/memstats that mcp-sse-bench reads the Go runtime's
// memory from. Every system the benchmark puts on Caddy runs on this one
// build, so that they differ only in their handler.
//
//	go build -o bin/caddy-bench ./cmd/mcp-sse-bench/caddy
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mcp-sse/caddy-mcp-sse"
	_ "github.com/mcp-sse/caddy-mcp-sse/cmd/mcp-sse-bench/floor"
)

func main() {
	caddycmd.Main()
}
