// Command caddy is Caddy with the standard modules and mcp_sse plugged in:
// the main that `xcaddy build --with github.com/mcp-sse/caddy-mcp-sse`
// generates, plus the demo MCP server that Caddyfile.example serves.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mcp-sse/caddy-mcp-sse"
	_ "github.com/mcp-sse/caddy-mcp-sse/cmd/internal/demo"
)

func main() {
	caddycmd.Main()
}
