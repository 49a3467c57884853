package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The interop suite's third-party clients, each driven as its users drive
// it by a script of testdata/interop-clients (an npm package of its own,
// `npm ci --prefix cmd/caddy/testdata/interop-clients`):
//   - inspector: MCP Inspector's CLI, one `--cli --method ...` process
//     per operation;
//   - mcp-remote: the stdio proxy Claude Desktop runs for remote servers,
//     spoken to over stdio by an SDK client;
//   - langchain: LangChain's MCP adapters (MultiServerMCPClient).

// thirdPartyDir is the npm package of the third-party clients.
const thirdPartyDir = "testdata/interop-clients"

func init() {
	interopClients = append(interopClients,
		interopClient{name: "inspector", run: runInspector},
		interopClient{name: "mcp-remote", run: thirdPartyDriver("mcp-remote", "mcp-remote.mjs")},
		interopClient{name: "langchain", run: thirdPartyDriver("@langchain/mcp-adapters", "langchain.mjs")},
	)
	for op, why := range thirdPartyDirectFailures {
		knownDirectFailures[op] = why
	}
	for _, server := range []string{"go-sdk-2026", "ts-sdk-v2-stateless"} {
		for op, why := range thirdPartyGaps {
			knownClientGaps[server+"/"+op] = why
		}
	}
}

// knownClientGaps are, for the servers that only the client of their own
// revision reaches directly (interopEndpoints.ownClient), the operations
// that the client through the gateway cannot do with any server, by
// "server/client/op", with the reason: the comparison is with another
// client, so knownDirectFailures cannot tell them.
var knownClientGaps = map[string]string{}

// thirdPartyGaps are the entries of knownClientGaps for these clients, by
// "client/op", for each server of revision 2026-07-28.
var thirdPartyGaps = map[string]string{
	"langchain/callTool sample":              langchainNoCap,
	"langchain/callTool elicit":              langchainNoCap,
	"langchain/callTool roots":               langchainNoCap,
	"inspector/callTool sample":              inspectorNoCap,
	"inspector/callTool elicit":              inspectorNoCap,
	"inspector/callTool countdown":           "Inspector's CLI asks for no progress, so its result has no progress count",
	"inspector/subscribe interop://greeting": "Inspector's CLI refuses resources/subscribe in --cli mode",
	"inspector/ping":                         "Inspector's CLI has no ping method",
}

// Why some operations fail without the gateway: the clients that declare
// no sampling, elicitation or roots are offered none of the tools that
// need them (server-everything registers those only for a client that
// declares the capability), or the server's request to the client fails
// (the Go SDK server's tools), which LangChain turns into an exception
// while the Inspector reports the tool's isError result.
const (
	inspectorLacks = "Inspector's CLI declares no sampling and no elicitation, so the server offers no such tool"
	langchainLacks = "LangChain's adapters declare no client capabilities, so the server offers no such tool"
	langchainNoCap = "LangChain's adapters declare no client capabilities, so the server's request fails"
	inspectorNoCap = "Inspector's CLI declares no sampling and no elicitation, so the server's request fails or is declined"
)

// thirdPartyDirectFailures are the entries of knownDirectFailures for
// these clients.
var thirdPartyDirectFailures = map[string]string{
	"everything/inspector/callTool trigger-sampling-request":    inspectorLacks,
	"everything/inspector/callTool trigger-elicitation-request": inspectorLacks,
	"everything/langchain/callTool trigger-sampling-request":    langchainLacks,
	"everything/langchain/callTool trigger-elicitation-request": langchainLacks,
	"everything/langchain/callTool get-roots-list":              langchainLacks,
	"go-sdk/langchain/callTool ask_model":                       langchainNoCap,
	"go-sdk/langchain/callTool elicit":                          langchainNoCap,
	"go-sdk/langchain/callTool roots":                           langchainNoCap,
	// The tool registers the resource for the session that called it,
	// and each of the CLI's operations is a session of its own.
	"everything/inspector/readResource demo://resource/session/interop.txt.gz": "Inspector's CLI runs each operation in a session of its own, and the resource belonged to the session that made it",
}

// thirdPartyDriver runs a client's driver under thirdPartyDir, once pkg
// is installed there.
func thirdPartyDriver(pkg, driver string) func(t *testing.T, url, transport, script string) []opResult {
	return func(t *testing.T, url, transport, script string) []opResult {
		return runNodeDriver(t, thirdPartyDir, pkg, driver, url, transport, script)
	}
}

// runInspector runs the Inspector's driver. The Inspector needs Node
// 22.19 or later; the package ships one (node-<os>-<arch>) where the
// machine's is older, and without either the test skips, or fails in CI.
func runInspector(t *testing.T, url, transport, script string) []opResult {
	if err := inspectorNodeMissing(); err != nil {
		partMissing(t, fmt.Sprintf("the Inspector cannot run: %v (run npm ci --prefix cmd/caddy/%s)", err, thirdPartyDir))
	}
	return runNodeDriver(t, thirdPartyDir, "@modelcontextprotocol/inspector", "inspector.mjs", url, transport, script)
}

// inspectorNodeMissing says why there is no Node the Inspector runs on,
// as inspector.mjs looks for one: the package's own, else the machine's.
func inspectorNodeMissing() error {
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
	shipped := filepath.Join(thirdPartyDir, "node_modules", "node-"+runtime.GOOS+"-"+arch, "bin", "node")
	if _, err := os.Stat(shipped); err == nil {
		return nil
	}
	out, err := exec.Command("node", "-p", "process.versions.node").Output()
	if err != nil {
		return fmt.Errorf("no %s and no node: %v", shipped, err)
	}
	version := strings.TrimSpace(string(out))
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("node version %q", version)
	}
	major, _ := strconv.Atoi(parts[0])
	minor, _ := strconv.Atoi(parts[1])
	if major > 22 || major == 22 && minor >= 19 {
		return nil
	}
	return fmt.Errorf("no %s, and node %s is older than 22.19", shipped, version)
}
