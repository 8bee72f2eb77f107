/**
 * One scale of the reconcile benchmark (tests/bench/reconcile.ts), run in a
 * process of its own so its memory figures are its own: a controller state
 * with `count` nodes of PEERS_PER_NODE peers each, the simulated nodes in a
 * child process (sim_nodes_main.ts), and the Reconciler calling them
 * - "fleet": through the real fleet driver, as `deno task controller` runs
 *   it (its gRPC clients and WatchEvents streams in the worker child
 *   process; the controller process and the worker are measured apart);
 * - "direct": through a grpc-js NodeCaller in the measured process itself;
 * - "memory": without a network (the loop's own cost).
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
import type { NodeCaller, NodeMessage, NodeMethod } from "../../controller/fleet/types.ts";
import { type FleetDriver, startFleetDriver } from "../../controller/fleet/driver.ts";
import { type ControllerState, openState } from "../../controller/state.ts";
import * as pki from "../../core/pki/mod.ts";
import type { Sealer } from "../../controller/reconcile/psk.ts";
import { stateFleet } from "./fleet.ts";
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
  /** "fleet": from the driver's start until every node answered GetStatus; else 0. */
  connectMs: number;
  coldMs: number;
  steadyMs: number;
  /** The controller process (fleet: without its gRPC worker). */
  rssBeforeMb: number;
  rssAfterMb: number;
  /** The fleet driver's gRPC worker process after the sweeps ("fleet" only; else 0). */
  workerRssMb: number;
  workerHeapUsedMb: number;
  workerHeapTotalMb: number;
  workerExternalMb: number;
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
  /** CPU seconds per steady sweep of the fleet driver's worker (0 without one). */
  workerCpuPerSweepS: number;
  healMs: number[];
  /**
   * Memory breakdowns of the measured (controller) process: at its start,
   * before the first sweep (nodes connected), right after the steady sweeps
   * and between sweeps; the worker's at the same moments ("fleet" only, else null).
   */
  controllerStart: MemoryBreakdown;
  controllerBefore: MemoryBreakdown;
  controllerAfter: MemoryBreakdown;
  /** 4 s after the sweeps, no GC forced: what the process holds between sweeps. */
  controllerRest: MemoryBreakdown;
  workerBefore: MemoryBreakdown | null;
  workerAfter: MemoryBreakdown | null;
  workerRest: MemoryBreakdown | null;
}

/**
 * One process's memory (MB): RSS split into anonymous memory (heaps) and
 * file pages (mostly the deno binary's code, which every Deno process maps
 * and the kernel shares between them), PSS (shared pages divided among the
 * processes that map them), and V8's own figures.
 */
export interface MemoryBreakdown {
  rss: number;
  anon: number;
  file: number;
  pss: number;
  /** The highest RSS so far (VmHWM). */
  peak: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
}

/** utime + stime of a process, in seconds (Linux /proc). */
async function cpuSeconds(pid: number | "self"): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

const mb = (bytes: number) => bytes / (1024 * 1024);

/** RSS, anonymous, file-backed and proportional memory of a process (MB, Linux smaps_rollup). */
async function procMemory(pid: number | "self") {
  const text = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`) +
    await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return {
    rss: kb("Rss") / 1024,
    anon: kb("Anonymous") / 1024,
    file: (kb("Rss") - kb("Anonymous")) / 1024,
    pss: kb("Pss") / 1024,
    peak: kb("VmHWM") / 1024,
  };
}

/** This process's breakdown (after a plain full GC when `gc` and --expose-gc are on). */
async function ownMemory(gc = true): Promise<MemoryBreakdown> {
  if (gc) (globalThis as { gc?: () => void }).gc?.();
  const u = Deno.memoryUsage();
  return {
    ...await procMemory("self"),
    heapUsed: mb(u.heapUsed),
    heapTotal: mb(u.heapTotal),
    external: mb(u.external),
  };
}

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

/** How the controller reaches the simulated nodes (see the top of this file). */
export type ScaleMode = "fleet" | "direct" | "memory";
export const SCALE_MODES: readonly ScaleMode[] = ["fleet", "direct", "memory"];

/** The simulated fleet as one scale run drives it. */
interface SimDriver {
  caller: NodeCaller & { counts?: Map<string, number> };
  /** The fleet driver's worker memory, when there is one. */
  workerMemory?: () => ReturnType<FleetDriver["workerMemory"]>;
  /** When the fleet driver started (performance.now()). */
  startedAt?: number;
  /** The fleet driver's view: the node answered a heartbeat. */
  healthy?: (nodeId: string) => boolean;
  /** CPU seconds of the fleet driver's worker so far (0 without one). */
  workerCpu?: () => Promise<number>;
  /** The fleet driver's worker process id, when one runs. */
  workerPid?: () => number | null;
  /** RSS of the simulated nodes' own process (MB), if apart. */
  simRssMb: number;
  /** CPU seconds of the simulated nodes' process so far, if apart. */
  simCpu(): Promise<number>;
  removePeer(i: number, j: number): Promise<void>;
  /** Resolves once node i got peer j back (bounded). */
  readded(i: number, j: number): Promise<void>;
  close(): Promise<void>;
}

/** The node certificate every simulated node presents, and the CA it chains to. */
interface SimIdentity {
  chainPem: string;
  keyPem: string;
  rootPem: string;
}

/** The simulated nodes' process: ports in node order, and its control. */
async function startSim(count: number, id: SimIdentity) {
  const sim = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SIM_MAIN],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const simIn = sim.stdin.getWriter();
  const send = (o: unknown) => simIn.write(new TextEncoder().encode(JSON.stringify(o) + "\n"));
  const simOut = lineReader(sim.stdout);
  const close = async () => {
    await send({ op: "stop" }).catch(() => {});
    await simIn.close().catch(() => {});
    const timer = setTimeout(() => sim.kill("SIGKILL"), 30_000);
    await sim.status;
    clearTimeout(timer);
  };
  try {
    await send({ count, peersPerNode: PEERS_PER_NODE, ...id });
    const ready = await simOut.next((o) => o.ready === true, 600_000);
    return {
      ports: ready.ports as number[],
      rssMb: Number(ready.rssKb) / 1024,
      cpu: () => cpuSeconds(sim.pid),
      async removePeer(i: number, j: number) {
        simOut.clear();
        await send({ op: "remove-peer", node: i, peer: j });
      },
      async readded(i: number, j: number) {
        await simOut.next((o) => o.addPeer === i && o.key === simKey(i, j), 120_000);
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

async function directDriver(ids: string[]): Promise<SimDriver> {
  const pki = await agentPki();
  const nodeLeaf = await pki.fleet.issue({ kind: "node", host: "localhost" });
  const sim = await startSim(ids.length, {
    chainPem: nodeLeaf.chainPem,
    keyPem: nodeLeaf.keyPem,
    rootPem: pki.fleet.rootPem,
  });
  const caller = new DirectNodeCaller({
    rootPem: pki.fleet.rootPem,
    chainPem: pki.controller.chainPem,
    keyPem: pki.controller.keyPem,
  });
  ids.forEach((id, i) =>
    caller.set(id, { target: `127.0.0.1:${sim.ports[i]}`, serverName: "localhost" })
  );
  return {
    caller,
    simRssMb: sim.rssMb,
    simCpu: sim.cpu,
    removePeer: sim.removePeer,
    readded: sim.readded,
    close: async () => {
      caller.close();
      await sim.close();
    },
  };
}

/** Counts the calls a NodeCaller passes on, by method. */
class CountingCaller implements NodeCaller {
  readonly counts = new Map<string, number>();
  constructor(private readonly inner: NodeCaller) {}
  call(nodeId: string, method: NodeMethod, request: NodeMessage, opts?: { timeoutMs?: number }) {
    this.counts.set(method, (this.counts.get(method) ?? 0) + 1);
    return this.inner.call(nodeId, method, request, opts);
  }
}

const SIM_FILE = "sim-identity.json";
const PORTS_FILE = "sim-ports.json";

/**
 * "fleet": the nodes, pinned to the simulated nodes' certificate (issued by
 * the state's Fleet CA), written by a writer process once the simulated
 * nodes listen; then the real fleet driver over the state.
 */
async function fleetDriver(
  tmp: string,
  count: number,
): Promise<SimDriver & { state: ControllerState }> {
  await runWriter(["write-state", tmp]);
  const id = JSON.parse(await Deno.readTextFile(`${tmp}/${SIM_FILE}`)) as SimIdentity;
  const sim = await startSim(count, id);
  let state: ControllerState | null = null;
  let driver: FleetDriver | null = null;
  try {
    await Deno.writeTextFile(`${tmp}/${PORTS_FILE}`, JSON.stringify(sim.ports));
    await runWriter(["write", tmp, String(count), "fleet"]);
    state = await openState(`${tmp}/controller`);
    // Heartbeats are not what is measured: rare and patient, so that a loaded
    // machine (the simulated nodes share its cores) marks no node unreachable.
    const startedAt = performance.now();
    driver = await startFleetDriver(state, { pollIntervalMs: 60_000, pollTimeoutMs: 30_000 });
    const d = driver;
    return {
      state,
      caller: new CountingCaller(d),
      workerMemory: () => d.workerMemory(),
      startedAt,
      healthy: (nodeId) => d.status(nodeId)?.health === "healthy",
      workerCpu: () => d.workerStats.pid ? cpuSeconds(d.workerStats.pid) : Promise.resolve(0),
      workerPid: () => d.workerStats.pid,
      simRssMb: sim.rssMb,
      simCpu: sim.cpu,
      removePeer: sim.removePeer,
      readded: sim.readded,
      close: async () => {
        await d.stop();
        await sim.close();
        state?.close();
      },
    };
  } catch (e) {
    await driver?.stop();
    await sim.close();
    state?.close();
    throw e;
  }
}

async function runWriter(args: string[]): Promise<void> {
  const writer = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCALE_MAIN, ...args],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!writer.success) throw new Error(`reconcile bench: writer ${args.join(" ")} failed`);
}

/** A new controller state under `tmp` and the certificate the simulated nodes present. */
export async function writeState(tmp: string): Promise<void> {
  const state = await openState(`${tmp}/controller`, { create: true });
  const fleet = await stateFleet(state);
  const leaf = await fleet.fleet.issue({ kind: "node", host: "localhost" });
  const id: SimIdentity & { certPem: string } = {
    chainPem: leaf.chainPem,
    keyPem: leaf.keyPem,
    rootPem: fleet.fleet.rootPem,
    certPem: pki.certPem(leaf.cert),
  };
  await Deno.writeTextFile(`${tmp}/${SIM_FILE}`, JSON.stringify(id));
  state.close();
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
 * written into the state under `tmp` (run in a process of its own: the
 * thousands of writes must not weigh on the measured process). "fleet":
 * into the state writeState made, each node pinned to the simulated
 * nodes' certificate at its port; otherwise into a new bare state.
 */
export async function writeFleet(tmp: string, count: number, fleet: boolean): Promise<void> {
  let service: Service, sealer: Sealer, close: () => void;
  let node: (i: number) => Record<string, string | number> = () => ({
    host: "127.0.0.1",
    cert_pem: "(simulated: not used)",
  });
  if (fleet) {
    const state = await openState(`${tmp}/controller`);
    service = new Service(state.db);
    sealer = state.keystore;
    close = () => state.close();
    const id = JSON.parse(await Deno.readTextFile(`${tmp}/${SIM_FILE}`));
    const ports = JSON.parse(await Deno.readTextFile(`${tmp}/${PORTS_FILE}`)) as number[];
    const serial = pki.serialOf(pki.parseCertificate(id.certPem));
    node = (i) => ({
      host: "127.0.0.1",
      control_port: ports[i],
      cert_pem: id.certPem,
      cert_serial: serial,
    });
  } else {
    const f = await controllerFixture(tmp);
    service = f.service;
    sealer = f.keystore;
    close = f.close;
  }
  const ids = nodeIds(count);
  const sealed: Uint8Array[][] = [];
  for (const nodeId of ids) {
    const row: Uint8Array[] = [];
    for (let j = 0; j < PEERS_PER_NODE; j++) {
      const psk = crypto.getRandomValues(new Uint8Array(32)).toBase64();
      row.push(await sealPsk(sealer, psk, peerPskLabel(`${nodeId}-${j}`)));
    }
    sealed.push(row);
  }
  service.transaction(() => {
    for (const [i, nodeId] of ids.entries()) {
      service.mutate(
        { actor: ACTOR, action: "node.create", target: { type: "node", id: nodeId } },
        (tx) =>
          tx.insert({
            name: `sim-${i}`,
            status: "active",
            masquerade: 0,
            obfuscation: OBFUSCATION,
            created_at: tx.now,
            ...node(i),
          }),
      );
      for (let j = 0; j < PEERS_PER_NODE; j++) {
        const id = `${nodeId}-${j}`;
        service.mutate(
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
  close();
}

/** Resolves once every node answered a GetStatus (32 at a time, each retried, bounded). */
async function everyNodeAnswers(caller: NodeCaller, ids: string[]): Promise<void> {
  const end = Date.now() + 300_000;
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < ids.length) {
      const id = ids[next++];
      for (;;) {
        try {
          await caller.call(id, "GetStatus", {}, { timeoutMs: 30_000 });
          break;
        } catch (e) {
          if (Date.now() > end) throw new Error(`reconcile bench: ${id} never answered: ${e}`);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    }
  }));
}

/** The fleet driver's worker's breakdown, or null when there is none. */
async function workerMemory(sim: SimDriver): Promise<MemoryBreakdown | null> {
  const pid = sim.workerPid?.();
  const usage = await sim.workerMemory?.();
  if (!pid || !usage) return null;
  return {
    ...await procMemory(pid),
    heapUsed: mb(usage.heapUsed),
    heapTotal: mb(usage.heapTotal),
    external: mb(usage.external),
  };
}

const calls = (c: SimDriver["caller"]) =>
  [...(c.counts?.values() ?? [])].reduce((a, b) => a + b, 0);

export async function scale(count: number, mode: ScaleMode): Promise<ScaleResult> {
  const tmp = await Deno.makeTempDir({ prefix: "pharos-reconcile-bench-" });
  const ids = nodeIds(count);
  let sim: SimDriver | null = null;
  let rec: Reconciler | null = null;
  let service: Service, sealer: Sealer;
  let close = () => {};
  const controllerStart = await ownMemory();
  try {
    if (mode === "fleet") {
      const f = await fleetDriver(tmp, count);
      sim = f;
      service = new Service(f.state.db);
      sealer = f.state.keystore;
    } else {
      await runWriter(["write", tmp, String(count), "bare"]);
      const db = openDatabase(`${tmp}/controller/pharos.db`);
      service = new Service(db);
      sealer = await Keystore.open(`${tmp}/controller`);
      close = () => db.close();
      sim = mode === "direct" ? await directDriver(ids) : memoryDriver(ids);
    }
    (globalThis as { gc?: () => void }).gc?.();
    const { rss: rssBefore, heapUsed: heapBefore } = Deno.memoryUsage();
    rec = new Reconciler({
      service,
      caller: sim.caller,
      sealer,
      intervalMs: INTERVAL_MS,
      concurrency: 32,
      callTimeoutMs: 30_000,
    });
    // "fleet": the driver dials every node at its start; the first sweep
    // begins once each answers (bounded), as after a controller start.
    let connectMs = 0;
    if (mode === "fleet") {
      await everyNodeAnswers(sim.caller, ids);
      connectMs = performance.now() - (sim.startedAt ?? 0);
      // Each node's first heartbeat records it (a write per node, each audited):
      // done before the sweeps, so they measure reconcile only.
      const end = Date.now() + 120_000;
      while (!ids.every((id) => sim!.healthy?.(id))) {
        if (Date.now() > end) throw new Error("reconcile bench: first heartbeats took > 120 s");
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const controllerBefore = await ownMemory();
    const workerBefore = await workerMemory(sim);
    const cold = await rec.sweep();
    if (cold.errors > 0 || cold.heals > 0) {
      throw new Error(
        `reconcile bench: first sweep had ${cold.errors} errors, ${cold.heals} heals`,
      );
    }
    const calls0 = calls(sim.caller);
    const cpu0 = await cpuSeconds("self");
    const simCpu0 = await sim.simCpu();
    const workerCpu0 = await sim.workerCpu?.() ?? 0;
    const steady: number[] = [];
    for (let k = 0; k < 3; k++) {
      const s = await rec.sweep();
      if (s.errors > 0 || s.heals > 0) {
        throw new Error(
          `reconcile bench: a steady sweep had ${s.errors} errors, ${s.heals} heals`,
        );
      }
      steady.push(s.durationMs);
    }
    const cpu = (await cpuSeconds("self")) - cpu0;
    const simCpu = (await sim.simCpu()) - simCpu0;
    const workerCpu = (await sim.workerCpu?.() ?? 0) - workerCpu0;
    const callsPerSweep = (calls(sim.caller) - calls0) / 3;
    (globalThis as { gc?: () => void }).gc?.();
    const after = Deno.memoryUsage();
    const rssAfter = after.rss;
    const controllerAfter = await ownMemory();
    const worker = await sim.workerMemory?.() ?? null;
    if (mode === "fleet" && !worker) throw new Error("reconcile bench: the fleet worker is silent");
    const workerAfter = await workerMemory(sim);
    // Between sweeps: the fleet driver's heap release (controller/fleet/heap_release.ts) has had its moment.
    await new Promise((r) => setTimeout(r, 4000));
    const controllerRest = await ownMemory(false);
    const workerRest = await workerMemory(sim);

    // A peer removed on a node, behind the controller's back, until re-added.
    rec.start();
    await rec.idle();
    const healMs: number[] = [];
    for (let t = 0; t < (count > 0 ? HEAL_TRIALS : 0); t++) {
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
      connectMs,
      coldMs: cold.durationMs,
      steadyMs: percentile(steady, 50),
      rssBeforeMb: mb(rssBefore),
      rssAfterMb: mb(rssAfter),
      workerRssMb: mb(worker?.rss ?? 0),
      workerHeapUsedMb: mb(worker?.heapUsed ?? 0),
      workerHeapTotalMb: mb(worker?.heapTotal ?? 0),
      workerExternalMb: mb(worker?.external ?? 0),
      heapBeforeMb: mb(heapBefore),
      heapAfterMb: mb(after.heapUsed),
      heapTotalAfterMb: mb(after.heapTotal),
      simRssMb: sim.simRssMb,
      callsPerSweep,
      cpuPerSweepS: cpu / 3,
      simCpuPerSweepS: simCpu / 3,
      workerCpuPerSweepS: workerCpu / 3,
      healMs,
      controllerStart,
      controllerBefore,
      controllerAfter,
      controllerRest,
      workerBefore,
      workerAfter,
      workerRest,
    };
  } finally {
    await rec?.stop();
    await sim?.close();
    close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
