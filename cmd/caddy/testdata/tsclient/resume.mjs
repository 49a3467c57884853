// Calls a tool over and over for a while with the official TypeScript
// SDK's SSEClientTransport, through stream losses, without ever connecting
// (and so initializing) again, and prints what happened as one JSON line.
//
//	node resume.mjs http://127.0.0.1:9080/sse <seconds> <call timeout ms> [<Authorization>]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { echoLoop } from "./echo-loop.mjs";

const [url, seconds, timeout, authorization] = process.argv.slice(2);
const headers = authorization ? { Authorization: authorization } : {};
const client = new Client({ name: "ts-resume-test", version: "1.0.0" });
const out = { calls: 0, failed: 0, errors: [], losses: 0 };
// The transport reports each lost stream here (as well as failed POSTs),
// then reconnects by itself.
client.onerror = (err) => {
  if (err.constructor.name === "SseError") out.losses++;
};
await client.connect(new SSEClientTransport(new URL(url), { requestInit: { headers } }));

const deadline = Date.now() + Number(seconds) * 1000;
await echoLoop(client, out, timeout, () => Date.now() < deadline);
await client.close();
console.log(JSON.stringify(out));
