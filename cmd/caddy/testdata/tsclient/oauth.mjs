// Drives an OAuth-protected MCP server, through the gateway or directly,
// with the official TypeScript SDK's SSEClientTransport and an
// OAuthClientProvider, as an app would: the first connect gets 401 and
// runs discovery, registration and the authorization code flow (the test's
// authorization server approves at once; the provider follows its redirect
// instead of opening a browser), then tools are called. It prints
// {"step":"expire"} and waits for a line on stdin: the test has expired
// every access token, so the next call gets 401, and the transport
// refreshes its token and sends the call again. Then a call that needs a
// larger scope gets 403 insufficient_scope; the transport does not step up
// by itself, so the app authorizes again with the scope the challenge
// names and calls again. Last it prints what it saw as one JSON line.
//
//	node oauth.mjs http://127.0.0.1:9080/sse
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { auth, UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const url = new URL(process.argv[2]);
const out = { authorizations: 0, statuses: [], sessions: [] };

// The provider keeps everything in memory. Its redirect URI is never
// served: the authorization server's redirect is read, not followed.
let pendingCode;
const store = {};
const provider = {
  get redirectUrl() {
    return "http://127.0.0.1:1/callback";
  },
  get clientMetadata() {
    return {
      client_name: "mcp-sse oauth test",
      redirect_uris: ["http://127.0.0.1:1/callback"],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      scope: "mcp",
    };
  },
  clientInformation: () => store.client,
  saveClientInformation: (c) => (store.client = c),
  tokens: () => store.tokens,
  saveTokens: (t) => (store.tokens = t),
  saveCodeVerifier: (v) => (store.verifier = v),
  codeVerifier: () => store.verifier,
  async redirectToAuthorization(authorizationUrl) {
    out.authorizations++;
    const r = await fetch(authorizationUrl, { redirect: "manual" });
    pendingCode = new URL(r.headers.get("location")).searchParams.get("code");
  },
};

// Every answer's status and challenge, and every session endpoint, as the
// client's fetch sees them.
let challenge;
const observe = async (input, init) => {
  const r = await fetch(input, init);
  const u = new URL(input.url ?? String(input));
  out.statuses.push(`${init?.method ?? "GET"} ${u.pathname} ${r.status}`);
  if (r.status === 401 || r.status === 403) challenge = r.headers.get("www-authenticate");
  const sid = u.searchParams.get("sessionId") ?? u.searchParams.get("sessionid");
  if (sid && !out.sessions.includes(sid)) out.sessions.push(sid);
  return r;
};
const newTransport = () => new SSEClientTransport(url, { authProvider: provider, fetch: observe, eventSourceInit: { fetch: observe } });

const newClient = () => new Client({ name: "oauth-test", version: "1.0.0" });
const text = (result) => result.content.map((c) => c.text).join("");
let client = newClient();
try {
  await client.connect(newTransport());
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  out.firstChallenge = challenge;
  const t = newTransport();
  await t.finishAuth(pendingCode);
  client = newClient();
  await client.connect(t);
}
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
out.before = text(await client.callTool({ name: "echo", arguments: { text: "before" } }));

console.log(JSON.stringify({ step: "expire" }));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
await lines.next();
out.afterExpiry = text(await client.callTool({ name: "echo", arguments: { text: "after expiry" } }));

try {
  out.admin = text(await client.callTool({ name: "admin_echo", arguments: { text: "x" } }));
} catch (e) {
  out.stepUpChallenge = challenge;
  const scope = /scope="([^"]*)"/.exec(challenge)?.[1];
  const resourceMetadataUrl = new URL(/resource_metadata="([^"]*)"/.exec(challenge)[1]);
  // A refresh keeps the token's scope: a larger one takes a new grant.
  store.tokens = undefined;
  const result = await auth(provider, { serverUrl: url, scope, resourceMetadataUrl });
  if (result === "REDIRECT") await auth(provider, { serverUrl: url, scope, resourceMetadataUrl, authorizationCode: pendingCode });
  out.admin = text(await client.callTool({ name: "admin_echo", arguments: { text: "x" } }));
}
await client.close();
console.log(JSON.stringify(out));
process.exit(0);
