// deno-lint-ignore-file no-explicit-any
/**
 * Helpers for the abuse suites: programs run as processes under a lowered
 * fd limit (`prlimit --nofile=N:N -- deno task …`), their output as lines
 * with bounded waits for a line, connection floods in a child process
 * (conn_flood.ts), and the open-descriptor count of a process.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { capability, hasCommand } from "./capability.ts";
import type { FloodPlan } from "./conn_flood.ts";
import type { Fleet, IssuedLeaf } from "./pki_fixture.ts";
import { deviceClient, parseJson, Proc, unary } from "./relay_harness.ts";

export {
  deviceClient,
  Proc,
  ROOT,
  startRelayProcess,
  taskProc,
  writeRelayDir,
} from "./relay_harness.ts";

const FLOOD = new URL("./conn_flood.ts", import.meta.url).pathname;

/** The abuse suites need prlimit (util-linux) and a hard fd limit that lets the floods run. */
export function abuseCapability(suite: string) {
  const hard = Number(
    Deno.readTextFileSync("/proc/self/limits").split("\n")
      .find((l) => l.startsWith("Max open files"))?.trim().split(/\s+/)[4] ?? "0",
  );
  const ok = hasCommand("prlimit", ["--version"]) && (Deno.uid() === 0 || hard >= 8192);
  return capability(
    suite,
    ok,
    "needs prlimit (util-linux) and an open-files hard limit of at least 8192 (or root)",
  );
}

/** Loopback source addresses 127.0.0.<first> … (count of them). */
export function loopbackSources(first: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `127.0.0.${first + i}`);
}

/** A connection flood in its own process (conn_flood.ts). */
export class Flood {
  readonly proc: Proc;

  constructor(readonly plan: FloodPlan, nofile = 8192) {
    this.proc = new Proc("prlimit", [
      `--nofile=${nofile}:${nofile}`,
      "--",
      Deno.execPath(),
      "run",
      "-A",
      FLOOD,
      JSON.stringify(plan),
    ], { stdin: true });
  }

  /** The first report of `event` (bounded wait). */
  event(event: string, ms = 60_000): Promise<any> {
    return this.proc.waitFor(
      "stdout",
      (lines) => {
        const hit = lines.map(parseJson).find((l) => l?.event === event);
        return hit ?? undefined;
      },
      ms,
      `flood ${this.plan.kind} → ${this.plan.port}: "${event}"`,
    );
  }

  /** A fresh status report. */
  async status(ms = 30_000): Promise<any> {
    const seen = this.proc.stdout.length;
    await this.proc.send("status");
    return await this.proc.waitFor(
      "stdout",
      (lines) => {
        for (let i = seen; i < lines.length; i++) {
          const l = parseJson(lines[i]);
          if (l?.event === "status") return l;
        }
        return undefined;
      },
      ms,
      "a flood status report",
    );
  }

  /** Closes every connection and waits for the process to end. */
  async close(): Promise<void> {
    await this.proc.send("close");
    await this.proc.stop("SIGTERM", 20_000);
  }
}

/** Open descriptors of process `pid` (Linux /proc), or -1 when it is gone. */
export function fdCount(pid: number): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return -1;
  }
}

const TCP_STATES: Record<string, string> = {
  "01": "established",
  "02": "syn-sent",
  "03": "syn-recv",
  "04": "fin-wait1",
  "05": "fin-wait2",
  "06": "time-wait",
  "07": "close",
  "08": "close-wait",
  "09": "last-ack",
  "0A": "listen",
  "0B": "closing",
};

/** One TCP socket of /proc/net/tcp{,6}: its state and raw (hex) endpoints. */
interface TcpSocket {
  state: string;
  local: string;
  remote: string;
}

/** TCP sockets of this network namespace by inode. */
function tcpTable(): Map<string, TcpSocket> {
  const out = new Map<string, TcpSocket>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = Deno.readTextFileSync(table);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      out.set(f[9], { state: TCP_STATES[f[3]] ?? f[3], local: f[1], remote: f[2] });
    }
  }
  return out;
}

const portOf = (endpoint: string) => parseInt(endpoint.split(":")[1], 16);

/** TCP socket inode → "tcp state :local-port→:remote-port". */
function tcpSockets(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [inode, t] of tcpTable()) {
    out.set(inode, `tcp ${t.state} :${portOf(t.local)}→:${portOf(t.remote)}`);
  }
  return out;
}

/**
 * What the descriptors of `pid` are, counted by kind ("pipe", "anon_inode:[eventfd]",
 * "tcp established :443→:…", a file's path): for a failure message that says what leaked.
 */
export function fdKinds(pid: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  let tcp: Map<string, string> | undefined;
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      let target = "?";
      try {
        target = Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`);
      } catch { /* closed meanwhile */ }
      let kind = target.replace(/:\[\d+\]$/, "");
      const socket = /^socket:\[(\d+)\]$/.exec(target);
      if (socket) {
        tcp ??= tcpSockets();
        // Only the listening side's port is kept, so that many connections count as one kind.
        kind = tcp.get(socket[1])?.replace(/→:\d+$/, "") ?? "socket (not tcp)";
      }
      kinds[kind] = (kinds[kind] ?? 0) + 1;
    }
  } catch { /* the process is gone */ }
  return kinds;
}

/**
 * Connections (TCP sockets not listening) that `pid` holds on any of the
 * local `ports`: a flood's left-overs on the ports it attacked. `live` ones
 * have a peer socket in this network namespace; `orphaned` ones have none:
 * their peer went away without its FIN reaching them (a connect the kernel
 * completed while the listener's accept queue was full, accepted after the
 * flood's process had exited), so only the listener's own time limits can
 * end them.
 */
export function connectionsOn(pid: number, ports: number[]): { live: number; orphaned: number } {
  const table = tcpTable();
  const endpoints = new Set<string>();
  for (const t of table.values()) endpoints.add(`${t.local}>${t.remote}`);
  const out = { live: 0, orphaned: 0 };
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      let target = "";
      try {
        target = Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`);
      } catch {
        continue; // closed meanwhile
      }
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      const t = inode ? table.get(inode) : undefined;
      if (!t || t.state === "listen" || !ports.includes(portOf(t.local))) continue;
      if (endpoints.has(`${t.remote}>${t.local}`)) out.live++;
      else out.orphaned++;
    }
  } catch { /* the process is gone */ }
  return out;
}

/** Child process ids of `pid` (Linux /proc; empty when unknown). */
export function childPids(pid: number): number[] {
  // Each thread has its own children list: Deno spawns from more than the main thread.
  const out: number[] = [];
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const text = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`);
        out.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
      } catch { /* the thread ended meanwhile */ }
    }
  } catch { /* the process is gone */ }
  return out;
}

/**
 * Polls (bounded) until `cond` holds, for conditions with no event to wait
 * on (fd counts, a listener being rebuilt); `step` runs before each look.
 */
export async function eventually(
  cond: () => boolean,
  ms: number,
  what: string | (() => string),
  step?: () => Promise<void>,
): Promise<void> {
  const end = Date.now() + ms;
  while (true) {
    await step?.();
    if (cond()) return;
    if (Date.now() > end) {
      throw new Error(
        `timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`,
      );
    }
    await new Promise((r) => setTimeout(r, step ? 500 : 50));
  }
}

/**
 * Short time limits, yet with room for a busy machine: a flood's own TLS
 * and preface must get through before they apply.
 */
export const SHORT_LIMITS = [
  "--handshake-timeout",
  "3s",
  "--preface-timeout",
  "3s",
  "--idle-timeout",
  "3s",
];

/** Waits (30 s at most) until process `pid` holds at most `baselineFds + slack` descriptors. */
export function fdsBackNear(
  pid: number,
  baselineFds: number,
  slack = 8,
  explain?: { kinds: Record<string, number>; logs?: () => Record<string, number> },
): Promise<void> {
  let now = 0;
  return eventually(
    () => (now = fdCount(pid)) <= baselineFds + slack,
    30_000,
    () => {
      const kinds = fdKinds(pid);
      const changed = explain
        ? Object.fromEntries(
          Object.keys({ ...explain.kinds, ...kinds })
            .filter((k) => kinds[k] !== explain.kinds[k])
            .map((k) => [k, `${explain.kinds[k] ?? 0} → ${kinds[k] ?? 0}`]),
        )
        : kinds;
      return `fds back near ${baselineFds} (+${slack}; ${now} now; ` +
        `${explain ? "changed" : "kinds"}: ${JSON.stringify(changed)}` +
        `${explain?.logs ? `; log lines since: ${JSON.stringify(explain.logs())}` : ""})`;
    },
  );
}

/**
 * Floods whose every connection a listener's time limits must close: each
 * plan runs as a Flood from 127.0.0.1 … (kept in `floods` for tear-down),
 * all must settle with no failed attempt, then `during` runs, then each
 * flood must see all its connections closed by the peer; the floods are
 * then closed and the descriptors of `pid` must return near `baselineFds`.
 */
export async function floodsClosedByLimits(
  pid: number,
  baselineFds: number,
  plans: readonly Omit<FloodPlan, "host" | "concurrency">[],
  floods: Flood[],
  during: () => Promise<void>,
): Promise<void> {
  for (const p of plans) floods.push(new Flood({ host: "127.0.0.1", concurrency: 64, ...p }));
  const settled = await Promise.all(floods.map((f) => f.event("settled", 120_000)));
  for (const [i, r] of settled.entries()) {
    assert.equal(r.failed, 0, `${plans[i].kind}: ${JSON.stringify(r)}`);
  }
  await during();
  const closed = await Promise.all(floods.map((f) => f.event("all-closed", 60_000)));
  for (const [i, r] of closed.entries()) {
    assert.equal(r.peerClosed, plans[i].count, `${plans[i].kind}: ${JSON.stringify(r)}`);
  }
  for (const f of floods.splice(0)) await f.close();
  await fdsBackNear(pid, baselineFds);
}

/** One Echo call on a new client (a new connection), closed afterwards. */
export async function echoOnce(fleet: Fleet, device: IssuedLeaf, port: number, text: string) {
  const c = deviceClient(fleet, device, port);
  try {
    return (await unary(c, "Unary", { text })).res;
  } finally {
    c.close();
  }
}

/**
 * One Echo call on a new client that waits for the channel to connect
 * (gRPC wait-for-ready) up to `ms`: for a listener that is being rebuilt,
 * the call goes through as soon as it accepts again.
 */
export async function echoWhenReady(
  fleet: Fleet,
  device: IssuedLeaf,
  port: number,
  text: string,
  ms = 45_000,
): Promise<any> {
  const c = deviceClient(fleet, device, port);
  try {
    return await new Promise((resolve, reject) =>
      c.Unary(
        { text },
        new grpc.Metadata({ waitForReady: true }),
        { deadline: Date.now() + ms },
        (err: any, res: any) => (err ? reject(err) : resolve(res)),
      )
    );
  } finally {
    c.close();
  }
}

/** The last "connections" summary line (code conn-stats) of `listener`. */
export function lastStats(proc: Proc, listener: string): any {
  return proc.logs().filter((l) => l.code === "conn-stats" && l.listener === listener).at(-1);
}
