package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"

	"github.com/mcp-sse/caddy-mcp-sse/cmd/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// runUpstream serves the demo MCP server's tools twice, from one server:
// over Streamable HTTP (HTTP/1.1 and h2c) at /mcp, for the gateway, and
// over the SDK's legacy HTTP+SSE transport at /sse, for the baselines. It
// prints the two listen addresses on one line, then serves until killed.
func runUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	streamableAddr := fs.String("streamable", "127.0.0.1:0", "listen address of the Streamable HTTP server")
	sseAddr := fs.String("sse", "127.0.0.1:0", "listen address of the HTTP+SSE server")
	h2c := fs.Bool("h2c", true, "take h2c on the Streamable HTTP server")
	stateless := fs.Bool("stateless", false, "serve Streamable HTTP statelessly, which offers revision 2026-07-28 (the gateway then speaks it)")
	_ = fs.Parse(args)

	server := demo.NewServer()
	getServer := func(*http.Request) *mcp.Server { return server }

	streamable := &http.Server{Handler: mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{Stateless: *stateless})}
	streamable.Protocols = new(http.Protocols)
	streamable.Protocols.SetHTTP1(true)
	streamable.Protocols.SetUnencryptedHTTP2(*h2c)
	sse := &http.Server{Handler: mcp.NewSSEHandler(getServer, nil)}

	ls, err := net.Listen("tcp", *streamableAddr)
	if err != nil {
		return err
	}
	le, err := net.Listen("tcp", *sseAddr)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", ls.Addr(), le.Addr())
	errc := make(chan error, 2)
	go func() { errc <- streamable.Serve(ls) }()
	go func() { errc <- sse.Serve(le) }()
	return <-errc
}
