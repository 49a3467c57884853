// Drives the gateway with the official TypeScript SDK's SSEClientTransport
// and prints what it saw as one JSON line, for ts_test.go to check.
//
//	node client.mjs http://127.0.0.1:9080/sse
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const url = new URL(process.argv[2]);
const client = new Client({ name: "ts-gateway-test", version: "1.0.0" }, { capabilities: { sampling: {} } });
client.setRequestHandler(CreateMessageRequestSchema, async (req) => ({
  model: "ts-test",
  role: "assistant",
  content: { type: "text", text: `ts answers: ${req.params.messages[0].content.text}` },
}));

const text = (result) => result.content.map((c) => c.text).join("");

await client.connect(new SSEClientTransport(url));
const out = { server: client.getServerVersion().name };
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
out.add = text(await client.callTool({ name: "add", arguments: { a: 20, b: 22 } }));
// The interval matters: the SDK handles notifications a microtask later
// than responses and forgets a request's progress handler with its
// response, so progress that arrives in the same read as the result is
// dropped by the client itself.
const progress = [];
out.countdown = text(
  await client.callTool({ name: "countdown", arguments: { steps: 3, interval_ms: 50 } }, undefined, {
    onprogress: (p) => progress.push(p.progress),
  }),
);
out.progress = progress;
out.sampled = text(await client.callTool({ name: "ask_model", arguments: { question: "ping?" } }));
const echoes = await Promise.all(
  Array.from({ length: 20 }, (_, i) => client.callTool({ name: "echo", arguments: { text: `e${i}` } })),
);
out.echoes = echoes.map(text);
await client.close();
console.log(JSON.stringify(out));
