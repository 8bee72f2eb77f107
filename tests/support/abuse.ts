// deno-lint-ignore-file no-explicit-any
/**
 * Helpers for the abuse suites: programs run as processes under a lowered
 * fd limit (`prlimit --nofile=N:N -- deno task …`), their output as lines
 * with bounded waits for a line, connection floods in a child process
 * (conn_flood.ts), and the open-descriptor count of a process.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { certPem } from "../../core/pki/mod.ts";
import { capability, hasCommand } from "./capability.ts";
import type { FloodPlan } from "./conn_flood.ts";
import { echoPkg } from "./echo_backend.ts";
import type { Fleet, IssuedLeaf } from "./pki_fixture.ts";
import { unary } from "./relay_harness.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;
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

/** A child process whose stdout and stderr are kept as lines, with bounded waits for a line. */
export class Proc {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly child: Deno.ChildProcess;
  /** Set once the process has exited. */
  exit: Deno.CommandStatus | null = null;
  readonly done: Promise<void>;
  #waiters = new Set<() => void>();
  #stdin?: WritableStreamDefaultWriter<Uint8Array>;

  constructor(
    cmd: string,
    args: string[],
    opts: { env?: Record<string, string>; stdin?: boolean } = {},
  ) {
    this.child = new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      env: opts.env,
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (opts.stdin) this.#stdin = this.child.stdin.getWriter();
    const pump = async (from: ReadableStream<Uint8Array>, into: string[]) => {
      let buf = "";
      for await (const chunk of from.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        const parts = buf.split("\n");
        buf = parts.pop()!;
        into.push(...parts);
        this.#wake();
      }
      if (buf) into.push(buf);
      this.#wake();
    };
    this.done = Promise.all([
      pump(this.child.stdout, this.stdout),
      pump(this.child.stderr, this.stderr),
      this.child.status.then((s) => {
        this.exit = s;
        this.#wake();
      }),
    ]).then(() => {});
  }

  get alive(): boolean {
    return this.exit === null;
  }

  #wake(): void {
    for (const w of this.#waiters) w();
  }

  /**
   * Waits (at most `ms`) until `find` returns something for the lines of
   * `stream` from index `from` on; fails naming `what` and the last lines.
   */
  async waitFor<T>(
    stream: "stdout" | "stderr",
    find: (lines: string[]) => T | undefined,
    ms: number,
    what: string,
  ): Promise<T> {
    const lines = this[stream];
    let timer: ReturnType<typeof setTimeout> | undefined;
    let wake!: () => void;
    try {
      const deadline = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
      while (true) {
        const hit = find(lines);
        if (hit !== undefined) return hit;
        if (!this.alive && this.exit) {
          // One more look: the last lines may have come with the exit.
          await this.done;
          const last = find(lines);
          if (last !== undefined) return last;
          throw new Error(`process exited (${this.exit.code}) before ${what}:\n${this.tail()}`);
        }
        const next = new Promise<"line">((r) => {
          wake = () => r("line");
          this.#waiters.add(wake);
        });
        const why = await Promise.race([next, deadline]);
        this.#waiters.delete(wake);
        if (why === "timeout") {
          const last = find(lines);
          if (last !== undefined) return last;
          throw new Error(`timed out after ${ms} ms waiting for ${what}:\n${this.tail()}`);
        }
      }
    } finally {
      clearTimeout(timer);
      this.#waiters.delete(wake);
    }
  }

  /** The first JSON log line on stderr (from index `from`) that `pred` accepts. */
  waitLog(pred: (l: any) => boolean, ms: number, what: string, from = 0): Promise<any> {
    return this.waitFor(
      "stderr",
      (lines) => {
        for (let i = from; i < lines.length; i++) {
          const l = parseJson(lines[i]);
          if (l && pred(l)) return l;
        }
        return undefined;
      },
      ms,
      what,
    );
  }

  /** JSON log lines on stderr. */
  logs(): any[] {
    return this.stderr.map(parseJson).filter((l) => l !== null);
  }

  async send(line: string): Promise<void> {
    await this.#stdin?.write(new TextEncoder().encode(line + "\n")).catch(() => {});
  }

  /** Sends `signal` (if still running) and waits (bounded) for the exit. */
  async stop(signal: Deno.Signal = "SIGTERM", ms = 30_000): Promise<Deno.CommandStatus> {
    await this.#stdin?.close().catch(() => {});
    if (this.alive) {
      try {
        this.child.kill(signal);
      } catch {
        // already gone
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((r) =>
      timer = setTimeout(() => {
        try {
          this.child.kill("SIGKILL");
        } catch {
          // already gone
        }
        r();
      }, ms)
    );
    await Promise.race([this.done, killed]);
    clearTimeout(timer);
    await this.done;
    return this.exit!;
  }

  tail(n = 15): string {
    return [...this.stderr.slice(-n), ...this.stdout.slice(-3)].join("\n");
  }
}

function parseJson(line: string): any {
  try {
    const v = JSON.parse(line);
    return typeof v === "object" && v !== null ? v : null;
  } catch {
    return null;
  }
}

/** `deno task --quiet <task> …` under `prlimit --nofile=N:N`. */
export function taskUnderLimit(
  task: string,
  args: string[],
  nofile: number,
  opts: { env?: Record<string, string> } = {},
): Proc {
  return new Proc("prlimit", [
    `--nofile=${nofile}:${nofile}`,
    "--",
    Deno.execPath(),
    "task",
    "--quiet",
    task,
    ...args,
  ], opts);
}

/** A relay process under an fd limit; resolves once it printed its ready line. */
export async function startRelayProcess(
  dir: string,
  args: string[],
  nofile: number,
): Promise<{ proc: Proc; ports: { client: number; tunnel: number; egress: number }; pid: number }> {
  const proc = taskUnderLimit("relay", ["run", "--dir", dir, ...args], nofile);
  try {
    const ready = await proc.waitFor(
      "stdout",
      (lines) => {
        const l = lines.map(parseJson).find((j) => j?.ready);
        return l ?? undefined;
      },
      60_000,
      "the relay's ready line",
    );
    return { proc, ports: ready.ports, pid: ready.pid };
  } catch (e) {
    await proc.stop();
    throw e;
  }
}

/** Writes a relay's key and certificates into `dir`. */
export async function writeRelayDir(fleet: Fleet, dir: string): Promise<IssuedLeaf> {
  const leaf = await fleet.issue({ kind: "relay", hosts: ["localhost", "127.0.0.1"] });
  await Deno.writeTextFile(`${dir}/relay.key`, leaf.keyPem);
  await Deno.writeTextFile(`${dir}/relay.crt`, leaf.chainPem);
  await Deno.writeTextFile(`${dir}/ca.crt`, fleet.rootPem);
  await Deno.writeTextFile(`${dir}/fleet-ca.crt`, certPem(fleet.pki.fleet.cert));
  await Deno.writeTextFile(`${dir}/device-ca.crt`, certPem(fleet.pki.device.cert));
  return leaf;
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

/** Child process ids of `pid` (Linux /proc; empty when unknown). */
export function childPids(pid: number): number[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)
      .filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Polls (bounded) until `cond` holds, for conditions with no event to wait
 * on (fd counts, a listener being rebuilt); `step` runs before each look.
 */
export async function eventually(
  cond: () => boolean,
  ms: number,
  what: string,
  step?: () => Promise<void>,
): Promise<void> {
  const end = Date.now() + ms;
  while (true) {
    await step?.();
    if (cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
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
export function fdsBackNear(pid: number, baselineFds: number, slack = 8): Promise<void> {
  return eventually(
    () => fdCount(pid) <= baselineFds + slack,
    30_000,
    `fds back near ${baselineFds}`,
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

/** A device's gRPC client for the Echo service at 127.0.0.1:port (source address 127.0.0.1). */
export function deviceClient(fleet: Fleet, device: IssuedLeaf | null, port: number): any {
  return new echoPkg.Echo(
    `localhost:${port}`,
    grpc.credentials.createSsl(
      Buffer.from(fleet.rootPem),
      device ? Buffer.from(device.keyPem) : null,
      device ? Buffer.from(device.chainPem) : null,
    ),
    { "grpc.enable_retries": 0 },
  );
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
