/**
 * The controller end of a reverse tunnel: it dials the remote relay (the
 * controller never listens), becomes the yamux server, and hands every
 * substream the relay opens to its own gRPC server as an accepted
 * connection. On loss it redials with backoff: 1 s, doubling to 60 s, back
 * to 1 s after a session that lived at least 5 s.
 */
import type { Duplex } from "node:stream";
import type { Logger } from "../../core/log.ts";
import { MuxSession } from "../../core/mux/mod.ts";
import type { PolicyDocument } from "../../core/relay_policy.ts";
import { nodeToWeb, webToNode } from "../../relay/web_node.ts";
import { type ControllerTlsIdentity, dialRelay } from "./dial.ts";
import { pushPolicy } from "./policy_push.ts";

export interface TunnelClientOptions {
  target: { host: string; port: number; serverName?: string };
  identity: ControllerTlsIdentity;
  /** Takes one substream as an accepted connection of the gRPC server. */
  accept(conn: Duplex): void;
  /** The policy to send on every new session. */
  policy(): PolicyDocument;
  log: Logger;
  backoff?: { initialMs: number; maxMs: number; stableMs: number };
  keepAliveIntervalMs?: number;
}

export type TunnelState = "connecting" | "up" | "backoff" | "stopped";

export class TunnelClient {
  #state: TunnelState = "connecting";
  #session: MuxSession | null = null;
  #stopped = false;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #upWaiters: (() => void)[] = [];
  /** Sessions established so far (observability and tests). */
  sessions = 0;

  constructor(private readonly opts: TunnelClientOptions) {}

  get state(): TunnelState {
    return this.#state;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Resolves when a session is up (immediately if it is). */
  whenUp(): Promise<void> {
    if (this.#state === "up") return Promise.resolve();
    return new Promise((resolve) => this.#upWaiters.push(resolve));
  }

  /** Sends the current policy on the live session, if any. */
  async pushPolicy(): Promise<void> {
    if (this.#session && !this.#session.isClosed) await this.#sendPolicy(this.#session);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#state = "stopped";
    this.#wake?.();
    await this.#session?.close();
    await this.#loop;
  }

  async #sendPolicy(session: MuxSession): Promise<void> {
    try {
      const answer = await pushPolicy(session, this.opts.policy());
      if (answer !== "ok") this.opts.log.warn("relay refused the policy", { answer });
    } catch (e) {
      this.opts.log.warn("could not send the policy to the relay", { error: e });
    }
  }

  async #run(): Promise<void> {
    const b = this.opts.backoff ?? { initialMs: 1000, maxMs: 60_000, stableMs: 5000 };
    const where = `${this.opts.target.host}:${this.opts.target.port}`;
    let delay = b.initialMs;
    while (!this.#stopped) {
      this.#state = "connecting";
      let started = 0;
      try {
        const { socket } = await dialRelay(this.opts.target, this.opts.identity);
        const session = new MuxSession(nodeToWeb(socket), {
          role: "server",
          keepAliveIntervalMs: this.opts.keepAliveIntervalMs ?? 20_000,
        });
        this.#session = session;
        started = Date.now();
        this.sessions++;
        this.#state = "up";
        this.opts.log.info("relay tunnel up", { relay: where });
        for (const w of this.#upWaiters.splice(0)) w();
        void this.#sendPolicy(session);
        for await (const stream of session) this.opts.accept(webToNode(stream));
        const reason = await session.closed;
        this.opts.log.warn("relay tunnel down", {
          relay: where,
          reason: reason?.message ?? "closed",
        });
      } catch (e) {
        this.opts.log.warn("relay tunnel dial failed", { relay: where, error: e });
      }
      this.#session = null;
      if (this.#stopped) break;
      if (started && Date.now() - started >= b.stableMs) delay = b.initialMs;
      this.#state = "backoff";
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = null;
      delay = Math.min(delay * 2, b.maxMs);
    }
    this.#state = "stopped";
  }
}
