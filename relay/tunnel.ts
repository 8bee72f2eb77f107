/**
 * The relay end of the reverse tunnel. The controller dials in (controller
 * certificate only); the relay is the yamux client and opens one substream
 * per backend connection. One controller at a time: a new verified
 * controller session replaces the old one, so a stale or hijacked
 * connection can never lock the real controller out.
 */
import type { Logger } from "../core/log.ts";
import { type Duplex as WebDuplex, MuxSession } from "../core/mux/mod.ts";
import { splitConnectStream } from "../core/connect/mod.ts";
import type { Duplex } from "node:stream";
import { receivePolicy } from "./control_stream.ts";
import { POLICY_HOST, type RelayPolicy } from "../core/relay_policy.ts";
import type { BackendTransport } from "./transport.ts";
import { webToNode } from "./web_node.ts";

export const TUNNEL_KEEPALIVE_MS = 20_000;

export class TunnelSlot implements BackendTransport {
  readonly name = "tunnel";
  #session: MuxSession | null = null;
  #listeners = new Set<() => void>();

  constructor(private readonly policy: RelayPolicy, private readonly log: Logger) {}

  get connected(): boolean {
    return this.#session !== null && !this.#session.isClosed;
  }

  /** Called with every new tunnel (the backend drops its old session). */
  onChange(fn: () => void): void {
    this.#listeners.add(fn);
  }

  /** Takes a verified controller connection as the tunnel. */
  attach(conn: WebDuplex, keepAliveIntervalMs = TUNNEL_KEEPALIVE_MS): void {
    const old = this.#session;
    const session = new MuxSession(conn, { role: "client", keepAliveIntervalMs });
    this.#session = session;
    if (old) {
      this.log.info("a new controller tunnel replaces the previous one");
      void old.close();
    }
    for (const fn of this.#listeners) fn();
    // Up only once the controller answers on the session: a controller that
    // drops the connection after TLS (e.g. a name mismatch) never was up.
    let up = false;
    session.ping().then(() => {
      if (session.isClosed) return;
      up = true;
      this.log.info("controller tunnel up");
    }, () => {});
    session.closed.then((err) => {
      if (this.#session === session) this.#session = null;
      const reason = err?.message ?? "closed";
      if (up) this.log.info("controller tunnel down", { reason });
      else this.log.warn("controller tunnel closed before it came up", { reason });
    });
    void this.#acceptControl(session);
  }

  dial(): Promise<Duplex> {
    const s = this.#session;
    if (!s || s.isClosed) return Promise.reject(new Error("no controller tunnel is connected"));
    return s.open().then(webToNode);
  }

  async close(): Promise<void> {
    await this.#session?.close();
    this.#session = null;
  }

  /** Streams the controller opens carry policy documents, nothing else. */
  async #acceptControl(session: MuxSession): Promise<void> {
    for await (const stream of session) {
      try {
        const { target, payload } = await splitConnectStream(stream.readable);
        if (target.host !== POLICY_HOST) throw new Error(`unexpected stream for ${target.host}`);
        await receivePolicy(payload, stream.writable, this.policy, this.log);
      } catch (e) {
        this.log.warn("bad control stream on the tunnel", { error: e });
        stream.reset();
      }
    }
  }
}
