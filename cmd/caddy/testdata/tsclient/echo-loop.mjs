// The call loop of resume.mjs and cluster.mjs: calls the echo tool over and
// over, for as long as goOn() says, each call with its own timeout, and
// counts into out what came back wrong (out.calls, out.failed, and the
// first five errors in out.errors).
export async function echoLoop(client, out, timeout, goOn) {
  while (goOn()) {
    const text = `call ${out.calls++}`;
    try {
      const result = await client.callTool({ name: "echo", arguments: { text } }, undefined, { timeout: Number(timeout) });
      if (result.content[0].text !== text) throw new Error(`got ${result.content[0].text}`);
    } catch (err) {
      out.failed++;
      if (out.errors.length < 5) out.errors.push(`${text}: ${err.message}`);
    }
  }
}
