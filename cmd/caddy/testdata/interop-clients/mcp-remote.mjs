// Drives mcp-remote as Claude Desktop does: spawns `mcp-remote <url>` and
// talks MCP to it over stdio, here with the TypeScript SDK's
// StdioClientTransport, while mcp-remote speaks to the server over the
// legacy SSE transport (--transport sse-only) or Streamable HTTP
// (http-only).
//
//	node mcp-remote.mjs http://127.0.0.1:9080/sse sse script.json
//
// Plain http is allowed for 127.0.0.1 and localhost without --allow-http.
// Against a server that asks for authorization, mcp-remote prints the URL
// to authorize at and waits on its callback port; the driver then does
// what the user's browser would: it opens the URL (the test's
// authorization server approves at once) and follows the redirect to the
// callback. BROWSER=true keeps mcp-remote from starting a real browser.
// Its state (~/.mcp-auth) goes to a scratch directory.
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { args, print, run, scratchHome } from "./common.mjs";
import { newClient, sdkOps } from "./sdkops.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { url, transport, script } = args();
const home = scratchHome("interop-mcp-remote-");

const stdio = new StdioClientTransport({
  command: process.execPath,
  args: [
    join(here, "node_modules/mcp-remote/dist/proxy.js"),
    url,
    "--transport",
    transport === "sse" ? "sse-only" : "http-only",
  ],
  env: {
    PATH: process.env.PATH,
    HOME: home,
    MCP_REMOTE_CONFIG_DIR: join(home, ".mcp-auth"),
    BROWSER: "true",
  },
  // mcp-remote logs to stderr: the test's log, and where it says where to
  // log in.
  stderr: "pipe",
});
let loginNext = false;
createInterface({ input: stdio.stderr }).on("line", (line) => {
  console.error(line);
  if (loginNext && /^https?:\/\//.test(line)) approve(line);
  loginNext = line.includes("Please authorize this client by visiting:");
});

/** approve opens the authorization URL and follows its redirect to mcp-remote's callback, as a browser would. */
async function approve(authorizationUrl) {
  try {
    const answer = await fetch(authorizationUrl, { redirect: "manual" });
    await fetch(answer.headers.get("location"));
  } catch (err) {
    console.error(`logging in at ${authorizationUrl}: ${err}`);
  }
}
const client = newClient("interop-mcp-remote");
try {
  await client.connect(stdio);
} catch (err) {
  console.error(`mcp-remote: cannot connect to ${url}: ${err}`);
  process.exit(1);
}
const results = await run(script, sdkOps(client));
await client.close();
print(results);
