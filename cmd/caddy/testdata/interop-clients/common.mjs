// What the three drivers share: reading their arguments and script, the
// fixed answers to server requests, normalizing results, and printing the
// JSON array that testdata/interop/README.md describes.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// args reads `node <driver>.mjs <url> <transport> <script.json>`.
export function args() {
  const [url, transport, scriptPath] = process.argv.slice(2);
  if (!url || !["sse", "streamable"].includes(transport) || !scriptPath) {
    console.error("usage: node <driver>.mjs <url> sse|streamable <script.json>");
    process.exit(2);
  }
  return { url, transport, script: JSON.parse(readFileSync(scriptPath, "utf8")) };
}

// label is how an op is named in the output: `callTool echo`.
export function label(op) {
  const what = op.name ?? op.uri;
  return what === undefined ? op.op : `${op.op} ${what}`;
}

// scratchHome is a temporary directory for a client's state (Inspector
// keeps ~/.mcp-inspector, mcp-remote ~/.mcp-auth), removed at exit, so a
// run neither reads nor leaves anything in the real home.
export function scratchHome(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// The fixed answers of the README's "Client capabilities".
export const answers = {
  sampling(params) {
    const first = params.messages?.[0]?.content;
    const text = Array.isArray(first) ? first.find((c) => c.type === "text")?.text : first?.text;
    return { role: "assistant", model: "interop", content: { type: "text", text: `sampled: ${text}` } };
  },
  elicitation(params) {
    const content = {};
    for (const [key, prop] of Object.entries(params.requestedSchema?.properties ?? {})) {
      content[key] = elicitValue(prop);
    }
    return { action: "accept", content };
  },
  roots() {
    return { roots: [{ uri: "file:///interop", name: "interop" }] };
  },
};

function elicitValue(prop) {
  if (prop.default !== undefined) return prop.default;
  // An enum is a string type too, so it is looked at first; titled enums
  // (oneOf/anyOf of consts) are enums as well.
  const first = firstEnum(prop);
  if (first !== undefined) return first;
  if (prop.type === "array") {
    const item = firstEnum(prop.items ?? {});
    return item === undefined ? [] : [item];
  }
  if (prop.type === "number" || prop.type === "integer") return 42;
  if (prop.type === "boolean") return true;
  return "interop";
}

function firstEnum(schema) {
  if (Array.isArray(schema.enum)) return schema.enum[0];
  const alternatives = schema.oneOf ?? schema.anyOf;
  if (Array.isArray(alternatives) && alternatives[0]?.const !== undefined) return alternatives[0].const;
  return undefined;
}

// The README's normalized results.
export const normalize = {
  names: (items) => items.map((i) => i.name).sort(),
  uris: (items) => items.map((i) => i.uri).sort(),
  content(item) {
    if (item.type === "text") return { type: "text", text: item.text };
    // Other kinds carry data (image, audio), a resource or a link: the
    // type and the length of what they carry.
    const data = item.data ?? item.resource?.text ?? item.resource?.blob ?? item.uri ?? "";
    return { type: item.type, length: data.length };
  },
  callTool(result, progress) {
    const out = { content: (result.content ?? []).map(normalize.content), isError: result.isError === true };
    if (progress !== undefined) out.progress = progress;
    return out;
  },
  readResource(result) {
    return result.contents.map((c) => {
      const out = { uri: c.uri, mimeType: c.mimeType };
      if (c.text !== undefined) out.text = c.text;
      else out.blob = c.blob?.length ?? 0;
      return out;
    });
  },
  getPrompt(result) {
    return result.messages.map((m) => ({
      role: m.role,
      text: m.content?.type === "text" ? m.content.text : undefined,
    }));
  },
  complete: (result) => result.completion.values,
};

// resourceUpdates does subscribe ops: arrived takes the URI of each
// notifications/resources/updated, and subscribe(uri, request) sends the
// subscription with request() and resolves to true once an update for
// uri arrives, within 10 s of the start.
export function resourceUpdates() {
  const waiting = new Map();
  return {
    arrived: (uri) => waiting.get(uri)?.(),
    async subscribe(uri, request) {
      // Waiting starts before the request: the update may come first.
      const arrived = new Promise((resolve) => waiting.set(uri, () => resolve(true)));
      try {
        return await withTimeout(
          request().then(() => arrived),
          10_000,
          `no notifications/resources/updated for ${uri} in 10 s`,
        );
      } finally {
        waiting.delete(uri);
      }
    },
  };
}

// run runs each op of the script with the client's implementation of it,
// `impl[op.op](op)`, and returns the results. An implementation returns
// the normalized result, throws on failure, or returns skip(reason) when
// the client cannot do that kind of op at all; an op with no
// implementation is skipped with the reason impl.unsupported(op) gives.
export async function run(script, impl) {
  const results = [];
  for (const op of script) {
    const out = { op: label(op) };
    const fn = impl[op.op];
    if (!fn) {
      out.ok = false;
      out.skipped = impl.unsupported?.(op) ?? `the driver has no ${op.op} op`;
      results.push(out);
      continue;
    }
    try {
      const result = await withTimeout(fn(op), opTimeout, `no answer in ${opTimeout / 1000} s`);
      if (result instanceof Skip) {
        out.ok = false;
        out.skipped = result.reason;
      } else {
        out.ok = true;
        out.result = result;
      }
    } catch (err) {
      out.ok = false;
      out.error = errorText(err);
    }
    results.push(out);
  }
  return results;
}

// opTimeout bounds one op, so that an op that never gets an answer
// leaves the rest of the script time to run within the suite's minute.
const opTimeout = 20_000;

function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

class Skip {
  constructor(reason) {
    this.reason = reason;
  }
}

export const skip = (reason) => new Skip(reason);

export function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}

// print writes the results and ends the process, which the clients'
// open handles (mcp-remote's child, SSE streams) would otherwise keep up.
export function print(results) {
  process.stdout.write(JSON.stringify(results) + "\n", () => process.exit(0));
}
