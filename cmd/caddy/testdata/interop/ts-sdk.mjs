// The interop suite's driver for the official TypeScript SDK v1 client
// (@modelcontextprotocol/sdk): SSEClientTransport for "sse",
// StreamableHTTPClientTransport for "streamable". README.md beside it
// describes the protocol; script-ops.js runs the script, as the browser
// page does.
//
//	node ts-sdk.mjs http://127.0.0.1:8080/sse sse scripts/everything.json
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { runDriver } from "./run-driver.mjs";
import { answerElicitation, answerSampling, roots, runOp, UpdateWaiters } from "./script-ops.js";

// How long one request may take.
const requestTimeout = 15000;

const [url, transportName, scriptPath] = process.argv.slice(2);
if (!url || !["sse", "streamable"].includes(transportName) || !scriptPath) {
  console.error("usage: node ts-sdk.mjs <url> sse|streamable <script.json>");
  process.exit(2);
}
const script = JSON.parse(readFileSync(scriptPath, "utf8"));

const client = new Client(
  { name: "interop-ts-sdk", version: "1.0.0" },
  { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
);
client.setRequestHandler(CreateMessageRequestSchema, (req) => answerSampling(req.params));
client.setRequestHandler(ElicitRequestSchema, (req) => answerElicitation(req.params));
client.setRequestHandler(ListRootsRequestSchema, () => ({ roots }));
const updates = new UpdateWaiters();
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updates.arrived(n.params.uri));

const transport =
  transportName === "sse" ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url));
await runDriver(client, transport, url, script, (op, opts) => runOp(client, op, opts), { timeout: requestTimeout, updates });
