// deno-lint-ignore-file no-explicit-any
/**
 * Wires a fleet, an Echo backend and a relay together for relay tests: in
 * this process (relayHarness), or as the `relay` program in its own process
 * (startRelayProcess) that a controller-side tunnel (tunnelToRelay) serves.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createLogger } from "../../core/log.ts";
import { certPem, RevocationList } from "../../core/pki/mod.ts";
import { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import { type RunningRelay, startRelay } from "../../relay/relay.ts";
import type { BackendTransport } from "../../relay/transport.ts";
import { type EchoBackend, echoPkg, startEchoBackend } from "./echo_backend.ts";
import { type Fleet, type IssuedLeaf, makeFleet } from "./pki_fixture.ts";
import { WAIT_MS, within } from "./wait.ts";
import { decodeText } from "../../core/encoding.ts";
import { describeExit } from "./runtime_crash.ts";

export interface Harness {
  fleet: Fleet;
  backend: Awaited<ReturnType<typeof startEchoBackend>>;
  relay: RunningRelay;
  revoked: RevocationList;
  relayLeaf: IssuedLeaf;
  device: IssuedLeaf;
  logs: string[];
  client(leaf?: IssuedLeaf | null): any;
  close(): Promise<void>;
}

/** Builds the harness; `transport` gets the backend's accept function. */
export async function relayHarness(
  makeTransport: (
    accept: (c: import("node:stream").Duplex) => void,
    fleet: Fleet,
    relayLeaf: IssuedLeaf,
    acceptInProcess: (c: import("node:stream").Duplex) => void,
  ) => Promise<BackendTransport>,
  opts: { maxMessageBytes?: number; handshakeTimeoutMs?: number } = {},
): Promise<Harness> {
  const fleet = await makeFleet();
  const backend = await startEchoBackend(fleet);
  const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["localhost", "127.0.0.1"] });
  const device = await fleet.issue({ kind: "device", name: "test phone" });
  const revoked = new RevocationList();
  const logs: string[] = [];
  const transport = await within(
    makeTransport(
      (c) => backend.accept(c),
      fleet,
      relayLeaf,
      (c) => backend.acceptInProcess(c),
    ),
    WAIT_MS,
    "the relay's transport to the controller",
  );
  const relay = await within(
    startRelay({
      listen: { hostname: "127.0.0.1", port: 0 },
      certPem: relayLeaf.chainPem,
      keyPem: relayLeaf.keyPem,
      caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
      deviceCaPem: certPem(fleet.pki.device.cert),
      trust: fleet.trust,
      revoked,
      transport,
      log: createLogger("relay", { sink: (l) => logs.push(l) }),
      maxMessageBytes: opts.maxMessageBytes,
      handshakeTimeoutMs: opts.handshakeTimeoutMs,
    }),
    WAIT_MS,
    "the relay to start",
  );
  const clients: any[] = [];
  return {
    fleet,
    backend,
    relay,
    revoked,
    relayLeaf,
    device,
    logs,
    client(leaf = device) {
      const creds = grpc.credentials.createSsl(
        Buffer.from(fleet.rootPem),
        leaf ? Buffer.from(leaf.keyPem) : null,
        leaf ? Buffer.from(leaf.chainPem) : null,
      );
      const c = new echoPkg.Echo(`localhost:${relay.port}`, creds, {
        "grpc.max_receive_message_length": 32 * 1024 * 1024,
        "grpc.max_send_message_length": 32 * 1024 * 1024,
        "grpc.enable_retries": 0,
      });
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await within(relay.close(), WAIT_MS, "the relay to close");
      await within(transport.close?.() ?? Promise.resolve(), WAIT_MS, "the transport to close");
      backend.close();
    },
  };
}

/** Deadline of a test's gRPC call: generous, so load never trips it. */
export const CALL_DEADLINE_MS = 10_000;

/** A deadline `ms` from now, for the call options of a gRPC call in a test. */
export function deadline(ms = CALL_DEADLINE_MS): { deadline: number } {
  return { deadline: Date.now() + ms };
}

/** Promise wrapper of a unary call, with a deadline (and a bound on its status past it). */
export function unary(
  client: any,
  method: string,
  req: unknown,
  md = new grpc.Metadata(),
): Promise<any> {
  const call = new Promise<any>((resolve, reject) => {
    let result: { err: any; res: any } | undefined;
    let status: grpc.StatusObject | undefined;
    const settle = () => {
      if (!result || !status) return;
      if (result.err) reject(result.err);
      else resolve({ res: result.res, trailers: status.metadata.getMap() });
    };
    const call = client[method](
      req,
      md,
      deadline(),
      (err: any, res: any) => {
        result = { err, res };
        settle();
      },
    );
    call.on("status", (s: grpc.StatusObject) => {
      status = s;
      settle();
    });
  });
  return within(call, CALL_DEADLINE_MS + WAIT_MS, `the ${method} call's answer and status`);
}

export const ROOT = new URL("../../", import.meta.url).pathname;

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
      for await (const chunk of decodeText(from)) {
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
          throw new Error(
            `process exited (${
              describeExit(this.exit, this.tail())
            }) before ${what}:\n${this.tail()}`,
          );
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

/** A JSON object from one line, or null. */
export function parseJson(line: string): any {
  try {
    const v = JSON.parse(line);
    return typeof v === "object" && v !== null ? v : null;
  } catch {
    return null;
  }
}

/**
 * `deno task --quiet <task> …` (exactly what operators run, with the task's
 * permissions), under `prlimit --nofile=N:N` when `nofile` is given.
 */
export function taskProc(
  task: string,
  args: string[],
  opts: { nofile?: number; env?: Record<string, string> } = {},
): Proc {
  const deno = [Deno.execPath(), "task", "--quiet", task, ...args];
  if (opts.nofile === undefined) return new Proc(deno[0], deno.slice(1), { env: opts.env });
  return new Proc("prlimit", [`--nofile=${opts.nofile}:${opts.nofile}`, "--", ...deno], {
    env: opts.env,
  });
}

/** `relay run` flags that put every listener on a free loopback port (egress off unless asked). */
export function loopbackPorts(egress = false): string[] {
  return [
    "--client-addr",
    "127.0.0.1:0",
    "--tunnel-addr",
    "127.0.0.1:0",
    "--egress-addr",
    egress ? "127.0.0.1:0" : "off",
  ];
}

/** A `relay run` process that printed its ready line. */
export interface RelayProcess {
  proc: Proc;
  /** (egress is null at run time when started with `--egress-addr off`) */
  ports: { client: number; tunnel: number; egress: number };
  /** The relay's own pid (not the task runner's): for /proc. */
  pid: number;
  ready: any;
}

/**
 * `relay run [--dir DIR] ARGS` (the `relay` task); resolves once it printed
 * its ready line, fails (bounded) naming its last lines if it does not.
 */
export async function startRelayProcess(
  dir: string | null,
  args: string[],
  nofile?: number,
  env?: Record<string, string>,
): Promise<RelayProcess> {
  const proc = taskProc("relay", ["run", ...(dir === null ? [] : ["--dir", dir]), ...args], {
    nofile,
    env,
  });
  return await relayReady(proc);
}

/** Waits for a started `relay run` process's ready line (stops the process when none comes). */
export async function relayReady(proc: Proc): Promise<RelayProcess> {
  try {
    const ready = await proc.waitFor(
      "stdout",
      (lines) => lines.map(parseJson).find((j) => j?.ready) ?? undefined,
      60_000,
      "the relay's ready line",
    );
    return { proc, ports: ready.ports, pid: ready.pid, ready };
  } catch (e) {
    await proc.stop();
    throw e;
  }
}

/** Writes a relay's key and certificates (a new relay leaf unless `leaf` is given) into `dir`. */
export async function writeRelayDir(
  fleet: Fleet,
  dir: string,
  leaf?: IssuedLeaf,
): Promise<IssuedLeaf> {
  leaf ??= await fleet.issue({ kind: "relay", hosts: ["localhost", "127.0.0.1"] });
  await Deno.writeTextFile(`${dir}/relay.key`, leaf.keyPem);
  await Deno.writeTextFile(`${dir}/relay.crt`, leaf.chainPem);
  await writeRelayTrust(fleet, dir);
  return leaf;
}

/** Writes the CA certificates a relay trusts (root, Fleet CA, Device CA) into `dir`. */
export async function writeRelayTrust(fleet: Fleet, dir: string): Promise<void> {
  await Deno.writeTextFile(`${dir}/ca.crt`, fleet.rootPem);
  await Deno.writeTextFile(`${dir}/fleet-ca.crt`, certPem(fleet.pki.fleet.cert));
  await Deno.writeTextFile(`${dir}/device-ca.crt`, certPem(fleet.pki.device.cert));
}

/**
 * The controller's side of a relay process: a TunnelClient dialing its
 * tunnel port and serving `echo` through it; resolves once the tunnel is up
 * at both ends (the relay logged "controller tunnel up").
 */
export async function tunnelToRelay(
  fleet: Fleet,
  echo: EchoBackend,
  relay: RelayProcess,
): Promise<TunnelClient> {
  const ctl = await fleet.issue({ kind: "controller-client" });
  const tunnel = new TunnelClient({
    target: { host: "127.0.0.1", port: relay.ports.tunnel },
    identity: {
      certPem: ctl.chainPem,
      keyPem: ctl.keyPem,
      caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
      trust: fleet.trust,
    },
    accept: (c) => echo.accept(c),
    policy: () => ({ v: 1, revision: Date.now(), revoked_serials: [], egress_allow: [] }),
    log: createLogger("ctl", { sink: () => {} }),
    backoff: { initialMs: 200, maxMs: 1000, stableMs: 5000 },
  });
  tunnel.start();
  try {
    await within(tunnel.whenUp(), WAIT_MS, "the controller's tunnel to come up");
    await relay.proc.waitLog(
      (l) => l.msg === "controller tunnel up",
      WAIT_MS,
      'the relay\'s "controller tunnel up"',
    );
  } catch (e) {
    await within(tunnel.stop(), WAIT_MS, "the controller's TunnelClient.stop()");
    throw e;
  }
  return tunnel;
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
