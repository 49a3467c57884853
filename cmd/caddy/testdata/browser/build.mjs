// Bundles client.js and the TypeScript SDK into one browser script, and
// writes it with index.html into the directory given, which the Go tests
// then serve as the page:
//
//	node build.mjs <outdir>
import { build } from "esbuild";
import { copyFile } from "node:fs/promises";
import { join } from "node:path";

const out = process.argv[2];
if (!out) {
  console.error("usage: node build.mjs <outdir>");
  process.exit(2);
}
await build({
  entryPoints: ["client.js"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "chrome120",
  outfile: join(out, "mcp-browser.js"),
  logLevel: "warning",
});
await copyFile("index.html", join(out, "index.html"));
