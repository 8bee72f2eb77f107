/**
 * The fleet driver's V8 heap release (controller/fleet/heap_release.ts):
 * after a burst of garbage, once the calls pause, the grown heap goes back;
 * never while calls go on, and not twice for the same growth.
 */
import assert from "node:assert/strict";
import { HeapReleaser } from "../../controller/fleet/heap_release.ts";
import { createLogger } from "../../core/log.ts";

const MiB = 1024 * 1024;

Deno.test("fleet heap release: a grown V8 heap goes back once the calls pause, not during them", () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger("fleet", { sink: (l) => lines.push(JSON.parse(l)) });
  const releaser = HeapReleaser.start(log);
  assert.ok(releaser, "V8's gc is reachable in Deno 2.9.6 (else the release logs and stays off)");
  try {
    // A burst's garbage: objects that lived long enough to grow the old space.
    let burst: { i: number; s: string }[][] = [];
    for (let r = 0; r < 30; r++) {
      burst.push(Array.from({ length: 100_000 }, (_, i) => ({ i, s: `answer ${r}/${i}` })));
    }
    const grown = Deno.memoryUsage().heapTotal;
    burst = [];
    releaser.busy();
    assert.equal(releaser.check(), false, "calls still going: no pause for them");
    assert.equal(releaser.releases, 0);
    assert.equal(releaser.check(Date.now() + 60_000), true, "quiet after the burst: released");
    assert.equal(releaser.releases, 1);
    const after = Deno.memoryUsage().heapTotal;
    assert.ok(after < grown - 32 * MiB, `V8 heap ${grown} → ${after} bytes`);
    assert.equal(releaser.check(Date.now() + 60_000), false, "nothing grew since: no second pause");
    assert.equal(burst.length, 0);
    const line = lines.find((l) => l.code === "heap-release");
    assert.ok(line && Number(line.heap_mib_after) < Number(line.heap_mib_before), "logged");
  } finally {
    releaser.stop();
  }
});

Deno.test("fleet heap release: the gc extension stays off for the program's own contexts", async () => {
  const releaser = HeapReleaser.start(createLogger("fleet", { sink: () => {} }));
  try {
    assert.ok(releaser);
    const vm = await import("node:vm");
    assert.equal(vm.runInNewContext("typeof gc"), "undefined", "flag switched off again");
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, "undefined");
  } finally {
    releaser?.stop();
  }
});
