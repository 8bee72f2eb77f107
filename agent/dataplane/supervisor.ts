/**
 * Runs one long-lived data-plane program (wireguard-go, amneziawg-go,
 * xray) and restarts it when it dies, with exponential backoff (reset once
 * a run lasted long enough). Its stderr/stdout lines go to the agent's log,
 * one JSON line each, shortened. Stopping is bounded: SIGTERM, then SIGKILL.
 */
import type { Logger } from "../../core/log.ts";
import { checkArgv } from "../exec.ts";
import { decodeText } from "../../core/encoding.ts";

export interface SupervisorOptions {
  /** Short name for logs, e.g. "wireguard-go awg0". */
  name: string;
  argv: readonly string[];
  env?: Record<string, string>;
  log: Logger;
  /** Absolute program paths allowed besides the standard ones (a configured xray). */
  extraPrograms?: ReadonlySet<string>;
  /** First restart delay; doubled per consecutive crash up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A run at least this long resets the backoff. */
  stableMs?: number;
  /** Called after every exit that was not asked for (before the restart delay). */
  onCrash?: (status: Deno.CommandStatus) => void;
  /** Called after every automatic restart (the program is running again). */
  onRestart?: () => void;
}

const MAX_LOG_LINE = 400;

export class Supervisor {
  #child: Deno.ChildProcess | null = null;
  #stopping = false;
  #backoff: number;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #exited: Promise<void> = Promise.resolve();
  #starts = 0;

  constructor(readonly opts: SupervisorOptions) {
    checkArgv(opts.argv, opts.extraPrograms);
    this.#backoff = opts.initialBackoffMs ?? 500;
  }

  /** Number of times the program was started. */
  get starts(): number {
    return this.#starts;
  }

  get running(): boolean {
    return this.#child !== null;
  }

  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** Starts the program (throws if it cannot be spawned at all, e.g. not installed). */
  start(): void {
    this.#stopping = false;
    this.#spawn();
  }

  #spawn(): void {
    const { argv, log, name } = this.opts;
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      env: this.opts.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#starts++;
    const started = Date.now();
    log.info("data-plane program started", {
      code: "process-started",
      program: name,
      pid: child.pid,
    });
    const pump = (stream: ReadableStream<Uint8Array>) =>
      (async () => {
        let buf = "";
        for await (const text of decodeText(stream)) {
          buf += text;
          for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line) {
              log.debug("program output", {
                code: "process-output",
                program: name,
                line: line.slice(0, MAX_LOG_LINE),
              });
            }
          }
          if (buf.length > 64 * 1024) buf = buf.slice(-4096);
        }
      })().catch(() => {});
    const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
    this.#exited = child.status.then(async (status) => {
      await pumps;
      if (this.#child === child) this.#child = null;
      if (this.#stopping) return;
      const ran = Date.now() - started;
      if (ran >= (this.opts.stableMs ?? 10_000)) this.#backoff = this.opts.initialBackoffMs ?? 500;
      log.warn("data-plane program exited; restarting", {
        code: "process-crashed",
        program: name,
        exit_code: status.code,
        signal: status.signal,
        restart_in_ms: this.#backoff,
      });
      this.opts.onCrash?.(status);
      this.#timer = setTimeout(() => {
        this.#timer = null;
        if (this.#stopping) return;
        try {
          this.#spawn();
          this.opts.onRestart?.();
        } catch (e) {
          log.error("data-plane program cannot be restarted", {
            code: "process-spawn-failed",
            program: name,
            error: e,
          });
        }
      }, this.#backoff);
      this.#backoff = Math.min(this.#backoff * 2, this.opts.maxBackoffMs ?? 30_000);
    });
  }

  /** Stops the program: SIGTERM, SIGKILL after `graceMs`; no restart follows. */
  async stop(graceMs = 5000): Promise<void> {
    this.#stopping = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const child = this.#child;
    if (child === null) return;
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), graceMs));
    if (await Promise.race([this.#exited.then(() => "done" as const), late]) === "late") {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }
    clearTimeout(timer);
    await this.#exited;
  }

  /** Kills the program as a crash would (tests and RestartService). */
  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.#child?.kill(signal);
    } catch { /* gone */ }
  }
}
