package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sse/caddy-mcp-sse/cmd/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The servers of the interop suite. Each runs for one test, on 127.0.0.1,
// and stops at its end.

// interopServers are the servers every client of the suite is run against.
var interopServers = []interopServer{
	{name: "go-sdk", start: startGoSDKServer(false), script: "go-sdk"},
	{name: "go-sdk-stateless", start: startGoSDKServer(true), script: "go-sdk-stateless"},
	{name: "everything", start: startEverythingServer, script: "everything"},
	{name: "ts-sdk-v2", start: startTSSDKv2Server, script: "ts-sdk-v2"},
	{name: "go-sdk-2026", start: startGoSDK2026Server, script: "go-sdk-2026"},
	{name: "ts-sdk-v2-stateless", start: startTSSDKv2StatelessServer, script: "ts-sdk-v2-stateless"},
}

// startGoSDK2026Server runs the Go SDK server in Stateless mode with the
// tools that ask for input the way revision 2026-07-28 has it; the Go SDK
// client reaches it directly, in that revision.
func startGoSDK2026Server(t *testing.T) interopEndpoints {
	url := startStatelessGoServer(t).url
	return interopEndpoints{upstream: url, direct: url, ownClient: func(t *testing.T, url, script string) []opResult {
		return runGoSDKClient(t, url, "streamable", script)
	}}
}

// startTSSDKv2StatelessServer runs ts-sdk-v2-server.mjs in reject mode:
// it serves revision 2026-07-28 only, and the TypeScript SDK v2 client
// reaches it directly.
func startTSSDKv2StatelessServer(t *testing.T) interopEndpoints {
	url := "http://" + startNodeServer(t, "@modelcontextprotocol/server", "ts-sdk-v2-server.mjs", "reject") + "/mcp"
	return interopEndpoints{upstream: url, direct: url, ownClient: func(t *testing.T, url, script string) []opResult {
		return runNodeDriver(t, interopDir, "@modelcontextprotocol/client", "ts-sdk-v2-client.mjs", url, "streamable", script)
	}}
}

// startGoSDKServer returns the start of the Go SDK server: its Streamable
// HTTP handler (stateless or not) on /mcp for the gateway, its legacy SSE
// handler on /sse for direct clients, each session with a server of its
// own.
func startGoSDKServer(stateless bool) func(t *testing.T) interopEndpoints {
	return func(t *testing.T) interopEndpoints {
		newServer := func(*http.Request) *mcp.Server { return interopGoServer() }
		mux := http.NewServeMux()
		mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(newServer, &mcp.StreamableHTTPOptions{Stateless: stateless}))
		mux.Handle("/sse", mcp.NewSSEHandler(newServer, nil))
		srv := httptest.NewUnstartedServer(mux)
		// h2c besides HTTP/1.1: the gateway then carries its sessions
		// over HTTP/2 connections of its own, where an idle GET stream's
		// relay parks; the direct clients speak HTTP/1.1 as before.
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
		t.Cleanup(func() {
			// Streams still open would hold Close up.
			srv.CloseClientConnections()
			srv.Close()
		})
		return interopEndpoints{upstream: srv.URL + "/mcp", direct: srv.URL + "/sse", directTransport: "sse"}
	}
}

// interopGoServer is the demo server with what the go-sdk script needs
// besides its tools:
//   - elicit asks the user for a name, an age, a yes or no, and a colour,
//     and returns the action and the answers as JSON;
//   - roots returns the client's roots, one "uri name" line each;
//   - image returns a text and a one-pixel PNG;
//   - the resources interop://greeting (text) and interop://pixel (PNG);
//   - the prompt greet, with the argument name.
//
// demo.NewServer takes no options, so this server has no resource
// subscriptions and no completions.
func interopGoServer() *mcp.Server {
	s := demo.NewServer()
	mcp.AddTool(s, &mcp.Tool{Name: "elicit", Description: "Asks the user a few questions."}, elicitTool)
	mcp.AddTool(s, &mcp.Tool{Name: "roots", Description: "Lists the client's roots."}, rootsTool)
	mcp.AddTool(s, &mcp.Tool{Name: "image", Description: "Returns a one-pixel image."}, imageTool)
	s.AddResource(&mcp.Resource{URI: "interop://greeting", Name: "greeting", MIMEType: "text/plain"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{
				{URI: req.Params.URI, MIMEType: "text/plain", Text: "hello from the Go SDK"},
			}}, nil
		})
	s.AddResource(&mcp.Resource{URI: "interop://pixel", Name: "pixel", MIMEType: "image/png"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{
				{URI: req.Params.URI, MIMEType: "image/png", Blob: pixelPNG},
			}}, nil
		})
	s.AddPrompt(&mcp.Prompt{Name: "greet", Arguments: []*mcp.PromptArgument{{Name: "name", Required: true}}},
		func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{
				{Role: "user", Content: &mcp.TextContent{Text: "Please greet " + req.Params.Arguments["name"] + "."}},
			}}, nil
		})
	return s
}

// pixelPNG is a one-pixel transparent PNG.
var pixelPNG = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\b\x06\x00\x00\x00\x1f\x15\xc4\x89" +
	"\x00\x00\x00\x11IDATx\x9cbb```\x00\x04\x00\x00\xff\xff\x00\x0f\x00\x03\xfe\x8f\xeb\xcf\x00\x00\x00\x00IEND\xaeB`\x82")

func elicitTool(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
	res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{
		Message: "A few questions",
		RequestedSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"name":      map[string]any{"type": "string"},
				"age":       map[string]any{"type": "integer"},
				"subscribe": map[string]any{"type": "boolean"},
				"color":     map[string]any{"type": "string", "enum": []string{"red", "green"}},
				"planet":    map[string]any{"type": "string", "default": "earth"},
			},
			"required": []string{"name"},
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("elicitation: %w", err)
	}
	answers, err := json.Marshal(res.Content)
	if err != nil {
		return nil, nil, err
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: res.Action + " " + string(answers)}}}, nil, nil
}

func rootsTool(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
	res, err := req.Session.ListRoots(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("listing roots: %w", err)
	}
	return textResult(rootLines(res.Roots)), nil, nil
}

// rootLines is what the roots tools return: "uri name", a line each.
func rootLines(roots []*mcp.Root) string {
	var lines []string
	for _, r := range roots {
		lines = append(lines, r.URI+" "+r.Name)
	}
	return strings.Join(lines, "\n")
}

func imageTool(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
	return &mcp.CallToolResult{Content: []mcp.Content{
		&mcp.TextContent{Text: "one pixel:"},
		&mcp.ImageContent{Data: pixelPNG, MIMEType: "image/png"},
	}}, nil, nil
}

// everythingPackage is the npm package of the reference server.
const everythingPackage = "@modelcontextprotocol/server-everything"

// startEverythingServer runs @modelcontextprotocol/server-everything
// twice: in streamableHttp mode (/mcp) for the gateway, and in sse mode
// (/sse, POSTs to /message) for direct clients.
func startEverythingServer(t *testing.T) interopEndpoints {
	main := filepath.Join("node_modules", everythingPackage, "dist", "index.js")
	upstream := startNodeServer(t, everythingPackage, main, "streamableHttp")
	direct := startNodeServer(t, everythingPackage, main, "sse")
	return interopEndpoints{upstream: "http://" + upstream + "/mcp", direct: "http://" + direct + "/sse", directTransport: "sse"}
}

// startTSSDKv2Server runs ts-sdk-v2-server.mjs, a server on the
// TypeScript SDK v2. Its createMcpHandler serves 2025-era clients over
// stateless Streamable HTTP only, so direct clients use that too.
func startTSSDKv2Server(t *testing.T) interopEndpoints {
	addr := startNodeServer(t, "@modelcontextprotocol/server", "ts-sdk-v2-server.mjs")
	return interopEndpoints{upstream: "http://" + addr + "/mcp", direct: "http://" + addr + "/mcp", directTransport: "streamable"}
}

// startNodeServer runs `node script args...` in testdata/interop, with
// loopback.cjs preloaded so that it listens on 127.0.0.1 on a free port,
// and returns the address it listens on once it does. pkg is the npm
// package the script needs. The process is killed at the test's end.
func startNodeServer(t *testing.T, pkg, script string, args ...string) string {
	t.Helper()
	node := interopNode(t, interopDir, pkg)
	announced, announce, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer announced.Close()
	cmd := exec.Command(node, append([]string{"--require", "./loopback.cjs", script}, args...)...)
	cmd.Dir = interopDir
	// GZIP_ALLOWED_DOMAINS keeps the everything server's gzip tool off
	// the network: the scripts give it data: URLs only.
	cmd.Env = append(os.Environ(), "PORT=0", "INTEROP_LISTEN_FD=3", "GZIP_ALLOWED_DOMAINS=localhost.invalid")
	cmd.ExtraFiles = []*os.File{announce}
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	err = cmd.Start()
	announce.Close()
	if err != nil {
		t.Fatalf("starting %s: %v", script, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s %s said:\n%s", script, strings.Join(args, " "), output.Bytes())
		}
	})
	if err := announced.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	addr, err := bufio.NewReader(announced).ReadString('\n')
	if err != nil {
		// The output is read only once the process is gone.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("%s %s did not start listening: %v\n%s", script, strings.Join(args, " "), err, output.Bytes())
	}
	return strings.TrimSpace(addr)
}
