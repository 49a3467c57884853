// How the interop suite's drivers built on the official TypeScript SDK's
// Client (ts-sdk.mjs here, and the page in ../browser) run a script: its
// operations and their normalized results, the fixed answers to the
// server's requests, and the counting of progress and resource updates,
// as README.md beside it defines them. No imports: the page bundles it.

// How long a subscribe operation waits for notifications/resources/updated.
const updateWait = 10000;

/** label is an operation's name in the output: op, and its name or uri if any. */
export function label(op) {
  const what = op.name ?? op.uri;
  return what === undefined ? op.op : `${op.op} ${what}`;
}

/**
 * runOp does one operation with client and resolves to its normalized
 * result; it throws when the operation failed. opts has the request
 * timeout, the UpdateWaiters of the client and its progress counter.
 */
export async function runOp(client, op, { timeout, updates, progress }) {
  const options = { timeout };
  switch (op.op) {
    case "listTools":
      return names((await client.listTools({}, options)).tools);
    case "callTool":
      return callTool(client, op, options, progress);
    case "listResources":
      return (await client.listResources({}, options)).resources.map((r) => r.uri).sort();
    case "readResource": {
      const res = await client.readResource({ uri: op.uri }, options);
      return res.contents.map(resourceContents);
    }
    case "subscribe": {
      updates.reset(op.uri);
      await client.subscribeResource({ uri: op.uri }, options);
      if (!(await updates.wait(op.uri, updateWait))) {
        throw new Error(`no notifications/resources/updated for ${op.uri} within ${updateWait / 1000} s`);
      }
      return true;
    }
    case "listPrompts":
      return names((await client.listPrompts({}, options)).prompts);
    case "getPrompt": {
      const res = await client.getPrompt({ name: op.name, arguments: op.arguments ?? {} }, options);
      return res.messages.map((m) => ({ role: m.role, text: m.content?.type === "text" ? m.content.text : undefined }));
    }
    case "setLevel":
      await client.setLoggingLevel(op.level, options);
      return {};
    case "complete":
      return (await client.complete({ ref: op.ref, argument: op.argument }, options)).completion.values;
    case "ping":
      await client.ping(options);
      return {};
    default:
      throw new Error(`unknown operation ${op.op}`);
  }
}

/**
 * callTool calls a tool and, if asked to, asks for progress (an onprogress
 * handler makes the SDK send a progress token) and counts the progress
 * notifications that arrived during the call. Operations run one at a
 * time, so those are the call's.
 */
async function callTool(client, op, options, progress) {
  const before = progress.count;
  const callOptions = op.progress ? { ...options, onprogress: () => {} } : options;
  const res = await client.callTool({ name: op.name, arguments: op.arguments ?? {} }, undefined, callOptions);
  const out = { content: (res.content ?? []).map(contentItem), isError: res.isError === true };
  if (op.progress) out.progress = progress.count - before;
  return out;
}

/** contentItem is a content item's type and text, or its type and the length of its data. */
function contentItem(item) {
  if (item.type === "text") return { type: "text", text: item.text };
  const data = item.data ?? item.resource?.text ?? item.resource?.blob ?? item.uri ?? "";
  return { type: item.type, length: data.length };
}

/** resourceContents is one content of a resource: its uri, mimeType, and text or the length of its blob. */
function resourceContents(c) {
  const out = { uri: c.uri, mimeType: c.mimeType };
  if (c.text !== undefined) out.text = c.text;
  else out.blob = (c.blob ?? "").length;
  return out;
}

/** names is the sorted names of a list of tools or prompts. */
function names(list) {
  return list.map((x) => x.name).sort();
}

/** The roots the client lists. */
export const roots = [{ uri: "file:///interop", name: "interop" }];

/** Answers sampling/createMessage: "sampled: " and the first message's text. */
export function answerSampling(params) {
  const first = params.messages?.[0]?.content;
  const text = Array.isArray(first) ? first.find((c) => c.type === "text")?.text : first?.text;
  return {
    role: "assistant",
    model: "interop",
    content: { type: "text", text: `sampled: ${text ?? ""}` },
  };
}

/** Answers elicitation/create: accepts, with every property of the schema filled in. */
export function answerElicitation(params) {
  const content = {};
  for (const [name, schema] of Object.entries(params.requestedSchema?.properties ?? {})) {
    content[name] = fill(schema);
  }
  return { action: "accept", content };
}

/** fill is the value for one property: its default, else one of its type. */
function fill(schema) {
  if (schema.default !== undefined) return schema.default;
  const first = firstChoice(schema);
  if (first !== undefined) return first;
  switch (schema.type) {
    case "number":
    case "integer":
      return 42;
    case "boolean":
      return true;
    case "array": {
      const item = firstChoice(schema.items ?? {});
      return item === undefined ? [] : [item];
    }
    default:
      return "interop";
  }
}

/** firstChoice is the first value of an enum (plain, or titled with oneOf/anyOf and const). */
function firstChoice(schema) {
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  const titled = schema.oneOf ?? schema.anyOf;
  if (Array.isArray(titled) && titled.length > 0 && titled[0].const !== undefined) return titled[0].const;
  return undefined;
}

/**
 * countProgress counts the progress notifications that reach the client
 * over transport t, as they arrive. The SDK's own onprogress misses one
 * that arrives in the same read as its request's response (it handles
 * notifications a microtask after responses, and forgets the request's
 * progress handler with the response), so its count would depend on how
 * the bytes happened to be split.
 */
export function countProgress(t) {
  const counter = { count: 0 };
  const deliver = t.onmessage;
  t.onmessage = (message, extra) => {
    if (message.method === "notifications/progress") counter.count++;
    deliver?.(message, extra);
  };
  return counter;
}

/**
 * UpdateWaiters tells a subscribe operation when
 * notifications/resources/updated arrived for its URI, also when it arrived
 * before the operation began to wait.
 */
export class UpdateWaiters {
  constructor() {
    this.seen = new Set();
    this.waiting = new Map();
  }
  arrived(uri) {
    this.seen.add(uri);
    for (const resolve of this.waiting.get(uri) ?? []) resolve(true);
    this.waiting.delete(uri);
  }
  /** Resolves to true once uri was updated, false after ms without. */
  wait(uri, ms) {
    if (this.seen.has(uri)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      const list = this.waiting.get(uri) ?? [];
      list.push((v) => {
        clearTimeout(timer);
        resolve(v);
      });
      this.waiting.set(uri, list);
    });
  }
  /** Forgets what arrived for uri, before it is subscribed to. */
  reset(uri) {
    this.seen.delete(uri);
  }
}
