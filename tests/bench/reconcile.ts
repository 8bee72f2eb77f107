/**
 * The reconcile loop at fleet scale: sweep time, CPU and the controller
 * side's memory for 100 and 1,000 nodes, each a real gRPC NodeControl
 * server with mTLS (simulated agents answering from memory, all in one
 * child process: tests/support/sim_nodes.ts) holding 10 peers and an open
 * WatchEvents stream. The controller side runs as `deno task controller`
 * runs it: the Reconciler over the real fleet driver, whose gRPC clients
 * (one channel and one WatchEvents stream per node) live in its worker
 * child process; the controller process and the worker are measured apart
 * and summed (RSS split into file pages and anonymous memory, PSS, peak,
 * V8 heap), the simulated nodes' process is not counted. Each scale (0, 100,
 * 500 and 1,000 nodes) runs in a fresh process (tests/support/reconcile_scale.ts);
 * growth is compared per added node between 100 → 500 and 500 → 1,000. Also: the loop
 * alone (in-memory nodes), and the earlier one-process layout (a direct
 * grpc-js caller inside the measured process) at 1,000 for comparison.
 * Per-node cost and its growth from 100 to 1,000; the first sweep (the
 * network policy sent to every node, as after a controller start); the time
 * from a change on a node (a peer removed behind the controller's back) to
 * healed with a 1 s interval, against that interval.
 */
import type { MemoryBreakdown, ScaleMode, ScaleResult } from "../support/reconcile_scale.ts";
import { INTERVAL_MS, PEERS_PER_NODE } from "../support/reconcile_scale.ts";
import { type BenchModule, type Figure, figure, percentile } from "./harness.ts";

const SCALE_MAIN = new URL("../support/reconcile_scale_main.ts", import.meta.url).pathname;

async function runScale(count: number, mode: ScaleMode): Promise<ScaleResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", SCALE_MAIN, String(count), mode],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 30 * 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
  if (!out.success) throw new Error(`reconcile bench at ${count} nodes failed (${out.code})`);
  return JSON.parse(line);
}

/** Controller side: the controller process plus its fleet worker. */
const sideRss = (r: ScaleResult) => r.rssAfterMb + r.workerRssMb;
const perNode = (r: ScaleResult) => r.steadyMs / r.nodes;
const cpuPerNode = (r: ScaleResult) => (r.cpuPerSweepS + r.workerCpuPerSweepS) * 1000 / r.nodes;
/** Between sweeps (4 s after the last, nothing forced): what the two processes hold. */
const rest = (r: ScaleResult, f: keyof MemoryBreakdown) =>
  r.controllerRest[f] + (r.workerRest?.[f] ?? 0);
/** KB per node added from `a` to `b`. */
const perAdded = (a: ScaleResult, b: ScaleResult, mbOf: (r: ScaleResult) => number) =>
  (mbOf(b) - mbOf(a)) * 1024 / (b.nodes - a.nodes);
const worker = (r: ScaleResult) => r.workerRest ?? r.workerAfter!;
/** Anonymous memory of the worker outside V8's heap (TLS, HTTP/2, buffers, allocator). */
const workerNative = (r: ScaleResult) => worker(r).anon - worker(r).heapTotal;

async function measure(): Promise<Figure[]> {
  const none = await runScale(0, "fleet");
  const small = await runScale(100, "fleet");
  const mid = await runScale(500, "fleet");
  const large = await runScale(1000, "fleet");
  const loop = await runScale(1000, "memory");
  const direct = await runScale(1000, "direct");
  console.error(JSON.stringify({ none, small, mid, large, loop, direct }));
  const lower = { lowerIsBetter: true };
  const linear = { lowerIsBetter: true, target: "linear (ratio ≈ 1)" };
  return [
    figure(
      "steady sweep, 1,000 nodes",
      large.steadyMs,
      "ms",
      "10 × sweep of 100",
      small.steadyMs * 10,
      {
        lowerIsBetter: true,
        target: "≤ 5,000 ms; linear (ratio ≥ 1)",
      },
    ),
    figure("per-node wall time at 1,000", perNode(large), "ms", "at 100", perNode(small), {
      lowerIsBetter: true,
      target: "linear (ratio ≈ 1)",
    }),
    figure(
      "controller-side CPU per node per sweep at 1,000 (controller + worker)",
      cpuPerNode(large),
      "ms",
      "at 100",
      cpuPerNode(small),
      { lowerIsBetter: true, target: "linear (ratio ≈ 1)" },
    ),
    figure(
      "fleet worker CPU per sweep at 1,000",
      large.workerCpuPerSweepS * 1000,
      "ms",
      "controller process CPU per sweep",
      large.cpuPerSweepS * 1000,
    ),
    figure(
      "simulated nodes' CPU per sweep at 1,000 (same 2 cores)",
      large.simCpuPerSweepS * 1000,
      "ms",
      "controller-side CPU per sweep",
      (large.cpuPerSweepS + large.workerCpuPerSweepS) * 1000,
    ),
    figure(
      "fleet driver start → all 1,000 nodes answer (TLS connects)",
      large.connectMs,
      "ms",
      "at 100",
      small.connectMs,
      lower,
    ),
    figure(
      "first sweep, 1,000 nodes (policy to every node)",
      large.coldMs,
      "ms",
      "steady sweep",
      large.steadyMs,
      lower,
    ),
    figure(
      "controller-side RSS between sweeps, 1,000 nodes (controller + worker)",
      rest(large, "rss"),
      "MB",
      "same right after the sweeps",
      sideRss(large),
      { lowerIsBetter: true, target: "≤ 200 MB" },
    ),
    figure(
      "controller-side peak RSS, 1,000 nodes (controller + worker, each its VmHWM)",
      large.controllerRest.peak + (large.workerRest?.peak ?? 0),
      "MB",
      "between sweeps",
      rest(large, "rss"),
      lower,
    ),
    figure(
      "controller-side PSS between sweeps, 1,000 nodes (shared deno binary pages split)",
      rest(large, "pss"),
      "MB",
      "RSS",
      rest(large, "rss"),
      lower,
    ),
    figure(
      "controller-side RSS between sweeps, 0 nodes (controller + idle worker)",
      rest(none, "rss"),
      "MB",
      "of it file pages (the deno binary's code, shared)",
      rest(none, "file"),
      lower,
    ),
    figure(
      "controller process RSS between sweeps, 1,000 nodes",
      large.controllerRest.rss,
      "MB",
      "at 0 nodes",
      none.controllerRest.rss,
      lower,
    ),
    figure(
      "controller process RSS right after 1,000-node sweeps (before the heap release)",
      large.rssAfterMb,
      "MB",
      "its V8 heap reserved then",
      large.heapTotalAfterMb,
      lower,
    ),
    figure(
      "controller process RSS per added node, 500 → 1,000 (between sweeps)",
      perAdded(mid, large, (r) => r.controllerRest.rss),
      "KB",
      "100 → 500",
      perAdded(small, mid, (r) => r.controllerRest.rss),
      linear,
    ),
    figure(
      "controller process V8 heap in use per added node, 500 → 1,000",
      perAdded(mid, large, (r) => r.controllerRest.heapUsed),
      "KB",
      "100 → 500",
      perAdded(small, mid, (r) => r.controllerRest.heapUsed),
      linear,
    ),
    figure(
      "fleet worker RSS, 1,000 nodes",
      worker(large).rss,
      "MB",
      "at 0 nodes",
      worker(none).rss,
      lower,
    ),
    figure(
      "fleet worker anonymous memory per added node, 500 → 1,000",
      perAdded(mid, large, (r) => worker(r).anon),
      "KB",
      "100 → 500",
      perAdded(small, mid, (r) => worker(r).anon),
      linear,
    ),
    figure(
      "fleet worker anonymous memory per node, first 100 (one-time costs: code, TLS and HTTP/2 set-up)",
      perAdded(none, small, (r) => worker(r).anon),
      "KB",
      "per added node, 100 → 1,000",
      perAdded(small, large, (r) => worker(r).anon),
      lower,
    ),
    figure(
      "fleet worker V8 heap in use per added node, 100 → 1,000 (no forced GC)",
      perAdded(small, large, (r) => worker(r).heapUsed),
      "KB",
      "its native memory per added node (anonymous minus V8 heap reserved)",
      perAdded(small, large, workerNative),
    ),
    figure(
      "fleet worker V8 heap reserved, 1,000 nodes",
      worker(large).heapTotal,
      "MB",
      "in use (no forced GC)",
      worker(large).heapUsed,
      lower,
    ),
    figure(
      "one process, direct grpc-js caller (earlier layout, no heap release): RSS after 1,000-node sweeps",
      direct.rssAfterMb,
      "MB",
      "controller side with the fleet worker, same moment",
      sideRss(large),
      lower,
    ),
    figure(
      "loop alone (in-memory nodes): steady sweep, 1,000 nodes",
      loop.steadyMs,
      "ms",
      "over the fleet driver",
      large.steadyMs,
      lower,
    ),
    figure(
      "loop alone: RSS after 1,000-node sweeps",
      loop.rssAfterMb,
      "MB",
      "same process before the first sweep",
      loop.rssBeforeMb,
      lower,
    ),
    figure(
      "loop alone: V8 heap in use after 1,000-node sweeps (after GC)",
      loop.heapAfterMb,
      "MB",
      "before the first sweep",
      loop.heapBeforeMb,
      lower,
    ),
    figure(
      "calls per node per steady sweep",
      large.callsPerSweep / large.nodes,
      "calls",
      "at 100",
      small.callsPerSweep / small.nodes,
    ),
    figure(
      "node-side change → healed, 1,000 nodes (median)",
      percentile(large.healMs, 50),
      "ms",
      "sweep interval",
      INTERVAL_MS,
      lower,
    ),
    figure(
      "node-side change → healed, 1,000 nodes (worst)",
      Math.max(...large.healMs),
      "ms",
      "two intervals + two sweeps",
      2 * (INTERVAL_MS + large.steadyMs),
      { lowerIsBetter: true, target: "within two sweep intervals" },
    ),
    figure(
      "node-side change → healed, 100 nodes (median)",
      percentile(small.healMs, 50),
      "ms",
      "sweep interval",
      INTERVAL_MS,
      lower,
    ),
  ];
}

export const reconcileBench: BenchModule = {
  section: "Reconcile",
  notes:
    `Simulated nodes: real grpc-js NodeControl servers with mTLS, ${PEERS_PER_NODE} peers each and an open, silent WatchEvents stream, all in one child process on the same cores (its memory is not counted; its CPU is reported). The controller side is the Reconciler (concurrency 32) over the real fleet driver, whose gRPC clients run in its worker child process (V8 flag --optimize-for-size, malloc trimming); heartbeats every 60 s with a 30 s deadline so that a loaded machine marks no node unreachable. A fleet in step: a steady sweep heals nothing (GetStatus + ListPeers per node). The controller process runs without V8 flags, as \`deno task controller\` does; its fleet driver returns the V8 heap a burst of calls grew once the calls pause (controller/fleet/heap_release.ts; Deno never shrinks it on its own). Each scale (0, 100, 500, 1,000 nodes) runs in a fresh process. Memory: "between sweeps" is 4 s after the last steady sweep, nothing forced; "right after" follows a plain full GC; peak is each process's VmHWM; PSS counts the pages the two processes share (the deno binary's code) once. An idle Deno process is already 60–90 MB RSS (about 45–55 MB of it the binary's code), so two processes start near 150 MB before any node; each node then costs the worker one TLS + HTTP/2 session (grpc-js and Deno's node:tls/node:http2 objects, about half V8 heap, half native). Heal times: a peer removed on a random node at a random moment, until reconcile's AddPeer reaches it, with a ${INTERVAL_MS} ms interval (7 trials).`,
  run: measure,
};
