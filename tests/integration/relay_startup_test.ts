/**
 * `deno task relay run` start-up: a signal that arrives while it starts
 * still ends in a clean stop, and material that cannot work (a key that is
 * not the certificate's) stops it with one line, never a stack trace.
 */
import assert from "node:assert/strict";
import { writeRelayDir } from "../support/abuse.ts";
import { makeFleet } from "../support/pki_fixture.ts";
import { run } from "../support/run.ts";
import { WAIT_MS, within } from "../support/wait.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const RELAY = ["task", "--quiet", "relay"];

Deno.test({
  name: 'relay start-up: SIGTERM while it is starting ends in a clean stop (exit 0, "stopped")',
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const fleet = await makeFleet();
    const dir = await Deno.makeTempDir({ prefix: "pharos-relay-start-" });
    try {
      await writeRelayDir(fleet, dir);
      // Start-up reads its config file from a FIFO: it blocks there, mid-start,
      // until the test writes the file — a point the test can hold it at.
      const fifo = `${dir}/relay.json`;
      assert.equal((await run("mkfifo", [fifo], { timeoutMs: WAIT_MS })).code, 0);
      const child = new Deno.Command(Deno.execPath(), {
        args: [...RELAY, "run", "--config", fifo],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const output = child.output();
      // Opening the FIFO for writing returns once the relay has opened it for
      // reading (bounded: a relay that dies or hangs first fails the test).
      const opening = Deno.open(fifo, { write: true });
      const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
      let writer: Deno.FsFile;
      try {
        writer = await Promise.race([
          opening,
          child.status.then((s) => {
            throw new Error(`the relay exited (${s.code}) before reading its config`);
          }),
        ]);
      } catch (e) {
        (await Deno.open(fifo, { read: true })).close(); // releases the pending open
        (await opening).close();
        throw e;
      } finally {
        clearTimeout(guard);
      }
      child.kill("SIGTERM");
      await writer.write(
        new TextEncoder().encode(JSON.stringify({
          dir,
          clientAddr: "127.0.0.1:0",
          tunnelAddr: "127.0.0.1:0",
          egressAddr: "off",
        })),
      );
      writer.close();
      const out = await within(
        output,
        WAIT_MS * 2,
        "the relay to stop after SIGTERM",
        () => child.kill("SIGKILL"),
      );
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const logs = stderr.trimEnd().split("\n").map((l) => JSON.parse(l));
      assert.equal(logs.at(-1).msg, "stopped", stderr);
      assert.ok(!stderr.includes("Uncaught"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("relay start-up: a key that is not the certificate's, or not a key at all, is one line and exit 1", async () => {
  const fleet = await makeFleet();
  const dir = await Deno.makeTempDir({ prefix: "pharos-relay-start-" });
  try {
    await writeRelayDir(fleet, dir);
    const args = [...RELAY, "run", "--dir", dir, "--client-addr", "127.0.0.1:0"];
    const other = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
    await Deno.writeTextFile(`${dir}/relay.key`, other.keyPem);
    const mismatch = await run(Deno.execPath(), args, { cwd: ROOT, timeoutMs: WAIT_MS * 2 });
    assert.equal(mismatch.code, 1);
    assert.match(mismatch.stderr, /^error: .*relay\.key does not belong to .*relay\.crt/m);
    await Deno.writeTextFile(`${dir}/relay.key`, "garbage\n");
    const garbage = await run(Deno.execPath(), args, { cwd: ROOT, timeoutMs: WAIT_MS * 2 });
    assert.equal(garbage.code, 1);
    assert.match(garbage.stderr, /^error: .*relay\.key is not a usable private key/m);
    for (const r of [mismatch, garbage]) {
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      assert.ok(!r.stderr.includes("Uncaught") && !r.stderr.includes("    at "), r.stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
