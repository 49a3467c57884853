// An MCP server built on the TypeScript SDK v2 (@modelcontextprotocol/server)
// and served the way its documentation recommends: createMcpHandler, which
// answers 2026-07-28 requests and, by default ("legacy mode"), serves
// 2025-era Streamable HTTP statelessly, each request by a fresh server from
// the factory, with no session, GET stream or legacy HTTP+SSE endpoint.
//
//	PORT=0 node --require ./loopback.cjs ts-sdk-v2-server.mjs
//
// It serves /mcp on 127.0.0.1:PORT.
import { createServer } from "node:http";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { completable, createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";

const text = (s) => ({ content: [{ type: "text", text: s }] });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** newServer returns the server: tools echo, add and countdown, one resource, one prompt. */
function newServer() {
  const server = new McpServer({ name: "interop-ts-sdk-v2", version: "1.0.0" }, { capabilities: { logging: {} } });
  server.registerTool(
    "echo",
    { description: "Returns its text.", inputSchema: z.object({ text: z.string() }) },
    async ({ text: t }) => text(t),
  );
  server.registerTool(
    "add",
    { description: "Adds two numbers.", inputSchema: z.object({ a: z.number(), b: z.number() }) },
    async ({ a, b }) => text(String(a + b)),
  );
  // Each step's progress goes out interval_ms before the next step, and the
  // last one interval_ms before the result.
  server.registerTool(
    "countdown",
    {
      description: "Reports progress for each step, then returns.",
      inputSchema: z.object({ steps: z.number().int(), interval_ms: z.number().int().default(0) }),
    },
    async ({ steps, interval_ms }, ctx) => {
      const progressToken = ctx.mcpReq._meta?.progressToken;
      for (let i = 1; i <= steps && progressToken !== undefined; i++) {
        await ctx.mcpReq.notify({
          method: "notifications/progress",
          params: { progressToken, progress: i, total: steps, message: `step ${i} of ${steps}` },
        });
        await sleep(interval_ms);
      }
      return text("liftoff");
    },
  );
  server.registerResource(
    "greeting",
    "interop://greeting",
    { mimeType: "text/plain", description: "A fixed greeting." },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "hello from the TypeScript SDK v2" }] }),
  );
  server.registerPrompt(
    "greet",
    {
      description: "Asks to greet someone.",
      argsSchema: z.object({
        name: completable(z.string(), (value) => ["Ada", "Alan", "Grace"].filter((n) => n.startsWith(value))),
      }),
    },
    ({ name }) => ({ messages: [{ role: "user", content: { type: "text", text: `Please greet ${name}.` } }] }),
  );
  return server;
}

const mcp = toNodeHandler(createMcpHandler(newServer));
createServer((req, res) => {
  if (new URL(req.url, "http://localhost").pathname !== "/mcp") {
    res.writeHead(404).end();
    return;
  }
  mcp(req, res);
}).listen(Number(process.env.PORT ?? 0), "127.0.0.1");
