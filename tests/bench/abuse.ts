// deno-lint-ignore-file no-explicit-any
/**
 * The relay beside many idle connections: a legitimate device's unary p99
 * (1,500 calls paced at 150/s)
 * while 20,000 idle HTTP/2 connections (TLS and preface done, no stream)
 * sit on the same port, against the quiet p99 of the same run; and the
 * relay's resident memory per idle connection at 10,000.
 *
 * The relay runs as operators run it (`deno task relay run`) under
 * `prlimit --nofile=65536` (its caps: 40,960 connections, 1,024 per
 * source); the idle connections come from child processes (also under
 * prlimit: this process's own fd limit may be low and Deno cannot raise
 * it) spread over 25 loopback addresses. Where the hard fd limit is lower
 * than 65536 and cannot be raised (a container without CAP_SYS_RESOURCE),
 * the relay gets the hard limit and the idle count shrinks to what its
 * default caps admit; the figures name the count used.
 */
import { deriveCaps, smallPool } from "../../core/conn_limits.ts";
import type { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import { deviceClient, Flood, Proc, startRelayProcess, writeRelayDir } from "../support/abuse.ts";
import { startEchoBackend } from "../support/echo_backend.ts";
import { makeFleet } from "../support/pki_fixture.ts";
import { loopbackPorts, tunnelToRelay, unary } from "../support/relay_harness.ts";
import { type BenchModule, type Figure, figure, percentile } from "./harness.ts";

const CALLS = 1500;
const CALL_RATE = 150;
const RSS_AT = 10_000;

/** This process's hard RLIMIT_NOFILE (what prlimit may raise a child's limit to without privilege). */
function hardNofile(): number {
  const row = Deno.readTextFileSync("/proc/self/limits").split("\n")
    .find((l) => l.startsWith("Max open files"));
  const hard = row?.trim().split(/\s+/)[4];
  return hard === "unlimited" ? Infinity : Number(hard ?? 1024);
}

const NOFILE = Math.min(65_536, hardNofile());
/** 20,000, or what the relay's default caps admit under NOFILE (less its tunnel pool and slack). */
const IDLE = Math.min(
  20_000,
  Math.floor((deriveCaps(NOFILE).total - 2 * smallPool(deriveCaps(NOFILE).total) - 200) / 1000) *
    1000,
);

/** Resident memory of `pid` in bytes (Linux /proc). */
function rss(pid: number): number {
  const row = Deno.readTextFileSync(`/proc/${pid}/status`).split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(row?.match(/(\d+)/)?.[1] ?? NaN) * 1024;
}

/**
 * p99 of CALLS sequential unary calls, started at most CALL_RATE per second
 * (the relay's per-device call rate limit is 200/s; the latency, not the
 * limiter, is measured).
 */
async function p99(client: any): Promise<number> {
  const gap = 1000 / CALL_RATE;
  const paced = async (n: number, out?: number[]) => {
    let next = performance.now();
    for (let i = 0; i < n; i++) {
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      next += gap;
      const t = performance.now();
      await unary(client, "Unary", { text: "x" });
      out?.push(performance.now() - t);
    }
  };
  await paced(300); // warm-up
  const out: number[] = [];
  await paced(CALLS, out);
  return percentile(out, 99);
}

/** Idle h2 connections from 25 addresses 127.0.<first>.x, `count` of them; resolves once open. */
async function hold(port: number, count: number, first: number): Promise<Flood> {
  const sources = Array.from({ length: 25 }, (_, i) => `127.0.${first}.${i + 1}`);
  const f = new Flood({
    host: "127.0.0.1",
    port,
    kind: "h2",
    count,
    sources,
    concurrency: 128,
    connectTimeoutMs: 60_000,
    maxLifeMs: 30 * 60_000,
  }, NOFILE);
  const settled = await f.event("settled", 20 * 60_000);
  if (settled.open < count * 0.99) {
    throw new Error(
      `only ${settled.open} of ${count} idle connections open: ${JSON.stringify(settled)}`,
    );
  }
  return f;
}

/** Waits (bounded) for the relay's memory to settle after a burst: two equal-ish readings. */
async function settledRss(pid: number): Promise<number> {
  let last = rss(pid);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const now = rss(pid);
    if (Math.abs(now - last) < 256 * 1024) return now;
    last = now;
  }
  return last;
}

/**
 * Memory per idle connection of a bare node:http2 TLS server (no relay
 * logic) under the same limit and the same kind of connections: the
 * runtime's own cost, the floor for the relay's.
 */
async function bareServerPerConnection(dir: string): Promise<number> {
  const server = new Proc("prlimit", [
    `--nofile=${NOFILE}:${NOFILE}`,
    "--",
    Deno.execPath(),
    "run",
    "-A",
    new URL("./bare_h2_server.ts", import.meta.url).pathname,
    `${dir}/relay.crt`,
    `${dir}/relay.key`,
  ]);
  let flood: Flood | undefined;
  try {
    const ready = await server.waitFor(
      "stdout",
      (lines) => {
        const l = lines.find((x) => x.includes('"ready"'));
        return l ? JSON.parse(l) : undefined;
      },
      30_000,
      "the bare server",
    );
    const none = await settledRss(ready.pid);
    flood = await hold(ready.port, RSS_AT, 3);
    return (await settledRss(ready.pid) - none) / RSS_AT / 1024;
  } finally {
    await flood?.close().catch(() => {});
    await server.stop("SIGKILL");
  }
}

async function measure(): Promise<Figure[]> {
  const fleet = await makeFleet();
  const dir = await Deno.makeTempDir({ prefix: "pharos-bench-idle-" });
  const backend = await startEchoBackend(fleet);
  const floods: Flood[] = [];
  let tunnel: TunnelClient | undefined;
  let relay: Awaited<ReturnType<typeof startRelayProcess>> | undefined;
  let client: any;
  try {
    await writeRelayDir(fleet, dir);
    const device = await fleet.issue({ kind: "device", name: "bench" });
    relay = await startRelayProcess(dir, [
      ...loopbackPorts(),
      // The idle connections must outlive the measurement.
      "--idle-timeout",
      "1h",
    ], NOFILE);
    tunnel = await tunnelToRelay(fleet, backend, relay);
    client = deviceClient(fleet, device, relay.ports.client);
    const quiet = await p99(client);
    const rssNone = await settledRss(relay.pid);

    floods.push(await hold(relay.ports.client, RSS_AT, 1));
    const rss10k = await settledRss(relay.pid);
    if (IDLE > RSS_AT) floods.push(await hold(relay.ports.client, IDLE - RSS_AT, 2));
    const rss20k = await settledRss(relay.pid);
    const busy = await p99(client);
    if (!relay.proc.alive) throw new Error(`the relay died:\n${relay.proc.tail()}`);
    client.close();
    client = undefined;
    for (const f of floods.splice(0)) await f.close();
    await relay.proc.stop();
    const bare = await bareServerPerConnection(dir);

    const mb = (b: number) => b / 1024 / 1024;
    const per = (b: number, n: number) => (b - rssNone) / n / 1024;
    return [
      figure(
        `unary p99 via the relay beside ${IDLE.toLocaleString("en")} idle connections`,
        busy,
        "ms",
        "quiet p99 (same relay, no idle connections)",
        quiet,
        { lowerIsBetter: true, target: "≤ 2× quiet (ratio ≥ 0.5)" },
      ),
      figure(
        `relay memory per idle connection (RSS at ${RSS_AT.toLocaleString("en")})`,
        per(rss10k, RSS_AT),
        "KB",
        "bare node:http2 TLS server, same connections",
        bare,
        { lowerIsBetter: true, target: "≤ 40 KB" },
      ),
      figure(
        `relay RSS at ${IDLE.toLocaleString("en")} idle connections (${
          per(rss20k, IDLE).toFixed(1)
        } KB each)`,
        mb(rss20k),
        "MB",
        "relay RSS with none",
        mb(rssNone),
        { lowerIsBetter: true },
      ),
    ];
  } finally {
    client?.close();
    for (const f of floods) await f.close().catch(() => {});
    await tunnel?.stop();
    if (relay?.proc.alive) await relay.proc.stop();
    backend.close();
    await Deno.remove(dir, { recursive: true });
  }
}

export const idleConnectionsBench: BenchModule = {
  section: "Idle connections (relay)",
  notes:
    "The relay is a separate process (`deno task relay run` under prlimit --nofile=65536, default " +
    "caps: 40,960 connections, 1,024 per source address; where the hard fd limit is lower and " +
    "cannot be raised, that limit, and as many idle connections as the default caps admit, named " +
    "in the figures); the idle connections are real HTTP/2 " +
    "connections (TLS 1.3, preface and SETTINGS exchanged, no stream) from a child process spread " +
    "over 25 loopback addresses, the device's calls come from 127.0.0.1 through a reverse tunnel " +
    "to an Echo backend in the bench process. Per-connection memory is (RSS with N − RSS with " +
    "none) / N after the relay's memory settled.",
  async run() {
    return await measure();
  },
};
