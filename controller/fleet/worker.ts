/**
 * The parent's side of the gRPC worker process (worker_main.ts): starts it,
 * gives it the identity and the node list, forwards calls and hands back
 * answers and node events. When the worker dies (Deno's HTTP/2 client can
 * abort it, denoland/deno#36788) every call in flight rejects with the
 * retryable FleetError `worker-restarted`, and a new worker starts at once
 * (after a quick second death, with a backoff doubling to a cap) and gets
 * the last identity and node list again; nothing else is lost, since the
 * state lives in the database and the parent.
 */
import { fileURLToPath } from "node:url";
import type { Logger } from "../../core/log.ts";
import { FleetError } from "./errors.ts";
import {
  decodeBytes,
  encodeBytes,
  type FromWorker,
  readLines,
  type ToWorker,
  type WireError,
  type WorkerIdentity,
  type WorkerMemory,
  type WorkerNode,
} from "./wire.ts";

const WORKER = fileURLToPath(new URL("./worker_main.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

/**
 * V8 favours size over speed in the worker: with a connection per node its
 * heap otherwise grows to four times what it holds. Measured at 1,000 nodes
 * (tests/bench/reconcile.ts, back to back): worker RSS 440 → 193 MB, V8 heap
 * reserved 288 → 69 MB, for 0.95 → 2.2 s of worker CPU per sweep (a 30 s
 * interval: 4% of a core). --max-semi-space-size=1 instead let the old space
 * grow further.
 */
const WORKER_V8_FLAGS = "--optimize-for-size";

/** A worker that lived this long counts as stable: the next restart is immediate again. */
const STABLE_MS = 10_000;
const RESTART_BACKOFF_MIN_MS = 100;
const RESTART_BACKOFF_MAX_MS = 5_000;

export interface WorkerStats {
  /** Workers started (the first one included). */
  starts: number;
  /** Workers that died without being asked to (crashes, aborts, signals). */
  crashes: number;
  /** The last lines a crashed worker wrote on stderr (its abort message). */
  lastCrash: string | null;
  pid: number | null;
}

export interface WorkerHandlers {
  onEvent(nodeId: string, event: Record<string, unknown>): void;
  onWatch?(nodeId: string, state: "open" | "ended", reason?: string): void;
  /** A new worker is up (its connections are new: streams reopen). */
  onRestart?(): void;
}

interface Pending {
  resolve(v: Record<string, unknown>): void;
  reject(e: FleetError): void;
  timer: ReturnType<typeof setTimeout>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class WorkerSupervisor {
  readonly stats: WorkerStats = { starts: 0, crashes: 0, lastCrash: null, pid: null };
  #child: Deno.ChildProcess | null = null;
  #writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #ready: PromiseWithResolvers<void> = Promise.withResolvers();
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #identity: WorkerIdentity | null = null;
  #nodes: WorkerNode[] = [];
  #stopping = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;

  constructor(private readonly handlers: WorkerHandlers, private readonly log: Logger) {}

  /** Starts the first worker and keeps one running until stop(). */
  start(): void {
    this.#loop ??= this.#supervise();
  }

  setIdentity(identity: WorkerIdentity): void {
    this.#identity = identity;
    this.#send({ t: "identity", identity });
  }

  setNodes(nodes: WorkerNode[]): void {
    this.#nodes = nodes;
    this.#send({ t: "nodes", nodes });
  }

  /** Test hook: makes the current worker abort. */
  crash(): void {
    this.#send({ t: "crash" });
  }

  /** One unary call through the worker; rejects with a FleetError. */
  async call(
    nodeId: string,
    method: string,
    request: unknown,
    timeoutMs: number,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    // A worker being restarted: wait for it, within the call's own deadline.
    const ready = this.#ready.promise;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), timeoutMs));
    const waited = await Promise.race([ready.then(() => "ok" as const), late]);
    clearTimeout(timer);
    if (this.#stopping) throw new FleetError("stopped", "the fleet driver is stopped");
    if (waited === "late") {
      throw new FleetError(
        "worker-restarted",
        "the fleet driver's gRPC worker is restarting; retry the call",
      );
    }
    const id = this.#nextId++;
    const left = Math.max(1, deadline - Date.now());
    return await new Promise<Record<string, unknown>>((resolve, reject) => {
      // The worker answers at the gRPC deadline; this is only the backstop.
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new FleetError("timeout", `no answer from node ${nodeId} within ${timeoutMs} ms`));
      }, left + 2000);
      this.#pending.set(id, { resolve, reject, timer });
      if (!this.#writer) {
        // Died between its ready line and this call: nobody will answer.
        this.#pending.delete(id);
        clearTimeout(timer);
        return reject(
          new FleetError("worker-restarted", "the fleet driver's gRPC worker is restarting; retry"),
        );
      }
      this.#send({
        t: "call",
        id,
        nodeId,
        method,
        request: encodeBytes(request),
        timeoutMs: left,
      });
    });
  }

  /** The running worker's memory figures, or null when none answers within `timeoutMs`. */
  memory(timeoutMs = 5000): Promise<WorkerMemory | null> {
    if (!this.#writer) return Promise.resolve(null);
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(null);
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => resolve(v as unknown as WorkerMemory),
        reject: () => resolve(null),
        timer,
      });
      this.#send({ t: "memory", id });
    });
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#ready.resolve(); // callers waiting for a worker give up now
    this.#wake?.();
    const child = this.#child;
    try {
      await this.#writer?.close();
    } catch { /* gone */ }
    if (child) {
      const late = sleep(3000).then(() => "late" as const);
      if (await Promise.race([child.status, late]) === "late") {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }
    }
    await this.#loop;
    this.#failPending("stopped", "the fleet driver stopped");
  }

  #send(m: ToWorker): void {
    const w = this.#writer;
    if (!w) return; // the next worker gets the identity and nodes at its start
    w.write(new TextEncoder().encode(JSON.stringify(m) + "\n")).catch(() => {});
  }

  async #supervise(): Promise<void> {
    let backoff = RESTART_BACKOFF_MIN_MS;
    while (!this.#stopping) {
      const started = Date.now();
      await this.#runOnce();
      if (this.#stopping) break;
      if (Date.now() - started >= STABLE_MS) backoff = RESTART_BACKOFF_MIN_MS;
      else {
        // Quick deaths in a row: wait a little, doubling (bounded), then try again.
        await new Promise<void>((r) => {
          const t = setTimeout(r, backoff);
          this.#wake = () => (clearTimeout(t), r());
        });
        this.#wake = null;
        backoff = Math.min(backoff * 2, RESTART_BACKOFF_MAX_MS);
      }
    }
  }

  async #runOnce(): Promise<void> {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          "--allow-net",
          "--allow-read",
          "--allow-env",
          "--allow-sys",
          // malloc_trim through glibc (relay/host/heap_trim.ts)
          "--allow-ffi=/usr/lib,/lib,/usr/lib64,/lib64",
          `--v8-flags=${WORKER_V8_FLAGS}`,
          "--config",
          CONFIG,
          WORKER,
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      this.log.error("cannot start the fleet worker", { code: "fleet-worker-spawn", error: e });
      return;
    }
    this.#child = child;
    this.stats.starts++;
    this.stats.pid = child.pid;
    this.#writer = child.stdin.getWriter();
    const stderr: string[] = [];
    const errPump = (async () => {
      for await (const l of readLines(child.stderr)) {
        stderr.push(l);
        if (stderr.length > 20) stderr.shift();
      }
    })().catch(() => {});
    const outPump = (async () => {
      for await (const l of readLines(child.stdout)) this.#onLine(l);
    })().catch(() => {});
    if (this.#identity) this.#send({ t: "identity", identity: this.#identity });
    this.#send({ t: "nodes", nodes: this.#nodes });
    const status = await child.status;
    await Promise.all([outPump, errPump]);
    this.#writer = null;
    this.#child = null;
    this.stats.pid = null;
    if (this.#stopping) return;
    this.#ready = Promise.withResolvers();
    this.#failPending(
      "worker-restarted",
      "the fleet driver's gRPC worker died during the call (it is restarted); retry the call",
    );
    this.stats.crashes++;
    this.stats.lastCrash = stderr.slice(-3).join(" ").slice(-500) || null;
    this.log.error("fleet worker died; restarting it", {
      code: "fleet-worker-crashed",
      exit: status.signal ?? status.code,
      stderr: this.stats.lastCrash,
    });
  }

  #onLine(line: string): void {
    let m: FromWorker;
    try {
      m = JSON.parse(line) as FromWorker;
    } catch {
      this.log.warn("unreadable line from the fleet worker", { code: "fleet-worker-line" });
      return;
    }
    switch (m.t) {
      case "ready":
        this.#ready.resolve();
        if (this.stats.starts > 1) this.handlers.onRestart?.();
        break;
      case "reply": {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.ok) p.resolve(decodeBytes(m.response) as Record<string, unknown>);
        else p.reject(toFleetError(m.error));
        break;
      }
      case "memory": {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        clearTimeout(p.timer);
        p.resolve(m.usage as unknown as Record<string, unknown>);
        break;
      }
      case "event":
        this.handlers.onEvent(m.nodeId, decodeBytes(m.event) as Record<string, unknown>);
        break;
      case "watch":
        this.handlers.onWatch?.(m.nodeId, m.state, m.reason);
        break;
      case "log":
        this.log[m.level](m.msg, m.fields);
        break;
    }
  }

  #failPending(code: "worker-restarted" | "stopped", message: string): void {
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new FleetError(code, message));
      this.#pending.delete(id);
    }
  }
}

function toFleetError(e: WireError): FleetError {
  const known = [
    "unknown-node",
    "identity-mismatch",
    "unreachable",
    "timeout",
    "node-error",
  ] as const;
  const code = (known as readonly string[]).includes(e.code)
    ? e.code as typeof known[number]
    : "node-error";
  return new FleetError(code, e.message, e.grpcCode);
}
