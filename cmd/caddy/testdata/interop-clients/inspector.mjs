// Drives MCP Inspector's CLI as a person at a shell would: one
// `mcp-inspector --cli ... --method <method>` process per operation, each
// its own MCP session, reading the `--format json` result it prints.
//
//	node inspector.mjs http://127.0.0.1:9080/sse sse script.json
//
// The server is named in a config file (mcp.json), as a user who gives the
// Inspector roots does: the file's `roots` is what the CLI answers
// roots/list with. The CLI declares neither sampling nor elicitation and
// asks for no progress, and has no method for ping, completion or
// resource subscriptions (its --cli mode refuses them), so those are
// skipped; a callTool that asks for progress is run without it and its
// result has no `progress` count.
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { answers, args, errorText, normalize, print, run, scratchHome, skip } from "./common.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, "node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
const { url, transport, script } = args();
const node = inspectorNode();

// The Inspector keeps its catalog, storage and secrets under
// ~/.mcp-inspector; a scratch HOME keeps a run from reading or leaving any.
const home = scratchHome("interop-inspector-");
const config = join(home, "mcp.json");
writeFileSync(
  config,
  JSON.stringify({
    mcpServers: {
      interop: {
        type: transport === "sse" ? "sse" : "streamable-http",
        url,
        roots: answers.roots().roots,
      },
    },
  }),
);

// The exit codes of the CLI that say it never reached the server.
const UNREACHABLE = 4;
const AUTH_REQUIRED = 3;
let connected = false;

// inspect runs one CLI process and returns its result; it throws the
// error the CLI reported. isError tool results come with exit code 5 and
// are results all the same.
async function inspect(method, ...rest) {
  const argv = [cli, "--cli", "--config", config, "--server", "interop", "--format", "json", "--quiet"];
  // Never start an interactive OAuth login (a browser): fail instead.
  argv.push("--stored-auth-only", "--method", method, ...rest);
  const { code, stdout, stderr } = await exec(node, argv);
  // The first op that cannot reach the server means no op can: the
  // driver cannot run the script at all. Later, it is that op's failure.
  if (!connected && (code === UNREACHABLE || code === AUTH_REQUIRED)) {
    console.error(`inspector: cannot connect to ${url}: ${stderr}`);
    process.exit(1);
  }
  connected = true;
  const out = parseJSON(stdout);
  if (out?.result !== undefined) return out.result;
  const err = parseJSON(stderr.trim().split("\n").pop() ?? "");
  throw new Error(err?.error?.message ?? `exit code ${code}: ${stderr.trim()}`);
}

// pairs spells arguments as the `key=value` pairs of --tool-arg and
// --prompt-args that a user types. The CLI reads each value as JSON when
// it parses as JSON, else as a string, so strings that would parse (and
// empty ones) are quoted.
function pairs(args) {
  return Object.entries(args ?? {}).map(([k, v]) => {
    if (typeof v !== "string") return `${k}=${JSON.stringify(v)}`;
    return v === "" || parsesAsJSON(v) ? `${k}=${JSON.stringify(v)}` : `${k}=${v}`;
  });
}

const impl = {
  unsupported: (op) => `Inspector's CLI has no ${op.op} method`,
  ping: () => skip("Inspector's CLI has no ping method"),
  complete: () => skip("Inspector's CLI refuses prompts/complete in --cli mode"),
  subscribe: () => skip("Inspector's CLI refuses resources/subscribe in --cli mode"),
  listTools: async () => normalize.names((await inspect("tools/list")).tools),
  callTool: async (op) => {
    const given = pairs(op.arguments);
    const result = await inspect("tools/call", "--tool-name", op.name, ...(given.length ? ["--tool-arg", ...given] : []));
    return normalize.callTool(result);
  },
  listResources: async () => normalize.uris((await inspect("resources/list")).resources),
  readResource: async (op) => normalize.readResource(await inspect("resources/read", "--uri", op.uri)),
  listPrompts: async () => normalize.names((await inspect("prompts/list")).prompts),
  getPrompt: async (op) => {
    const given = pairs(op.arguments);
    return normalize.getPrompt(
      await inspect("prompts/get", "--prompt-name", op.name, ...(given.length ? ["--prompt-args", ...given] : [])),
    );
  },
  setLevel: async (op) => inspect("logging/setLevel", "--log-level", op.level),
};

print(await run(script, impl));

// inspectorNode is a Node the Inspector runs on: it needs 22.19 or later,
// which the package ships (the optional dependency node-<os>-<arch>) where
// the machine's own node is older.
function inspectorNode() {
  const shipped = join(here, `node_modules/node-${process.platform}-${process.arch}/bin/node`);
  if (existsSync(shipped)) return shipped;
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major > 22 || (major === 22 && minor >= 19)) return process.execPath;
  console.error(`inspector: needs node >= 22.19, have ${process.version} and no ${shipped} (npm ci)`);
  process.exit(1);
}

function exec(cmd, argv) {
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, {
      // Secrets (there are none) in memory rather than a keychain or a
      // file; Node's compile cache spares each of the run's processes
      // compiling the CLI's bundle again (a quarter of its time).
      env: { ...process.env, HOME: home, MCP_INSPECTOR_SECRET_STORE: "memory", NODE_COMPILE_CACHE: join(home, "node-cache") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    // One op is a connection and a request or two: far below this, and
    // below the driver's bound on an op.
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: errorText(err) });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, stdout, stderr: signal ? `killed by ${signal} after 15 s\n${stderr}` : stderr });
    });
  });
}

function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parsesAsJSON(text) {
  return parseJSON(text) !== undefined;
}
