/**
 * The reconcile loop at fleet scale: sweep time, CPU and the controller
 * process's memory for 100 and 1,000 nodes, each a real gRPC NodeControl
 * server with mTLS (simulated agents answering from memory, all in one
 * child process: tests/support/sim_nodes.ts) holding 10 peers, reached
 * through a direct grpc-js NodeCaller (one channel per node, as a fleet
 * driver keeps). Each scale runs in a fresh process
 * (tests/support/reconcile_scale.ts), so its memory is its own. Per-node
 * cost and its growth from 100 to 1,000; the first sweep (TLS connects, the
 * network policy sent to every node, as after a controller start); the
 * time from a change on a node (a peer removed behind the controller's
 * back) to healed with a 1 s interval, against that interval.
 */
import type { ScaleMode, ScaleResult } from "../support/reconcile_scale.ts";
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

async function measure(): Promise<Figure[]> {
  const small = await runScale(100, "grpc");
  const large = await runScale(1000, "grpc");
  const loop = await runScale(1000, "memory");
  console.error(JSON.stringify({ small, large, loop }));
  const added = (r: ScaleResult) => (r.rssAfterMb - r.rssBeforeMb) * 1024 / r.nodes;
  const perNode = (r: ScaleResult) => r.steadyMs / r.nodes;
  const cpuPerNode = (r: ScaleResult) => r.cpuPerSweepS * 1000 / r.nodes;
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
      "controller CPU per node per sweep at 1,000",
      cpuPerNode(large),
      "ms",
      "at 100",
      cpuPerNode(small),
      {
        lowerIsBetter: true,
        target: "linear (ratio ≈ 1)",
      },
    ),
    figure(
      "simulated nodes' CPU per sweep at 1,000 (same 2 cores)",
      large.simCpuPerSweepS * 1000,
      "ms",
      "controller CPU per sweep",
      large.cpuPerSweepS * 1000,
    ),
    figure(
      "first sweep, 1,000 nodes (TLS connects + policy to every node)",
      large.coldMs,
      "ms",
      "steady sweep",
      large.steadyMs,
      { lowerIsBetter: true },
    ),
    figure(
      "controller RSS after 1,000-node sweeps",
      large.rssAfterMb,
      "MB",
      "same process before the first sweep",
      large.rssBeforeMb,
      {
        lowerIsBetter: true,
        target: "≤ 200 MB",
      },
    ),
    figure(
      "controller RSS after 100-node sweeps",
      small.rssAfterMb,
      "MB",
      "same process before the first sweep",
      small.rssBeforeMb,
      { lowerIsBetter: true },
    ),
    figure("RSS added per node by sweeping, 1,000", added(large), "KB", "at 100", added(small), {
      lowerIsBetter: true,
    }),
    figure(
      "loop alone (in-memory nodes): steady sweep, 1,000 nodes",
      loop.steadyMs,
      "ms",
      "same over gRPC",
      large.steadyMs,
      { lowerIsBetter: true },
    ),
    figure(
      "loop alone: controller CPU per sweep, 1,000 nodes",
      loop.cpuPerSweepS * 1000,
      "ms",
      "same over gRPC",
      large.cpuPerSweepS * 1000,
      { lowerIsBetter: true },
    ),
    figure(
      "loop alone: RSS after 1,000-node sweeps",
      loop.rssAfterMb,
      "MB",
      "same process before the first sweep",
      loop.rssBeforeMb,
      { lowerIsBetter: true, target: "≤ 200 MB" },
    ),
    figure(
      "loop alone: V8 heap in use after 1,000-node sweeps (after GC)",
      loop.heapAfterMb,
      "MB",
      "before the first sweep",
      loop.heapBeforeMb,
      { lowerIsBetter: true },
    ),
    figure(
      "over gRPC: V8 heap in use after 1,000-node sweeps (after GC)",
      large.heapAfterMb,
      "MB",
      "before the first sweep",
      large.heapBeforeMb,
      { lowerIsBetter: true },
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
      { lowerIsBetter: true },
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
      { lowerIsBetter: true },
    ),
  ];
}

export const reconcileBench: BenchModule = {
  section: "Reconcile",
  notes:
    `Simulated nodes: real grpc-js NodeControl servers with mTLS, ${PEERS_PER_NODE} peers each, all in one child process on the same cores (its memory is not in the controller's RSS; its CPU is reported). The controller side is the Reconciler with a direct grpc-js NodeCaller (one channel per node), concurrency 32, a fleet in step (a steady sweep heals nothing: GetStatus + ListPeers per node). Each scale runs in a fresh process. Heal times: a peer removed on a random node at a random moment, until reconcile's AddPeer reaches it, with a ${INTERVAL_MS} ms interval (7 trials).`,
  run: measure,
};
