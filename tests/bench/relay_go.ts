/**
 * The remote relay against a Go baseline, both as separate processes in
 * front of the same backend, driven by the same Go client
 * (tests/support/go/h2proxy -load) in interleaved rounds:
 *
 * - direct: client → Echo backend (grpc-js, TLS, in this process);
 * - Go: client → h2proxy -proxy (net/http + httputil, TLS in, HTTP/2 over
 *   mutual TLS to the backend) → backend;
 * - ours: client → `deno task relay run` → reverse tunnel (opened by a
 *   TunnelClient in this process, as the controller does) → backend.
 *
 * Figures: unary calls/s with 32 concurrent callers (32 devices, one
 * connection each), bidi streaming MB/s (64 KiB messages, both directions
 * counted), the proxy process's CPU per call and per MB (/proc/PID/stat),
 * and its RSS idle, at peak (VmHWM) and settled after the load.
 */
import { createLogger } from "../../core/log.ts";
import { certPem } from "../../core/pki/mod.ts";
import { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import {
  Proc,
  type RelayProcess,
  relayReady,
  ROOT,
  startRelayProcess,
  writeRelayDir,
} from "../support/relay_harness.ts";
import { type EchoBackend, startEchoBackend } from "../support/echo_backend.ts";
import { buildGoPeer, goCommand } from "../support/go_peer.ts";
import { type Fleet, makeFleet } from "../support/pki_fixture.ts";
import { type BenchModule, type Figure, figure } from "./harness.ts";
import { decodeText } from "../../core/encoding.ts";

const ROUNDS = 3;
const CALLERS = 32;
const UNARY_MS = 2000;
const BIDI_MESSAGES = 400;
const BIDI_BYTES = 64 * 1024;
/** Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** CPU seconds (user + system) used so far by `pid`. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / USER_HZ; // utime, stime (fields 14, 15)
}

/** A VmXXX line of /proc/PID/status in bytes (VmRSS now, VmHWM peak). */
export function vm(pid: number, key: "VmRSS" | "VmHWM"): number {
  const row = Deno.readTextFileSync(`/proc/${pid}/status`).split("\n")
    .find((l) => l.startsWith(key + ":"));
  return Number(row?.match(/(\d+)/)?.[1] ?? NaN) * 1024;
}

/** RSS once two readings 0.5 s apart differ by less than 256 KiB (at most 10 s). */
export async function settledRss(pid: number): Promise<number> {
  let last = vm(pid, "VmRSS");
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const now = vm(pid, "VmRSS");
    if (Math.abs(now - last) < 256 * 1024) return now;
    last = now;
  }
  return last;
}

/** Where the load client connects, with what trust and which client certificates. */
export interface LoadTarget {
  port: number;
  serverName: string;
  caFile: string;
  certFiles: string[];
  keyFiles: string[];
}

export interface UnaryResult {
  calls: number;
  refused: number;
  seconds: number;
  calls_per_s: number;
}

export interface BidiResult {
  bytes: number;
  seconds: number;
  mbps: number;
}

/** CPU seconds `pid` used during the measured part of a load run. */
export interface Measured<T> {
  result: T;
  cpu: number;
}

/**
 * One run of the Go load client; `pid` (if any) is the proxy whose CPU time
 * is sampled from the client's "measuring" line (after warm-up) to its result
 * line. Throws with the client's stderr on failure.
 */
export async function goLoad(
  binary: string,
  t: LoadTarget,
  kind: "unary",
  ms: number,
  pid?: number,
): Promise<Measured<UnaryResult>>;
export async function goLoad(
  binary: string,
  t: LoadTarget,
  kind: "bidi",
  messages: number,
  pid?: number,
): Promise<Measured<BidiResult>>;
export async function goLoad(
  binary: string,
  t: LoadTarget,
  kind: "unary" | "bidi",
  amount: number,
  pid?: number,
): Promise<Measured<UnaryResult | BidiResult>> {
  const args = [
    "-load",
    kind,
    "-target",
    `127.0.0.1:${t.port}`,
    "-ca",
    t.caFile,
    "-name",
    t.serverName,
    "-cert",
    t.certFiles.join(","),
    "-key",
    t.keyFiles.join(","),
    ...(kind === "unary"
      ? ["-concurrency", String(CALLERS), "-ms", String(amount)]
      : ["-messages", String(amount), "-size", String(BIDI_BYTES)]),
  ];
  const child = new Deno.Command(binary, { args, stdout: "piped", stderr: "piped" }).spawn();
  const stderr = new Response(child.stderr).text();
  let cpu0 = NaN;
  let cpu1 = NaN;
  let last = "";
  let buf = "";
  for await (const text of decodeText(child.stdout)) {
    buf += text;
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line === "measuring") cpu0 = pid ? cpuSeconds(pid) : 0;
      else if (line.startsWith("{")) {
        cpu1 = pid ? cpuSeconds(pid) : 0;
        last = line;
      }
    }
  }
  const status = await child.status;
  if (!status.success || last === "") {
    throw new Error(`go load client (${kind}) failed (exit ${status.code}): ${await stderr}`);
  }
  await stderr;
  return { result: JSON.parse(last), cpu: cpu1 - cpu0 };
}

/** The Go reverse proxy in front of `backendPort`; resolves once it listens. */
async function startGoProxy(
  binary: string,
  dir: string,
  backendPort: number,
): Promise<{ child: Deno.ChildProcess; port: number; stop(): Promise<void> }> {
  const child = new Deno.Command(binary, {
    args: [
      "-proxy",
      "-cert",
      `${dir}/relay.crt`,
      "-key",
      `${dir}/relay.key`,
      "-client-ca",
      `${dir}/device-ca.crt`,
      "-backend",
      `127.0.0.1:${backendPort}`,
      "-backend-ca",
      `${dir}/ca.crt`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = child.stdin.getWriter();
  const stop = async () => {
    await stdin.close().catch(() => {});
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await child.status;
    clearTimeout(t);
  };
  const reader = decodeText(child.stdout).getReader();
  let text = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    while (!/listening (\d+)\n/.test(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`h2proxy exited before listening: ${text}`);
      text += value;
    }
  } catch (e) {
    await stop();
    throw e;
  } finally {
    clearTimeout(timer);
  }
  void reader.read().then(function drain(r): unknown {
    return r.done ? undefined : reader.read().then(drain);
  }).catch(() => {});
  return { child, port: Number(/listening (\d+)/.exec(text)![1]), stop };
}

/** The remote relay in its own process, with a controller tunnel to `backend`. */
export interface RelayRig {
  fleet: Fleet;
  dir: string;
  backend: EchoBackend;
  relay: RelayProcess;
  tunnel: TunnelClient;
  /** 32 device certificates and keys, as files, for the load client. */
  devices: { certFiles: string[]; keyFiles: string[] };
  close(): Promise<void>;
}

/**
 * `denoFlags` (e.g. `--cpu-prof`) runs the relay with `deno run FLAGS` and the
 * relay task's permissions instead of `deno task relay` (for profiling).
 * `takesPlain: false` makes the controller side behave as the original one
 * (no plain HTTP/2 announced): the relay keeps the inner TLS.
 */
export async function startRelayRig(
  deviceCount = CALLERS,
  opts: { denoFlags?: string[]; takesPlain?: boolean } = {},
): Promise<RelayRig> {
  const denoFlags = opts.denoFlags ?? [];
  const fleet = await makeFleet();
  const dir = await Deno.makeTempDir({ prefix: "pharos-bench-relay-go-" });
  const backend = await startEchoBackend(fleet);
  let relay: RelayProcess | undefined;
  let tunnel: TunnelClient | undefined;
  const close = async () => {
    await tunnel?.stop();
    if (relay?.proc.alive) await relay.proc.stop();
    backend.close();
    await Deno.remove(dir, { recursive: true });
  };
  try {
    await writeRelayDir(fleet, dir);
    const devices = { certFiles: [] as string[], keyFiles: [] as string[] };
    for (let i = 0; i < deviceCount; i++) {
      const d = await fleet.issue({ kind: "device", name: `bench-${i}` });
      await Deno.writeTextFile(`${dir}/device-${i}.crt`, d.chainPem);
      await Deno.writeTextFile(`${dir}/device-${i}.key`, d.keyPem);
      devices.certFiles.push(`${dir}/device-${i}.crt`);
      devices.keyFiles.push(`${dir}/device-${i}.key`);
    }
    const args = [
      "--client-addr",
      "127.0.0.1:0",
      "--tunnel-addr",
      "127.0.0.1:0",
      "--egress-addr",
      "off",
    ];
    relay = denoFlags.length === 0
      ? await startRelayProcess(dir, args, 4096)
      : await startRelayWith(denoFlags, dir, args);
    const ctl = await fleet.issue({ kind: "controller-client" });
    const t = new TunnelClient({
      target: { host: "127.0.0.1", port: relay.ports.tunnel, serverName: "127.0.0.1" },
      identity: {
        certPem: ctl.chainPem,
        keyPem: ctl.keyPem,
        caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
        trust: fleet.trust,
      },
      accept: (c) => backend.accept(c),
      acceptPlain: opts.takesPlain === false ? undefined : (c) => backend.acceptInProcess(c),
      policy: () => ({ v: 1, revision: Date.now(), revoked_serials: [], egress_allow: [] }),
      log: createLogger("ctl", { sink: () => {} }),
    });
    tunnel = t;
    t.start();
    await t.whenUp();
    await relay.proc.waitLog((l) => l.msg === "controller tunnel up", 30_000, "the tunnel");
    // The first backend session must see the policy (plain HTTP/2 or not).
    await relay.proc.waitLog((l) => l.msg === "policy applied", 30_000, "the policy");
    return { fleet, dir, backend, relay, tunnel: t, devices, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The relay started like `deno task relay run`, with extra Deno flags. */
async function startRelayWith(
  denoFlags: string[],
  dir: string,
  args: string[],
): Promise<RelayProcess> {
  const task = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).tasks.relay as string;
  const perms = task.split(" ").filter((a) => a.startsWith("--allow-"));
  const proc = new Proc(Deno.execPath(), [
    "run",
    ...perms,
    ...denoFlags,
    `${ROOT}/relay/main.ts`,
    "run",
    "--dir",
    dir,
    ...args,
  ]);
  return await relayReady(proc);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Samples {
  calls: number[];
  refused: number[];
  mbps: number[];
  cpuPerCall: number[];
  cpuPerMb: number[];
}

const samples = (): Samples => ({ calls: [], refused: [], mbps: [], cpuPerCall: [], cpuPerMb: [] });

type Kind = "direct" | "go" | "ours" | "oursTls" | "oursSmallYoung";

/** V8 flag tried against the relay's memory: a 2 MiB young-generation semi-space (default 16). */
const SMALL_YOUNG = "--v8-flags=--max-semi-space-size=2";

async function measure(): Promise<Figure[]> {
  if (goCommand() === null) {
    console.error("!!! relay-go bench: no Go toolchain; the Go baseline is left out");
    return [];
  }
  const go = await buildGoPeer("h2proxy");
  const rig = await startRelayRig();
  let rigTls: RelayRig | undefined;
  let rigSmall: RelayRig | undefined;
  let proxy: Awaited<ReturnType<typeof startGoProxy>> | undefined;
  try {
    // The same relay with a controller that does not announce plain HTTP/2 (as the
    // original does): the inner TLS stays, as before this benchmark's changes.
    rigTls = await startRelayRig(CALLERS, { takesPlain: false });
    // And the relay run with SMALL_YOUNG (the relay task's permissions, `deno run`).
    rigSmall = await startRelayRig(CALLERS, { denoFlags: [SMALL_YOUNG] });
    const backendPort = await rig.backend.listenTcp();
    proxy = await startGoProxy(go, rig.dir, backendPort);
    const pids = {
      ours: rig.relay.pid,
      oursTls: rigTls.relay.pid,
      oursSmallYoung: rigSmall.relay.pid,
      go: proxy.child.pid,
    };
    const idle = { ours: await settledRss(pids.ours), go: await settledRss(pids.go) };
    const device = (r: RelayRig, port: number, pid: number) => ({
      port,
      serverName: "localhost",
      caFile: `${r.dir}/ca.crt`,
      ...r.devices,
      pid,
    });
    const targets: Record<Kind, LoadTarget & { pid?: number }> = {
      direct: {
        port: backendPort,
        serverName: "coxswain-grpc",
        caFile: `${rig.dir}/ca.crt`,
        certFiles: [`${rig.dir}/relay.crt`],
        keyFiles: [`${rig.dir}/relay.key`],
      },
      go: device(rig, proxy.port, pids.go),
      ours: device(rig, rig.relay.ports.client, pids.ours),
      oursTls: device(rigTls, rigTls.relay.ports.client, pids.oursTls),
      oursSmallYoung: device(rigSmall, rigSmall.relay.ports.client, pids.oursSmallYoung),
    };
    const runs: Record<Kind, Samples> = {
      direct: samples(),
      go: samples(),
      ours: samples(),
      oursTls: samples(),
      oursSmallYoung: samples(),
    };
    const order: Kind[] = ["direct", "go", "ours", "oursTls", "oursSmallYoung"];
    for (let round = 0; round < ROUNDS; round++) {
      for (const k of order) {
        const t = targets[k];
        const { result: r, cpu } = await goLoad(go, t, "unary", UNARY_MS, t.pid);
        runs[k].calls.push(r.calls_per_s);
        runs[k].refused.push(r.refused);
        if (t.pid) runs[k].cpuPerCall.push(cpu / r.calls);
      }
      for (const k of order) {
        const t = targets[k];
        const { result: r, cpu } = await goLoad(go, t, "bidi", BIDI_MESSAGES, t.pid);
        runs[k].mbps.push(r.mbps);
        if (t.pid) runs[k].cpuPerMb.push(cpu / (r.bytes / 1e6));
      }
    }
    const peak = {
      ours: vm(pids.ours, "VmHWM"),
      small: vm(pids.oursSmallYoung, "VmHWM"),
      go: vm(pids.go, "VmHWM"),
    };
    const settled = {
      ours: await settledRss(pids.ours),
      small: await settledRss(pids.oursSmallYoung),
      go: await settledRss(pids.go),
    };
    for (const r of [rig, rigTls, rigSmall]) {
      if (!r.relay.proc.alive) throw new Error(`a relay died:\n${r.relay.proc.tail()}`);
    }
    const m = (k: Kind, f: keyof Samples) => median(runs[k][f]);
    const refused = [...runs.ours.refused, ...runs.oursTls.refused, ...runs.oursSmallYoung.refused]
      .reduce((a, b) => a + b, 0);
    if (refused > 0) console.error(`relay-go bench: the relays refused ${refused} unary calls`);
    const us = (s: number) => s * 1e6;
    const ms = (s: number) => s * 1e3;
    const mb = (b: number) => b / 1024 / 1024;
    const TLS = "inner TLS, as with an original controller";
    return [
      figure(
        `unary calls/s, ${CALLERS} callers, via our relay`,
        m("ours", "calls"),
        "calls/s",
        "Go h2proxy",
        m("go", "calls"),
        { target: "≥ 0.8× Go" },
      ),
      figure(
        `unary calls/s via our relay (${TLS})`,
        m("oursTls", "calls"),
        "calls/s",
        "Go h2proxy",
        m("go", "calls"),
      ),
      figure(
        `unary calls/s, ${CALLERS} callers, via our relay (ours/direct)`,
        m("ours", "calls"),
        "calls/s",
        "direct TLS to the backend",
        m("direct", "calls"),
      ),
      figure(
        "unary calls/s via the Go h2proxy (Go/direct)",
        m("go", "calls"),
        "calls/s",
        "direct TLS to the backend",
        m("direct", "calls"),
      ),
      figure(
        "bidi streaming via our relay (64 KiB messages)",
        m("ours", "mbps"),
        "MB/s",
        "Go h2proxy",
        m("go", "mbps"),
        { target: "≥ 0.8× Go" },
      ),
      figure(
        `bidi streaming via our relay (${TLS})`,
        m("oursTls", "mbps"),
        "MB/s",
        "Go h2proxy",
        m("go", "mbps"),
      ),
      figure(
        "bidi streaming via our relay (ours/direct)",
        m("ours", "mbps"),
        "MB/s",
        "direct TLS to the backend",
        m("direct", "mbps"),
        { target: "≥ 0.8× direct" },
      ),
      figure(
        "bidi streaming via the Go h2proxy (Go/direct)",
        m("go", "mbps"),
        "MB/s",
        "direct TLS to the backend",
        m("direct", "mbps"),
      ),
      figure(
        "relay CPU per unary call",
        us(m("ours", "cpuPerCall")),
        "µs",
        "Go h2proxy",
        us(m("go", "cpuPerCall")),
        { lowerIsBetter: true, target: "≤ 1.5× Go (ratio ≥ 0.67)" },
      ),
      figure(
        `relay CPU per unary call (${TLS})`,
        us(m("oursTls", "cpuPerCall")),
        "µs",
        "Go h2proxy",
        us(m("go", "cpuPerCall")),
        { lowerIsBetter: true },
      ),
      figure(
        "relay CPU per streamed MB",
        ms(m("ours", "cpuPerMb")),
        "ms",
        "Go h2proxy",
        ms(m("go", "cpuPerMb")),
        { lowerIsBetter: true },
      ),
      figure(
        `relay CPU per streamed MB (${TLS})`,
        ms(m("oursTls", "cpuPerMb")),
        "ms",
        "Go h2proxy",
        ms(m("go", "cpuPerMb")),
        { lowerIsBetter: true },
      ),
      figure("relay RSS idle, tunnel up", mb(idle.ours), "MB", "Go h2proxy idle", mb(idle.go), {
        lowerIsBetter: true,
      }),
      figure("relay peak RSS under load (VmHWM)", mb(peak.ours), "MB", "Go h2proxy", mb(peak.go), {
        lowerIsBetter: true,
        target: "≤ 3× Go (ratio ≥ 0.33)",
      }),
      figure("relay RSS settled after load", mb(settled.ours), "MB", "Go h2proxy", mb(settled.go), {
        lowerIsBetter: true,
      }),
      figure(
        `relay peak RSS under load, ${SMALL_YOUNG}`,
        mb(peak.small),
        "MB",
        "Go h2proxy",
        mb(peak.go),
        { lowerIsBetter: true, target: "≤ 3× Go (ratio ≥ 0.33)" },
      ),
      figure(
        `relay RSS settled after load, ${SMALL_YOUNG}`,
        mb(settled.small),
        "MB",
        "Go h2proxy",
        mb(settled.go),
        { lowerIsBetter: true },
      ),
      figure(
        `unary calls/s via our relay, ${SMALL_YOUNG}`,
        m("oursSmallYoung", "calls"),
        "calls/s",
        "Go h2proxy",
        m("go", "calls"),
      ),
      figure(
        `relay CPU per unary call, ${SMALL_YOUNG}`,
        us(m("oursSmallYoung", "cpuPerCall")),
        "µs",
        "Go h2proxy",
        us(m("go", "cpuPerCall")),
        { lowerIsBetter: true },
      ),
      figure(
        `relay CPU per streamed MB, ${SMALL_YOUNG}`,
        ms(m("oursSmallYoung", "cpuPerMb")),
        "ms",
        "Go h2proxy",
        ms(m("go", "cpuPerMb")),
        { lowerIsBetter: true },
      ),
    ];
  } finally {
    await proxy?.stop();
    await rigSmall?.close();
    await rigTls?.close();
    await rig.close();
  }
}

export const relayGoBench: BenchModule = {
  section: "Relay-Go baseline",
  notes: "Our relay (`deno task relay run`, reached through a reverse tunnel the bench process " +
    "opens as the controller does) and a Go HTTP/2 reverse proxy (tests/support/go/h2proxy: " +
    "net/http + httputil, TLS in, HTTP/2 over mutual TLS to the backend) each run as their own " +
    "process in front of the same grpc-js Echo backend (in the bench process); the same Go " +
    `client drives both and the backend directly, interleaved, median of ${ROUNDS} rounds. ` +
    'The "inner TLS" rows are a second relay process whose controller does not announce ' +
    "plain HTTP/2 (what an original controller gets, and what every tunnel ran before): " +
    'each substream then carries TLS 1.3 inside the tunnel\'s TLS. The "max-semi-space-size" rows ' +
    "are a third relay process run with that V8 flag (young generation 2 MiB instead of 16 MiB), " +
    "a candidate for the relay task. " +
    `Unary: ${CALLERS} callers for ${UNARY_MS / 1000} s, each its own device certificate and ` +
    `connection (the relay limits calls per device). Streaming: one Bidi call, ${BIDI_MESSAGES} ` +
    "messages of 64 KiB each way, both directions counted. CPU is the proxy process's user+system " +
    "time from /proc/PID/stat (10 ms ticks) over the measured part (after the client's connections and warm-up calls); RSS idle and settled are VmRSS once " +
    "steady, peak is VmHWM. 2 shared cores: read the ratios, not the absolute figures.",
  run: measure,
};
