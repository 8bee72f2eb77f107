/**
 * The main process's side of the control front (control_front.ts): starts
 * it as a child with network and read permissions only, answers its calls
 * with the NodeControl handlers, feeds it the event stream, and restarts it
 * (with backoff) whenever it dies — the data plane and its state live here
 * and are not touched by a crash of the HTTP/2 stack over there.
 */
import type { Logger } from "../core/log.ts";
import { AgentError, asAgentError, GrpcCode } from "./errors.ts";
import type { AgentEvent, EventHub, Subscription } from "./events.ts";
import { type IpcMessage, MessageWriter, readMessages } from "./ipc.ts";
import { eventMessage, type NodeControlCore } from "./service.ts";

export interface ControlProcessOptions {
  /** The front's command line (program and arguments). */
  argv: string[];
  core: NodeControlCore;
  hub: EventHub<AgentEvent>;
  log: Logger;
  /** Events queued for the front before new ones are dropped. */
  eventBuffer?: number;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 5000, 10_000];
const STABLE_MS = 30_000;

export class ControlProcess {
  #child: Deno.ChildProcess | null = null;
  #writer: MessageWriter | null = null;
  #events: Subscription<AgentEvent> | null = null;
  #forwarding: Promise<void> = Promise.resolve();
  #stopping = false;
  #restarts = 0;
  #crashes = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #exited: Promise<void> = Promise.resolve();
  port = 0;

  constructor(readonly opts: ControlProcessOptions) {}

  /** Times the front was restarted after a crash. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Starts the front; resolves with its port once it listens, rejects if it cannot start. */
  start(): Promise<number> {
    return new Promise((resolve, reject) => this.#spawn({ resolve, reject }));
  }

  #spawn(first?: { resolve: (port: number) => void; reject: (e: Error) => void }): void {
    const { argv, log } = this.opts;
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#child = child;
    const writer = new MessageWriter(child.stdin);
    this.#writer = writer;
    const started = Date.now();
    let ready = false;
    const events = this.opts.hub.subscribe(this.opts.eventBuffer ?? 4096);
    this.#events = events;

    this.#forwarding = (async () => {
      for (;;) {
        const e = await events.next();
        if (e === null) break;
        await writer.send({ t: "event", e: eventMessage(e) });
      }
    })();

    const onMessage = (m: IpcMessage) => {
      switch (m.t) {
        case "ready":
          ready = true;
          this.port = m.port;
          if (first) first.resolve(m.port);
          else {
            log.info("NodeControl listening again", { code: "control-restarted", port: m.port });
          }
          first = undefined;
          break;
        case "fatal":
          if (first) {
            first.reject(new AgentError(m.code, m.message, GrpcCode.UNAVAILABLE));
            first = undefined;
            this.#stopping = true;
          } else {
            log.error("NodeControl listener cannot start", { code: m.code, error: m.message });
          }
          break;
        case "call":
          this.opts.core.call(m.method, m.req).then(
            (res) => writer.send({ t: "result", id: m.id, res }),
            (e) => {
              const err = asAgentError(e);
              return writer.send({
                t: "error",
                id: m.id,
                status: err.status,
                code: err.code,
                message: err.message.replace(/[\r\n]+/g, " "),
              });
            },
          );
          break;
      }
    };
    const reading = readMessages(child.stdout, onMessage).catch((e) =>
      log.error("control link broken", { code: "control-link", error: e })
    );
    this.#exited = child.status.then(async (status) => {
      await reading;
      events.close();
      if (this.#child === child) {
        this.#child = null;
        this.#writer = null;
      }
      if (first) {
        first.reject(
          new AgentError(
            "front-exited",
            `the NodeControl listener exited at start (code ${status.code}${
              status.signal ? `, ${status.signal}` : ""
            })`,
            GrpcCode.UNAVAILABLE,
          ),
        );
        first = undefined;
        this.#stopping = true;
      }
      if (this.#stopping) return;
      if (Date.now() - started > STABLE_MS) this.#crashes = 0;
      const delay = BACKOFF_MS[Math.min(this.#crashes++, BACKOFF_MS.length - 1)];
      log.error("NodeControl listener died; restarting it (the data plane is not affected)", {
        code: "control-crashed",
        exit_code: status.code,
        signal: status.signal,
        was_ready: ready,
        restart_in_ms: delay,
      });
      this.#timer = setTimeout(() => {
        this.#timer = null;
        if (this.#stopping) return;
        this.#restarts++;
        try {
          this.#spawn();
        } catch (e) {
          log.error("NodeControl listener cannot be restarted", {
            code: "control-spawn",
            error: e,
          });
        }
      }, delay);
    });
  }

  /** Asks the front to end its streams and stop; kills it after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    this.#stopping = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const child = this.#child;
    if (!child) return;
    // Queued events (node-shutdown ones) reach the front before it ends the streams.
    this.#events?.close();
    await Promise.race([this.#forwarding, new Promise((r) => setTimeout(r, 2000))]);
    await this.#writer?.send({ t: "shutdown" });
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
}
