// An MCP server built on the TypeScript SDK v2 (@modelcontextprotocol/server)
// and served the way its documentation recommends: createMcpHandler, each
// request answered by a fresh server from the factory, with no session.
//
//	PORT=0 node --require ./loopback.cjs ts-sdk-v2-server.mjs [reject]
//
// It serves /mcp on 127.0.0.1:PORT: the tools echo, add and countdown, the
// resource interop://greeting and the prompt greet.
//
// By default ("legacy mode") it answers 2026-07-28 requests and serves
// 2025-era Streamable HTTP statelessly, with no GET stream or legacy
// HTTP+SSE endpoint. With "reject" it serves only revision 2026-07-28
// (legacy: "reject": a 2025-era initialize is refused with -32022), and
// has the tools that need that revision: sample, elicit and roots ask the
// client for input by multi-round-trip requests (MRTR: the tool returns
// inputRequired(...) and reads the answers from the retried request's
// inputResponses); log sends notifications/message when the request's
// _meta asks for a log level; region's argument region is mirrored in the
// Mcp-Param-Region header (x-mcp-header); change publishes
// notifications/tools/list_changed. Changes reach clients only on
// subscriptions/listen streams, through the handler's notify: it
// publishes notifications/resources/updated for interop://greeting every
// 200 ms, so that a subscriber gets one soon after it subscribed.
import { createServer } from "node:http";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { completable, createMcpHandler, inputRequired, inputResponse, McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";

const text = (s) => ({ content: [{ type: "text", text: s }] });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// How often interop://greeting is said to have changed.
const updateEvery = 200;

/**
 * ask is a tool's first round, or its answer: when the retried request
 * carries no response for key, it asks for request (an inputRequired
 * request) and the client retries with the answer; otherwise it resolves
 * the tool's result from the response's view (inputResponse's kind and
 * fields).
 */
function ask(ctx, key, request, answer) {
  const view = inputResponse(ctx.mcpReq.inputResponses, key);
  if (view.kind === "missing") return inputRequired({ inputRequests: { [key]: request } });
  return answer(view);
}

// reject: serve revision 2026-07-28 only, with its tools.
const reject = process.argv[2] === "reject";

/** newServer returns the server, with the 2026 revision's tools if reject. */
function newServer() {
  const server = new McpServer(
    { name: reject ? "interop-ts-sdk-v2-stateless" : "interop-ts-sdk-v2", version: "1.0.0" },
    { capabilities: reject ? { logging: {}, resources: { subscribe: true } } : { logging: {} } },
  );
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
  if (reject) {
    server.registerTool(
      "sample",
      { description: "Asks the client's model to say hello.", inputSchema: z.object({}) },
      async (_args, ctx) =>
        ask(
          ctx,
          "llm",
          inputRequired.createMessage({
            messages: [{ role: "user", content: { type: "text", text: "Say hello" } }],
            maxTokens: 50,
          }),
          (view) => {
            if (view.kind !== "sampling") throw new Error(`sampling: got a ${view.kind} response`);
            const c = view.result.content;
            const said = Array.isArray(c) ? c.find((x) => x.type === "text")?.text : c?.text;
            return text(`sampled: ${said ?? ""}`);
          },
        ),
    );
    server.registerTool(
      "elicit",
      { description: "Asks the user for a name and an age.", inputSchema: z.object({}) },
      async (_args, ctx) =>
        ask(
          ctx,
          "form",
          inputRequired.elicit({
            message: "Who are you?",
            requestedSchema: {
              type: "object",
              properties: { name: { type: "string" }, age: { type: "integer" } },
              required: ["name"],
            },
          }),
          (view) => {
            if (view.kind !== "elicit") throw new Error(`elicitation: got a ${view.kind} response`);
            // Keys sorted: clients write the answer's keys in orders of
            // their own, and the tool reports what was answered.
            const content = Object.fromEntries(Object.entries(view.content ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));
            return text(JSON.stringify({ action: view.action, content }));
          },
        ),
    );
    // One "uri name" line per root, as the Go server's roots tool.
    server.registerTool(
      "roots",
      { description: "Lists the client's roots.", inputSchema: z.object({}) },
      async (_args, ctx) =>
        ask(ctx, "roots", inputRequired.listRoots(), (view) => {
          if (view.kind !== "roots") throw new Error(`listing roots: got a ${view.kind} response`);
          return text(view.roots.map((r) => `${r.uri} ${r.name}`).join("\n"));
        }),
    );
    server.registerTool(
      "log",
      { description: "Logs a message at level info.", inputSchema: z.object({}) },
      async (_args, ctx) => {
        await ctx.mcpReq.log("info", "hello from the log tool");
        return text("logged");
      },
    );
    server.registerTool(
      "region",
      {
        description: "Returns region:text; region is mirrored in the Mcp-Param-Region header.",
        inputSchema: z.object({ region: z.string().meta({ "x-mcp-header": "Region" }), text: z.string() }),
      },
      async ({ region, text: t }) => text(`${region}:${t}`),
    );
    server.registerTool(
      "change",
      { description: "Says that the tool list changed.", inputSchema: z.object({}) },
      async () => {
        handler.notify.toolsChanged();
        return text("changed");
      },
    );
  }
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

// The factory runs per request, after handler is set.
const handler = createMcpHandler(newServer, reject ? { legacy: "reject" } : {});
if (reject) setInterval(() => handler.notify.resourceUpdated("interop://greeting"), updateEvery).unref();

const mcp = toNodeHandler(handler);
createServer((req, res) => {
  if (new URL(req.url, "http://localhost").pathname !== "/mcp") {
    res.writeHead(404).end();
    return;
  }
  mcp(req, res);
}).listen(Number(process.env.PORT ?? 0), "127.0.0.1");
