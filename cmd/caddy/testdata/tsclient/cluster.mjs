// Calls a tool over and over with the official TypeScript SDK's
// SSEClientTransport, through stream losses, without ever connecting (and
// so initializing) again, until its stdin ends. It tells which gateway
// instance served what, by the X-Gateway-Instance header of the answers:
// one JSON line {"stream":"<instance>","status":<status>} as each stream
// opens, then what happened as one JSON line, with the POSTs by instance.
//
//	node cluster.mjs http://127.0.0.1:8080/sse <call timeout ms> <Authorization>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { echoLoop } from "./echo-loop.mjs";

const [url, timeout, authorization] = process.argv.slice(2);
const out = { calls: 0, failed: 0, errors: [], losses: 0, posts: {} };

// The transport sends its stream's GETs and its POSTs through this.
const instanceOf = (response) => response.headers.get("x-gateway-instance") ?? "";
const tally = async (input, init) => {
  const response = await fetch(input, init);
  const instance = instanceOf(response);
  if ((init?.method ?? "GET").toUpperCase() === "POST") {
    out.posts[instance] = (out.posts[instance] ?? 0) + 1;
  } else {
    console.log(JSON.stringify({ stream: instance, status: response.status }));
  }
  return response;
};

let stopped = false;
process.stdin.on("end", () => (stopped = true));
process.stdin.resume();

const client = new Client({ name: "ts-cluster-test", version: "1.0.0" });
// The transport reports each lost stream here (as well as failed POSTs),
// then reconnects by itself.
client.onerror = (err) => {
  if (err.constructor.name === "SseError") out.losses++;
};
const headers = { Authorization: authorization };
await client.connect(new SSEClientTransport(new URL(url), { fetch: tally, requestInit: { headers } }));

await echoLoop(client, out, timeout, () => !stopped);
await client.close();
console.log(JSON.stringify(out));
