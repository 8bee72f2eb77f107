/**
 * The relay end of the reverse tunnel. The controller dials in (controller
 * certificate only); the relay is the yamux client and opens one substream
 * per backend connection. One controller at a time: a new verified
 * controller session replaces the old one, so a stale or hijacked
 * connection can never lock the real controller out.
 *
 * Inner TLS: each substream carries TLS 1.3 to the controller's gRPC server
 * (what the original controller expects), unless the policy pushed on this
 * session said `plain_h2`: our controller then takes plain HTTP/2 on new
 * substreams (the tunnel's mutual TLS authenticated both ends), which saves
 * a third layer of encryption and the JS socket it runs on.
 */
import type { Logger } from "../core/log.ts";
import { type Duplex as WebDuplex, MuxSession } from "../core/mux/mod.ts";
import { splitConnectStream } from "../core/connect/mod.ts";
import type { Duplex } from "node:stream";
import { receivePolicy } from "./control_stream.ts";
import { POLICY_HOST, type RelayPolicy } from "../core/relay_policy.ts";
import type { BackendTransport } from "./transport.ts";
import { webToNode } from "./host/web_node.ts";

export const TUNNEL_KEEPALIVE_MS = 20_000;
/**
 * Receive window of a tunnel substream (the yamux default is 256 KiB). A
 * substream carries a whole backend HTTP/2 session (every call of a lane),
 * so there are only a few and the window is the session's throughput cap
 * (window / round trip); it is credit, not a buffer kept per stream.
 */
export const TUNNEL_STREAM_WINDOW = 1024 * 1024;

export class TunnelSlot implements BackendTransport {
  readonly name = "tunnel";
  #session: MuxSession | null = null;
  /** The session whose controller announced plain HTTP/2 (see inProcess). */
  #plainSession: MuxSession | null = null;
  #listeners = new Set<() => void>();

  constructor(private readonly policy: RelayPolicy, private readonly log: Logger) {}

  /**
   * True when the live session's controller takes plain HTTP/2: the backend
   * then dials without inner TLS (BackendTransport.inProcess). Read at each
   * dial, so a session opened before the policy came keeps its TLS.
   */
  get inProcess(): boolean {
    return this.#session !== null && this.#plainSession === this.#session;
  }

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
    const session = new MuxSession(conn, {
      role: "client",
      keepAliveIntervalMs,
      windowSize: TUNNEL_STREAM_WINDOW,
    });
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
        const revision = this.policy.revision;
        await receivePolicy(payload, stream.writable, this.policy, this.log);
        // Applied (not stale) on this session: it says how this controller takes substreams.
        if (this.policy.revision !== revision && this.#session === session) {
          this.#plainSession = this.policy.plainH2 ? session : null;
        }
      } catch (e) {
        this.log.warn("bad control stream on the tunnel", { error: e });
        stream.reset();
      }
    }
  }
}
