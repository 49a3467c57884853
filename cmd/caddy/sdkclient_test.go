package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The Go SDK client through the gateway.

// connect opens an MCP session through the gateway with the official Go
// SDK's SSE client transport.
func connect(t *testing.T, endpoint string, opts *mcp.ClientOptions, httpClient *http.Client) *mcp.ClientSession {
	t.Helper()
	// The SSE transport ties its stream to this context, so it must
	// outlive the connect call.
	client := mcp.NewClient(&mcp.Implementation{Name: "gateway-test", Version: "1.0.0"}, opts)
	cs, err := client.Connect(t.Context(), &mcp.SSEClientTransport{Endpoint: endpoint, HTTPClient: httpClient}, nil)
	if err != nil {
		t.Fatalf("connecting to %s: %v", endpoint, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// callText calls a tool and returns the text of its result.
func callText(ctx context.Context, cs *mcp.ClientSession, name string, args map[string]any) (string, error) {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return "", err
	}
	if res.IsError || len(res.Content) != 1 {
		return "", fmt.Errorf("tool %s failed: %+v", name, res.Content)
	}
	txt, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		return "", fmt.Errorf("tool %s returned %T", name, res.Content[0])
	}
	return txt.Text, nil
}
