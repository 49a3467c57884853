// Drives LangChain's MCP adapters as an agent built on them would: a
// MultiServerMCPClient with one server over SSE (transport "sse") or
// Streamable HTTP ("http", without its fallback to SSE), the server's
// tools loaded with getTools() and called as an agent calls them, with a
// tool call, whose answer is a ToolMessage.
//
//	node langchain.mjs http://127.0.0.1:9080/sse sse script.json
//
// What the adapters offer of their own (tools, resources, the logging
// level) is used as they offer it; the rest (ping, prompts, completion,
// subscribing) goes through the SDK client the adapters hand out with
// getClient(), which is what their documentation says it is for.
//
// The adapters' client declares no capabilities: it answers no sampling,
// elicitation or roots, so a server offers it none of the tools that need
// them. What of callTool's result cannot be compared with the README's
// shape:
//   - a tool result with isError is an exception (ToolException) in
//     LangChain, so the op fails with its message;
//   - LangChain turns the content into message content (text, image_url,
//     file blocks) and puts embedded resources into the artifact, so the
//     content is rebuilt from both, embedded resources last;
//   - a lone text item that comes with structuredContent reaches the
//     ToolMessage as the JSON of a text block, which is its text here;
//   - the adapters send a progress token with every tool call once an
//     onProgress hook is set, not only where the script asks for progress.
// And MultiServerMCPClient.listResources answers [] where the server's
// answer is an error.
import { MultiServerMCPClient } from "@langchain/mcp-adapters";
import { ProgressNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { args, normalize, print, resourceUpdates, run } from "./common.mjs";

const { url, transport, script } = args();
const server = "interop";

const updates = resourceUpdates();
const mcp = new MultiServerMCPClient({
  mcpServers: {
    [server]: transport === "sse" ? { transport: "sse", url } : { transport: "http", url, automaticSSEFallback: false },
  },
  // Without a hook the adapters ask for no progress at all.
  onProgress: () => {},
  onResourcesUpdated: (params) => updates.arrived(params.uri),
});

let tools;
try {
  tools = await mcp.getTools();
} catch (err) {
  console.error(`langchain: cannot connect to ${url}: ${err}`);
  process.exit(1);
}
const client = await mcp.getClient(server);

// The progress count is what arrived on the wire while the call was in
// flight: the SDK client underneath drops a progress notification it
// reads together with the result (it runs notification handlers a
// microtask late but forgets the request's progress handler at once), so
// counting the onProgress hook's calls would count how the bytes happened
// to arrive.
let progress = 0;
const onmessage = client.transport.onmessage;
client.transport.onmessage = (message, extra) => {
  if (ProgressNotificationSchema.safeParse(message).success) progress++;
  onmessage(message, extra);
};

const impl = {
  listTools: async () => normalize.names(tools),
  callTool: async (op) => {
    const tool = tools.find((t) => t.name === op.name);
    if (!tool) throw new Error(`getTools() has no tool ${op.name}`);
    progress = 0;
    const message = await tool.invoke({ type: "tool_call", id: "interop", name: op.name, args: op.arguments ?? {} });
    const out = { content: toolMessageContent(message), isError: false };
    if (op.progress) out.progress = progress;
    return out;
  },
  listResources: async () => normalize.uris((await mcp.listResources(server))[server]),
  readResource: async (op) => normalize.readResource({ contents: await mcp.readResource(server, op.uri) }),
  setLevel: async (op) => {
    await mcp.setLoggingLevel(server, op.level);
    return {};
  },
  ping: async () => {
    await client.ping();
    return {};
  },
  listPrompts: async () => normalize.names((await client.listPrompts()).prompts),
  getPrompt: async (op) => normalize.getPrompt(await client.getPrompt({ name: op.name, arguments: op.arguments ?? {} })),
  complete: async (op) => normalize.complete(await client.complete({ ref: op.ref, argument: op.argument })),
  subscribe: (op) => updates.subscribe(op.uri, () => client.subscribeResource({ uri: op.uri })),
};

const results = await run(script, impl);
await mcp.close();
print(results);

// toolMessageContent maps a ToolMessage back to MCP content items as far
// as LangChain keeps them: its content (a string for one text item, else
// blocks) and then its artifact's embedded resources.
function toolMessageContent(message) {
  const blocks = typeof message.content === "string" ? [{ type: "text", text: message.content }] : message.content;
  const content = blocks.map((b) => {
    switch (b.type) {
      case "text":
        return { type: "text", text: b.text };
      case "image_url": {
        // data:<mime>;base64,<data>
        const dataURL = typeof b.image_url === "string" ? b.image_url : b.image_url.url;
        return { type: "image", length: dataURL.slice(dataURL.indexOf(",") + 1).length };
      }
      case "audio":
        return { type: "audio", length: b.data.length };
      case "file":
        // A resource_link becomes a file block with its URL.
        return b.source_type === "url" ? { type: "resource_link", length: b.url.length } : { type: "resource", length: (b.text ?? b.data).length };
      default:
        return { type: b.type };
    }
  });
  for (const a of message.artifact ?? []) {
    if (a.type === "resource") content.push(normalize.content({ type: "resource", resource: a.resource }));
  }
  return content;
}
