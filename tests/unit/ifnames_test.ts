/**
 * Test interface names: a control socket that answers holds its name; one
 * that a killed daemon left behind does not, and is cleared away so that
 * such files never use up the 999 names.
 */
import assert from "node:assert/strict";
import { socketInUse } from "../support/ifnames.ts";

Deno.test("ifnames: a live control socket holds its name; a stale one is removed and frees it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pharos-ifnames-" });
  try {
    assert.equal(await socketInUse("awg7", [dir]), false, "no socket file");
    // A daemon that answers, then dies of SIGKILL: its socket file stays, nobody listens.
    const path = `${dir}/awg7.sock`;
    const daemon = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        // Serves until killed: accepts and closes each connection.
        `const l = Deno.listen({ transport: "unix", path: ${
          JSON.stringify(path)
        } }); console.log("up"); for await (const c of l) c.close();`,
      ],
      stdout: "piped",
    }).spawn();
    const reader = daemon.stdout.getReader();
    await reader.read(); // "up"
    assert.equal(await socketInUse("awg7", [dir]), true, "a daemon answers");
    daemon.kill("SIGKILL");
    await daemon.status;
    reader.releaseLock();
    await daemon.stdout.cancel();
    await Deno.stat(path);
    assert.equal(await socketInUse("awg7", [dir]), false, "nobody answers: free");
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
