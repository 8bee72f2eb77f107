// deno-lint-ignore-file no-explicit-any
/**
 * The relay's memory after load: ten load cycles through a relay process
 * (`deno task relay run`, reverse tunnel to an Echo backend in this
 * process), each 8 devices × 150 unary calls plus one bidi call of 100
 * messages of 64 KiB, on the same 8 clients. After each cycle the
 * relay's resident memory must settle (readings 1 s apart within 1 MiB,
 * bounded) and, after the first three cycles (code compiled, allocator
 * pools sized), must not grow: every later settled RSS stays within
 * GROWTH_MARGIN of the highest of cycles 1–3. A leak of 5 MB a cycle
 * (≈ 4 KB per call) would pass the margin by cycle 9. No timing assertion.
 *
 * Why the settled figure is far above the idle one: after a collection the
 * JS heap is back to ~14 MB; what stays is mostly free memory glibc keeps in
 * its main heap (measured: malloc_trim(0) took a settled 170 MB down to
 * 102 MB; relay/host/heap_trim.ts acts on that), and the V8 young generation
 * (--max-semi-space-size, see the Relay-Go baseline benchmark).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { echoPkg } from "../support/echo_backend.ts";
import { capability, hasCommand } from "../support/capability.ts";
import { unary } from "../support/relay_harness.ts";
import { within } from "../support/wait.ts";
import { startRelayRig, vm } from "../bench/relay_go.ts";
import { describeExit } from "../support/runtime_crash.ts";

const cap = capability(
  "relay load cycles (process, prlimit)",
  hasCommand("prlimit", ["--version"]),
  "needs prlimit (util-linux) to run the relay process as operators do",
);

const CYCLES = 10;
const DEVICES = 8;
const CALLS_PER_DEVICE = 150;
const BIDI_MESSAGES = 100;
const MiB = 1024 * 1024;
const GROWTH_MARGIN = 32 * MiB;

/** RSS once two readings 1 s apart differ by less than 1 MiB (settled: false if not in 30 s). */
async function settle(pid: number): Promise<{ rss: number; settled: boolean }> {
  let last = vm(pid, "VmRSS");
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = vm(pid, "VmRSS");
    if (Math.abs(now - last) < MiB) return { rss: now, settled: true };
    last = now;
  }
  return { rss: last, settled: false };
}

function bidi(client: any): Promise<number> {
  const blob = Buffer.alloc(64 * 1024, 7);
  const call = client.Bidi();
  let got = 0;
  const done = new Promise<number>((resolve, reject) => {
    call.on("data", () => got++);
    call.on("error", reject);
    call.on("status", (s: grpc.StatusObject) => (s.code === 0 ? resolve(got) : reject(s)));
  });
  return (async () => {
    for (let i = 0; i < BIDI_MESSAGES; i++) {
      if (!call.write({ text: "m", blob })) await new Promise((r) => call.once("drain", r));
    }
    call.end();
    return await within(done, 60_000, "the bidi call's end");
  })();
}

Deno.test({
  name: "relay load cycles: resident memory settles after each cycle and does not grow",
  ignore: cap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const rig = await startRelayRig(DEVICES);
    try {
      const pid = rig.relay.pid;
      const ca = Buffer.from(rig.fleet.rootPem);
      const settled: number[] = [];
      // The same clients for every cycle, closed at the end: closing a batch of HTTP/2
      // clients at once made the relay die inside the runtime (SIGSEGV, denoland/deno#36788)
      // in about a third of runs beside two CPU burners, with this and the earlier relay code
      // alike; connection churn has its own tests (relay_memory_test, the abuse suites).
      const clients: any[] = [];
      for (let d = 0; d < DEVICES; d++) {
        const [cert, key] = await Promise.all([
          Deno.readTextFile(rig.devices.certFiles[d]),
          Deno.readTextFile(rig.devices.keyFiles[d]),
        ]);
        clients.push(
          new echoPkg.Echo(
            `localhost:${rig.relay.ports.client}`,
            grpc.credentials.createSsl(ca, Buffer.from(key), Buffer.from(cert)),
            { "grpc.enable_retries": 0, "grpc.use_local_subchannel_pool": 1 },
          ),
        );
      }
      try {
        for (let cycle = 0; cycle < CYCLES; cycle++) {
          const answered = await Promise.all(clients.map(async (c, d) => {
            let ok = 0;
            for (let i = 0; i < CALLS_PER_DEVICE; i++) {
              const { res } = await unary(c, "Unary", { text: `c${cycle}d${d}i${i}` });
              if (res.text === `c${cycle}d${d}i${i}`) ok++;
            }
            return ok;
          }));
          assert.deepEqual(answered, Array(DEVICES).fill(CALLS_PER_DEVICE));
          assert.equal(await bidi(clients[0]), BIDI_MESSAGES);
          const died = async () => {
            // Its exit and its last words (the output is read behind the process).
            await within(rig.relay.proc.done, 10_000, "the relay's exit").catch(() => {});
            return `cycle ${cycle}: the relay died (${
              describeExit(rig.relay.proc.exit, rig.relay.proc.tail())
            }):\n${rig.relay.proc.tail(40)}`;
          };
          if (!rig.relay.proc.alive) assert.fail(await died());
          // The task runner may outlive the relay a moment: its own pid is what counts.
          const s = await settle(pid).catch(async (e) => {
            throw new Error(`${(e as Error).message}\n${await died()}`);
          });
          assert.ok(s.settled, `cycle ${cycle}: the relay's RSS did not settle within 30 s`);
          settled.push(s.rss);
        }
      } finally {
        for (const c of clients) c.close();
      }
      const mb = (b: number) => (b / MiB).toFixed(1);
      console.log(`relay settled RSS per cycle (MiB): ${settled.map(mb).join(", ")}`);
      const reference = Math.max(...settled.slice(1, 4));
      for (let cycle = 4; cycle < CYCLES; cycle++) {
        assert.ok(
          settled[cycle] <= reference + GROWTH_MARGIN,
          `cycle ${cycle}: settled RSS ${mb(settled[cycle])} MiB is more than ${
            mb(GROWTH_MARGIN)
          } MiB above cycles 1–3 (${mb(reference)} MiB); all: ${settled.map(mb).join(", ")}`,
        );
      }
    } finally {
      await rig.close();
    }
  },
});
