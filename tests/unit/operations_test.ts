// Long operations (controller/api/operations.ts): close() aborts every run
// and waits for it (bounded), fails what waits in the queue and what starts
// later; a request while one of the same kind runs queues one follow-up,
// and further requests join that follow-up.
import assert from "node:assert/strict";
import {
  type Operation,
  type OperationEvent,
  Operations,
} from "../../controller/api/operations.ts";
import { createLogger } from "../../core/log.ts";
import { until } from "../support/wait.ts";

const quiet = () => new Operations(() => {}, createLogger("ops-test", { sink: () => {} }));

/** A run that waits until released or aborted, noting what happened to it. */
function gated() {
  let release = () => {};
  const released = new Promise<void>((r) => release = r);
  const seen = { began: false, ended: false, aborted: false };
  const run = async (_emit: (e: OperationEvent) => void, _id: string, signal: AbortSignal) => {
    seen.began = true;
    try {
      await new Promise<void>((resolve, reject) => {
        released.then(resolve);
        signal.addEventListener("abort", () => {
          seen.aborted = true;
          reject(signal.reason);
        }, { once: true });
      });
    } finally {
      // The work a run does on its way out (closing a file) is over before close() returns.
      await new Promise((r) => setTimeout(r, 20));
      seen.ended = true;
    }
  };
  return { run, release, seen };
}

Deno.test("operations: close aborts running runs and waits for them to end", async () => {
  const ops = quiet();
  const a = gated();
  const op = ops.start("geoip.download", a.run);
  assert.equal(op.status, "running");
  assert.ok(a.seen.began, "a run begins at once");
  await ops.close();
  assert.ok(a.seen.aborted, "the run saw its signal aborted");
  assert.ok(a.seen.ended, "close() returned after the run ended");
  assert.equal(op.status, "failed");
  assert.match(op.error ?? "", /controller shut down/);
  // Started after the stop: fails at once, never runs.
  const late = gated();
  const after = ops.start("geoip.download", late.run);
  assert.equal(after.status, "failed");
  assert.equal(late.seen.began, false);
});

Deno.test("operations: close is bounded when a run ignores its signal", async () => {
  const logs: string[] = [];
  const ops = new Operations(() => {}, createLogger("ops-test", { sink: (l) => logs.push(l) }));
  let release = () => {};
  const stuck = new Promise<void>((r) => release = r);
  const op = ops.start("profiles.reseal", () => stuck);
  await ops.close(50);
  assert.equal(op.status, "running", "close() gave up waiting");
  assert.ok(logs.some((l) => JSON.parse(l).code === "operation-stop-timeout"), logs.join("\n"));
  release();
  await until(() => op.status === "done", 5000, "the stuck run to end");
});

Deno.test("operations: one queued follow-up per kind; more requests join it", async () => {
  const ops = quiet();
  const first = gated();
  const second = gated();
  const third = gated();
  const a = ops.startOrQueue("profiles.reseal", first.run);
  const b = ops.startOrQueue("profiles.reseal", second.run);
  const c = ops.startOrQueue("profiles.reseal", third.run);
  assert.notEqual(b.id, a.id, "a request while one runs gets a follow-up");
  assert.equal(c.id, b.id, "a further request joins the queued follow-up");
  assert.equal(ops.running("profiles.reseal"), a, "running() names the one in progress");
  assert.equal(b.status, "running", "a queued follow-up is not over");
  assert.deepEqual(b.events, []);
  assert.equal(second.seen.began, false, "the follow-up waits for the running one");
  // Another kind is not held up.
  const other: Operation = ops.startOrQueue("profiles.reseal:u1", async () => {});
  await until(() => other.status === "done", 5000, "another kind's run");

  first.release();
  await until(() => second.seen.began, 5000, "the follow-up to begin");
  assert.equal(a.status, "done");
  assert.equal(third.seen.began, false, "the joined request did not run twice");
  assert.equal(ops.running("profiles.reseal"), b);
  // Now b runs: a new request queues again.
  const d = ops.startOrQueue("profiles.reseal", third.run);
  assert.notEqual(d.id, b.id);
  second.release();
  await until(() => third.seen.began, 5000, "the next follow-up to begin");
  third.release();
  await until(() => d.status === "done", 5000, "the last follow-up to end");
  assert.equal(b.status, "done");
  await ops.close();
});

Deno.test("operations: close fails a queued follow-up without running it", async () => {
  const ops = quiet();
  const first = gated();
  const second = gated();
  const a = ops.startOrQueue("profiles.reseal", first.run);
  const b = ops.startOrQueue("profiles.reseal", second.run);
  await ops.close();
  assert.equal(a.status, "failed");
  assert.equal(b.status, "failed");
  assert.match(b.error ?? "", /controller shut down/);
  assert.equal(second.seen.began, false);
});
