// An MCP client that runs in a browser page: the official TypeScript SDK's
// Client with its SSEClientTransport (or StreamableHTTPClientTransport),
// bundled by build.mjs, as MCP Inspector's web UI uses them. The Go tests
// (interop_browser_test.go) drive it over CDP:
//
//	await mcpBrowser.run(url, transport, ops, headers)
//
// runs a script of the interop suite (testdata/interop/README.md), with
// headers (optional) on every request, as a page with a token has, and
// resolves to {connected: true, results: [...]} with one result per
// operation, or to {connected: false, error} when no session could be
// opened. mcpBrowser.native(url) opens a session by hand with the
// browser's own EventSource and fetch, as a page without the SDK would.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import {
  answerElicitation,
  answerSampling,
  countProgress,
  label,
  roots,
  runOp,
  UpdateWaiters,
} from "../interop/script-ops.js";

// How long one request may take before the client gives up on it.
const requestTimeout = 20000;

/**
 * Connects to url over transport ("sse" or "streamable"), with headers on
 * every request, and runs ops.
 */
async function run(url, transport, ops, headers) {
  const client = new Client(
    { name: "interop-browser", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: false } } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => answerSampling(req.params));
  client.setRequestHandler(ElicitRequestSchema, async (req) => answerElicitation(req.params));
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots }));
  const updates = new UpdateWaiters();
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updates.arrived(n.params.uri));

  const target = new URL(url);
  const opts = headers ? { requestInit: { headers } } : undefined;
  const t =
    transport === "streamable" ? new StreamableHTTPClientTransport(target, opts) : new SSEClientTransport(target, opts);
  try {
    await client.connect(t, { timeout: requestTimeout });
  } catch (err) {
    await client.close().catch(() => {});
    return { connected: false, error: errorText(err) };
  }
  const progress = countProgress(t);
  const results = [];
  for (const op of ops) {
    try {
      const result = await runOp(client, op, { timeout: requestTimeout, updates, progress });
      results.push({ op: label(op), ok: true, result });
    } catch (err) {
      results.push({ op: label(op), ok: false, error: errorText(err) });
    }
  }
  await client.close();
  return { connected: true, results };
}

/**
 * Opens a session with the browser's own EventSource, POSTs initialize to
 * the announced endpoint with fetch, and resolves to what came back:
 * {endpoint, server} (the server's name in the initialize result), or
 * {error} when either step failed.
 */
function native(url) {
  return new Promise((resolve) => {
    const es = new EventSource(url);
    const done = (v) => {
      es.close();
      clearTimeout(timer);
      resolve(v);
    };
    const timer = setTimeout(() => done({ error: "no answer within 15 s" }), 15000);
    es.onerror = () => done({ error: `EventSource error (readyState ${es.readyState})` });
    es.addEventListener("endpoint", async (ev) => {
      const endpoint = new URL(ev.data, url);
      es.onmessage = (m) => {
        const msg = JSON.parse(m.data);
        if (msg.id === 1) done({ endpoint: ev.data, server: msg.result?.serverInfo?.name ?? null, error: msg.error?.message });
      };
      try {
        const resp = await fetch(endpoint, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "initialize",
            params: { protocolVersion: "2024-11-05", capabilities: {}, clientInfo: { name: "native", version: "1.0.0" } },
          }),
        });
        if (!resp.ok) done({ error: `POST answered ${resp.status}` });
      } catch (err) {
        done({ error: `POST failed: ${errorText(err)}` });
      }
    });
  });
}

/** errorText is the message of err, whatever was thrown. */
function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}

window.mcpBrowser = { run, native };
document.title = "mcp-browser ready";
