// The interop suite's driver for the official TypeScript SDK v2 client
// (@modelcontextprotocol/client), pinned to protocol revision 2026-07-28
// over StreamableHTTPClientTransport: no initialize and no session; the
// server's requests (sampling, elicitation, roots) come as input_required
// results, which the Client answers with the handlers below and retries
// (MRTR), and resource updates come on a subscriptions/listen stream.
// README.md beside it describes the protocol; script-ops.js runs the
// script, as for ts-sdk.mjs, but for subscribe, which the 2026 revision
// does with subscriptions/listen instead of resources/subscribe.
//
//	node ts-sdk-v2-client.mjs http://127.0.0.1:8080/mcp streamable scripts/ts-sdk-v2-stateless.json
import { readFileSync } from "node:fs";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { runDriver } from "./run-driver.mjs";
import { answerElicitation, answerSampling, roots, runOp, UpdateWaiters } from "./script-ops.js";

// How long one request may take.
const requestTimeout = 15000;
// How long a subscribe operation waits for notifications/resources/updated,
// as script-ops.js's.
const updateWait = 10000;

const [url, transportName, scriptPath] = process.argv.slice(2);
if (!url || transportName !== "streamable" || !scriptPath) {
  console.error("usage: node ts-sdk-v2-client.mjs <url> streamable <script.json>");
  process.exit(2);
}
const script = JSON.parse(readFileSync(scriptPath, "utf8"));

const client = new Client(
  { name: "interop-ts-sdk-v2", version: "1.0.0" },
  {
    capabilities: { sampling: {}, elicitation: { form: {} }, roots: {} },
    versionNegotiation: { mode: { pin: "2026-07-28" } },
  },
);
client.setRequestHandler("sampling/createMessage", (req) => answerSampling(req.params));
client.setRequestHandler("elicitation/create", (req) => answerElicitation(req.params));
client.setRequestHandler("roots/list", () => ({ roots }));
const updates = new UpdateWaiters();
client.setNotificationHandler("notifications/resources/updated", (n) => updates.arrived(n.params.uri));

/**
 * v1Calls is client as script-ops.js's runOp calls it, in the v1 SDK's
 * shape: the v2 Client's callTool takes (params, options), without the v1
 * one's result schema in between. Everything else has the same signature.
 */
const v1Calls = {
  listTools: (params, options) => client.listTools(params, options),
  callTool: (params, _resultSchema, options) => client.callTool(params, options),
  listResources: (params, options) => client.listResources(params, options),
  readResource: (params, options) => client.readResource(params, options),
  listPrompts: (params, options) => client.listPrompts(params, options),
  getPrompt: (params, options) => client.getPrompt(params, options),
  setLoggingLevel: (level, options) => client.setLoggingLevel(level, options),
  complete: (params, options) => client.complete(params, options),
  ping: (options) => client.ping(options),
  subscribeResource: () => {
    throw new Error("resources/subscribe is not in revision 2026-07-28");
  },
};

/**
 * runOpV2 does one operation as runOp does, but subscribe: it opens a
 * subscriptions/listen stream for the op's uri, waits for
 * notifications/resources/updated on it, and closes the stream.
 */
async function runOpV2(op, opts) {
  if (op.op !== "subscribe") return runOp(v1Calls, op, opts);
  updates.reset(op.uri);
  const sub = await client.listen({ resourceSubscriptions: [op.uri] }, { timeout: opts.timeout });
  try {
    if (!(sub.honoredFilter.resourceSubscriptions ?? []).includes(op.uri)) {
      throw new Error(`subscriptions/listen did not honor ${op.uri}: ${JSON.stringify(sub.honoredFilter)}`);
    }
    if (!(await updates.wait(op.uri, updateWait))) {
      throw new Error(`no notifications/resources/updated for ${op.uri} within ${updateWait / 1000} s`);
    }
    return true;
  } finally {
    await sub.close();
  }
}

const transport = new StreamableHTTPClientTransport(new URL(url));
await runDriver(client, transport, url, script, runOpV2, { timeout: requestTimeout, updates });
