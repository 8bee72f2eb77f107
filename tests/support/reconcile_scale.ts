/**
 * One scale of the reconcile benchmark (tests/bench/reconcile.ts), run in a
 * process of its own so its memory figures are its own: a controller state
 * with `count` nodes of PEERS_PER_NODE peers each, the simulated nodes in a
 * child process (sim_nodes_main.ts), the Reconciler over a direct NodeCaller.
 */
import { Reconciler } from "../../controller/reconcile/reconciler.ts";
import { peerPskLabel, sealPsk } from "../../controller/reconcile/psk.ts";
import { agentPki } from "./agent_harness.ts";
import { DirectNodeCaller } from "./direct_node_caller.ts";
import { ACTOR, controllerFixture } from "./reconcile_fixture.ts";
import { openDatabase } from "../../controller/db/sqlite.ts";
import { Keystore } from "../../controller/keystore.ts";
import { Service } from "../../controller/service/service.ts";
import { InMemorySimCaller, simIp, simKey } from "./sim_nodes.ts";
import type { NodeCaller } from "../../controller/fleet/types.ts";
import { percentile } from "../bench/harness.ts";
import { decodeText } from "../../core/encoding.ts";

export const PEERS_PER_NODE = 10;
export const INTERVAL_MS = 1000;
const HEAL_TRIALS = 7;
const SIM_MAIN = new URL("./sim_nodes_main.ts", import.meta.url).pathname;
const SCALE_MAIN = new URL("./reconcile_scale_main.ts", import.meta.url).pathname;
const OBFUSCATION = JSON.stringify({
  jc: 4,
  jmin: 40,
  jmax: 70,
  s1: 50,
  s2: 60,
  s3: 0,
  s4: 0,
  h1: 11,
  h2: 12,
  h3: 13,
  h4: 14,
});

export interface ScaleResult {
  nodes: number;
  coldMs: number;
  steadyMs: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  /** V8 heap in use (after a full GC). */
  heapBeforeMb: number;
  heapAfterMb: number;
  /** V8 heap reserved after the sweeps. */
  heapTotalAfterMb: number;
  simRssMb: number;
  callsPerSweep: number;
  /** CPU seconds per steady sweep: the controller process, the simulated nodes. */
  cpuPerSweepS: number;
  simCpuPerSweepS: number;
  healMs: number[];
}

/** utime + stime of a process, in seconds (Linux /proc). */
async function cpuSeconds(pid: number | "self"): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

const mb = (bytes: number) => bytes / (1024 * 1024);

/** Reads JSON lines from the sim process; `next(pred)` waits (bounded) for a matching one. */
function lineReader(stream: ReadableStream<Uint8Array>) {
  const queue: Record<string, unknown>[] = [];
  const waiter: { wake: (() => void) | null } = { wake: null };
  (async () => {
    let buf = "";
    for await (const chunk of decodeText(stream)) {
      buf += chunk;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          queue.push(JSON.parse(line));
        } catch { /* not ours */ }
        waiter.wake?.();
      }
    }
  })().catch(() => {});
  return {
    async next(pred: (o: Record<string, unknown>) => boolean, timeoutMs: number) {
      const end = Date.now() + timeoutMs;
      for (let i = 0; i < 1_000_000; i++) {
        const idx = queue.findIndex(pred);
        if (idx >= 0) return queue.splice(idx, 1)[0];
        if (Date.now() > end) {
          throw new Error(`reconcile bench: no sim line within ${timeoutMs} ms`);
        }
        await new Promise<void>((r) => {
          waiter.wake = r;
          setTimeout(r, 100);
        });
        waiter.wake = null;
      }
      throw new Error("reconcile bench: unreachable");
    },
    clear() {
      queue.length = 0;
    },
  };
}

/** How the controller reaches the simulated nodes. */
export type ScaleMode = "grpc" | "memory";

/** The simulated fleet as one scale run drives it. */
interface SimDriver {
  caller: NodeCaller & { counts?: Map<string, number> };
  /** RSS of the simulated nodes' own process (MB), if apart. */
  simRssMb: number;
  /** CPU seconds of the simulated nodes' process so far, if apart. */
  simCpu(): Promise<number>;
  removePeer(i: number, j: number): Promise<void>;
  /** Resolves once node i got peer j back (bounded). */
  readded(i: number, j: number): Promise<void>;
  close(): Promise<void>;
}

async function grpcDriver(ids: string[]): Promise<SimDriver> {
  const pki = await agentPki();
  const nodeLeaf = await pki.fleet.issue({ kind: "node", host: "localhost" });
  const sim = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SIM_MAIN],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const simIn = sim.stdin.getWriter();
  const send = (o: unknown) => simIn.write(new TextEncoder().encode(JSON.stringify(o) + "\n"));
  const simOut = lineReader(sim.stdout);
  const caller = new DirectNodeCaller({
    rootPem: pki.fleet.rootPem,
    chainPem: pki.controller.chainPem,
    keyPem: pki.controller.keyPem,
  });
  const close = async () => {
    caller.close();
    await send({ op: "stop" }).catch(() => {});
    await simIn.close().catch(() => {});
    const timer = setTimeout(() => sim.kill("SIGKILL"), 30_000);
    await sim.status;
    clearTimeout(timer);
  };
  try {
    await send({
      count: ids.length,
      peersPerNode: PEERS_PER_NODE,
      chainPem: nodeLeaf.chainPem,
      keyPem: nodeLeaf.keyPem,
      rootPem: pki.fleet.rootPem,
    });
    const ready = await simOut.next((o) => o.ready === true, 600_000);
    const ports = ready.ports as number[];
    ids.forEach((id, i) =>
      caller.set(id, { target: `127.0.0.1:${ports[i]}`, serverName: "localhost" })
    );
    return {
      caller,
      simRssMb: Number(ready.rssKb) / 1024,
      simCpu: () => cpuSeconds(sim.pid),
      async removePeer(i, j) {
        simOut.clear();
        await send({ op: "remove-peer", node: i, peer: j });
      },
      async readded(i, j) {
        await simOut.next((o) => o.addPeer === i && o.key === simKey(i, j), 120_000);
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

function memoryDriver(ids: string[]): SimDriver {
  const caller = new InMemorySimCaller(ids, PEERS_PER_NODE);
  return {
    caller,
    simRssMb: 0,
    simCpu: () => Promise.resolve(0),
    removePeer(i, j) {
      caller.nodes[i].peers.delete(simKey(i, j));
      return Promise.resolve();
    },
    async readded(i, j) {
      const end = Date.now() + 120_000;
      while (!caller.nodes[i].peers.has(simKey(i, j))) {
        if (Date.now() > end) throw new Error("reconcile bench: no heal within 120 s");
        await new Promise((r) => setTimeout(r, 2));
      }
    },
    close: () => Promise.resolve(),
  };
}

const nodeIds = (count: number) => Array.from({ length: count }, (_, i) => `sim-node-${i}`);

/**
 * Desired state matching what the simulated nodes hold (a fleet in step),
 * written into a new state under `dir` (run in a process of its own: the
 * thousands of writes must not weigh on the measured process).
 */
export async function writeFleet(dir: string, count: number): Promise<void> {
  const f = await controllerFixture(dir);
  const ids = nodeIds(count);
  const sealed: Uint8Array[][] = [];
  for (const nodeId of ids) {
    const row: Uint8Array[] = [];
    for (let j = 0; j < PEERS_PER_NODE; j++) {
      const psk = crypto.getRandomValues(new Uint8Array(32)).toBase64();
      row.push(await sealPsk(f.keystore, psk, peerPskLabel(`${nodeId}-${j}`)));
    }
    sealed.push(row);
  }
  f.service.transaction(() => {
    for (const [i, nodeId] of ids.entries()) {
      f.service.mutate(
        { actor: ACTOR, action: "node.create", target: { type: "node", id: nodeId } },
        (tx) =>
          tx.insert({
            name: `sim-${i}`,
            host: "127.0.0.1",
            status: "active",
            cert_pem: "(simulated: not used)",
            masquerade: 0,
            obfuscation: OBFUSCATION,
            created_at: tx.now,
          }),
      );
      for (let j = 0; j < PEERS_PER_NODE; j++) {
        const id = `${nodeId}-${j}`;
        f.service.mutate(
          { actor: ACTOR, action: "node_peer.create", target: { type: "node_peer", id } },
          (tx) =>
            tx.insert({
              node_id: nodeId,
              public_key: simKey(i, j),
              psk_sealed: sealed[i][j],
              allowed_ips: JSON.stringify([simIp(i, j)]),
              created_at: tx.now,
            }),
        );
      }
    }
  });
  f.close();
}

const calls = (c: SimDriver["caller"]) =>
  [...(c.counts?.values() ?? [])].reduce((a, b) => a + b, 0);

export async function scale(count: number, mode: ScaleMode): Promise<ScaleResult> {
  const tmp = await Deno.makeTempDir({ prefix: "pharos-reconcile-bench-" });
  const writer = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCALE_MAIN, "write", tmp, String(count)],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!writer.success) throw new Error(`reconcile bench: writing ${count} nodes failed`);
  const db = openDatabase(`${tmp}/controller/pharos.db`);
  const service = new Service(db);
  const keystore = await Keystore.open(`${tmp}/controller`);
  const ids = nodeIds(count);
  let sim: SimDriver | null = null;
  let rec: Reconciler | null = null;
  try {
    sim = mode === "grpc" ? await grpcDriver(ids) : memoryDriver(ids);
    (globalThis as { gc?: () => void }).gc?.();
    const { rss: rssBefore, heapUsed: heapBefore } = Deno.memoryUsage();
    rec = new Reconciler({
      service,
      caller: sim.caller,
      sealer: keystore,
      intervalMs: INTERVAL_MS,
      concurrency: 32,
      callTimeoutMs: 30_000,
    });
    const cold = await rec.sweep();
    if (cold.errors > 0 || cold.heals > 0) {
      throw new Error(
        `reconcile bench: first sweep had ${cold.errors} errors, ${cold.heals} heals`,
      );
    }
    const calls0 = calls(sim.caller);
    const cpu0 = await cpuSeconds("self");
    const simCpu0 = await sim.simCpu();
    const steady: number[] = [];
    for (let k = 0; k < 3; k++) {
      const s = await rec.sweep();
      if (s.errors > 0 || s.heals > 0) {
        throw new Error("reconcile bench: a steady sweep changed something");
      }
      steady.push(s.durationMs);
    }
    const cpu = (await cpuSeconds("self")) - cpu0;
    const simCpu = (await sim.simCpu()) - simCpu0;
    const callsPerSweep = (calls(sim.caller) - calls0) / 3;
    (globalThis as { gc?: () => void }).gc?.();
    const after = Deno.memoryUsage();
    const rssAfter = after.rss;

    // A peer removed on a node, behind the controller's back, until re-added.
    rec.start();
    await rec.idle();
    const healMs: number[] = [];
    for (let t = 0; t < HEAL_TRIALS; t++) {
      await new Promise((r) => setTimeout(r, 150 + Math.floor(Math.random() * INTERVAL_MS)));
      const i = Math.floor(Math.random() * count);
      const j = Math.floor(Math.random() * PEERS_PER_NODE);
      const t0 = performance.now();
      await sim.removePeer(i, j);
      await sim.readded(i, j);
      healMs.push(performance.now() - t0);
    }
    return {
      nodes: count,
      coldMs: cold.durationMs,
      steadyMs: percentile(steady, 50),
      rssBeforeMb: mb(rssBefore),
      rssAfterMb: mb(rssAfter),
      heapBeforeMb: mb(heapBefore),
      heapAfterMb: mb(after.heapUsed),
      heapTotalAfterMb: mb(after.heapTotal),
      simRssMb: sim.simRssMb,
      callsPerSweep,
      cpuPerSweepS: cpu / 3,
      simCpuPerSweepS: simCpu / 3,
      healMs,
    };
  } finally {
    await rec?.stop();
    await sim?.close();
    db.close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
