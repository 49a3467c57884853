// The command-line end of the Node client drivers (ts-sdk.mjs,
// ts-sdk-v2-client.mjs): connect, run every operation of the script,
// print the results as the Go tests read them.
import { countProgress, label } from "./script-ops.js";

/**
 * runDriver connects client over transport to url, runs each op of script
 * with runOp(op, opts), and prints a JSON array of {op, ok, result, error}
 * on stdout; it exits with 1 if it cannot connect.
 */
export async function runDriver(client, transport, url, script, runOp, { timeout, updates }) {
  try {
    await client.connect(transport, { timeout });
  } catch (err) {
    console.error(`connecting to ${url}: ${err?.stack ?? err}`);
    process.exit(1);
  }
  const progress = countProgress(transport);
  const results = [];
  for (const op of script) {
    const out = { op: label(op) };
    try {
      out.result = await runOp(op, { timeout, updates, progress });
      out.ok = true;
    } catch (err) {
      out.ok = false;
      out.error = err instanceof Error ? err.message : String(err);
    }
    results.push(out);
  }
  await client.close();
  process.stdout.write(JSON.stringify(results) + "\n", () => process.exit(0));
}
