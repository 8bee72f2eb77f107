/**
 * The relay end of the reverse tunnel. The controller dials in (controller
 * certificate only); the relay is the yamux client and opens one substream
 * per backend connection. One controller at a time: a new verified
 * controller session replaces the old one at once, so a stale or hijacked
 * connection can never lock the real controller out.
 *
 * Replacement drains rather than cuts (the controller cycles its session
 * when its certificate is renewed): new substreams and policy streams go to
 * the new session only; the replaced one gets a go-away (the peer's new
 * streams are refused, this side opens none), its calls in flight finish,
 * and it is closed once its last substream ends, it stops answering pings,
 * or the drain grace is over.
 *
 * A replaced session never gets new work back, even when the newest one
 * dies while it still drains: the newest verified session may be the real
 * controller that displaced a stolen certificate's session. Calls then fail
 * until a controller dials again; ours redials at once when its cycle's new
 * session died after this side took it (controller/relay/tunnel_client.ts).
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

/**
 * How long a replaced session may go on carrying the calls it had (30 s):
 * an ordinary unary call or claim finishes well within it, and a
 * long-lived stream cut at its end is redialled by its client like after
 * any relay restart. Bounded, so a replaced session cannot hold resources.
 */
export const TUNNEL_DRAIN_GRACE_MS = 30_000;
/**
 * Replaced sessions draining at once; a further replacement closes the
 * oldest at once, so a burst of reconnects cannot pile them up.
 */
export const MAX_DRAINING = 4;
/** How often a draining session is checked for its last substream. */
const DRAIN_CHECK_MS = 200;
/**
 * How often a draining session is pinged (5 s): one whose controller went
 * silent cannot finish its calls, so it is closed at its first unanswered
 * ping (the session's ping timeout, 10 s) rather than at the end of the grace.
 */
export const DRAIN_PING_MS = 5_000;

export interface TunnelSlotOptions {
  /** Grace of a replaced session (default TUNNEL_DRAIN_GRACE_MS). */
  drainGraceMs?: number;
  /** Ping period of a draining session (default DRAIN_PING_MS). */
  drainPingMs?: number;
}

export interface AttachOptions {
  /** Multiplexer keepalive (default TUNNEL_KEEPALIVE_MS; 0 turns it off). */
  keepAliveIntervalMs?: number;
  /** Serial of the controller certificate that opened this connection (for the logs). */
  serial?: string;
  /** How long a ping (keepalive, drain) waits for the answer (default 10 s). */
  pingTimeoutMs?: number;
}

export class TunnelSlot implements BackendTransport {
  readonly name = "tunnel";
  #session: MuxSession | null = null;
  #serial: string | null = null;
  /** The session whose controller announced plain HTTP/2 (see inProcess). */
  #plainSession: MuxSession | null = null;
  /** Replaced sessions finishing their calls, oldest first, each with what closes it. */
  #draining = new Map<MuxSession, (reason: string) => void>();
  #listeners = new Set<() => void>();
  readonly #graceMs: number;
  readonly #drainPingMs: number;

  constructor(
    private readonly policy: RelayPolicy,
    private readonly log: Logger,
    opts: TunnelSlotOptions = {},
  ) {
    this.#graceMs = opts.drainGraceMs ?? TUNNEL_DRAIN_GRACE_MS;
    this.#drainPingMs = opts.drainPingMs ?? DRAIN_PING_MS;
  }

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

  /** Replaced sessions still finishing their calls. */
  get draining(): number {
    return this.#draining.size;
  }

  /** Called with every new tunnel (the backend moves new calls to it). */
  onChange(fn: () => void): void {
    this.#listeners.add(fn);
  }

  /** Takes a verified controller connection as the tunnel; a previous one drains. */
  attach(conn: WebDuplex, opts: AttachOptions = {}): void {
    const old = this.#session;
    const oldSerial = this.#serial;
    const serial = opts.serial ?? null;
    const session = new MuxSession(conn, {
      role: "client",
      keepAliveIntervalMs: opts.keepAliveIntervalMs ?? TUNNEL_KEEPALIVE_MS,
      windowSize: TUNNEL_STREAM_WINDOW,
      ...(opts.pingTimeoutMs ? { pingTimeoutMs: opts.pingTimeoutMs } : {}),
    });
    this.#session = session;
    this.#serial = serial;
    if (old && !old.isClosed) this.#drain(old, oldSerial, serial);
    for (const fn of this.#listeners) fn();
    // Up only once the controller answers on the session: a controller that
    // drops the connection after TLS (e.g. a name mismatch) never was up.
    let up = false;
    session.ping().then(() => {
      if (session.isClosed) return;
      up = true;
      this.log.info("controller tunnel up", { serial });
    }, () => {});
    session.closed.then((err) => {
      // A replaced session's end is the drain's to tell (tunnel-drain-end).
      if (this.#session !== session) return;
      this.#session = null;
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
    for (const finish of [...this.#draining.values()]) finish("relay-closing");
    await this.#session?.close();
    this.#session = null;
  }

  /**
   * Lets a replaced session finish its calls: no new stream either way
   * (go-away), closed when its last substream ends or the grace is over.
   */
  #drain(old: MuxSession, serial: string | null, by: string | null): void {
    old.goAway();
    const started = Date.now();
    let check: ReturnType<typeof setInterval> | undefined = undefined;
    const finish = (reason: string) => {
      if (!this.#draining.delete(old)) return;
      clearInterval(check);
      const cut = old.isClosed ? 0 : old.streamCount;
      void old.close();
      this.log.info("replaced controller tunnel closed", {
        code: "tunnel-drain-end",
        reason,
        serial,
        streams_cut: cut,
        drained_ms: Date.now() - started,
      });
    };
    // A controller that redials because its old connection died leaves that
    // one silent: its calls cannot finish, so it goes once a ping goes
    // unanswered (one at the start, then every drainPingMs).
    let lastPing = 0;
    let pinging = false;
    const probe = () => {
      pinging = true;
      lastPing = Date.now();
      old.ping().then(
        () => pinging = false,
        () => finish(old.isClosed ? "ended" : "unresponsive"),
      );
    };
    check = setInterval(() => {
      if (old.isClosed) finish("ended");
      else if (old.streamCount === 0) finish("drained");
      else if (Date.now() - started >= this.#graceMs) finish("grace-over");
      else if (!pinging && Date.now() - lastPing >= this.#drainPingMs) probe();
    }, Math.min(DRAIN_CHECK_MS, this.#graceMs, this.#drainPingMs));
    this.#draining.set(old, finish);
    probe();
    this.log.info("a new controller tunnel replaces the previous one: the previous one drains", {
      code: "tunnel-drain-start",
      serial,
      new_serial: by,
      streams: old.streamCount,
      grace_ms: this.#graceMs,
    });
    if (this.#draining.size > MAX_DRAINING) {
      this.#draining.values().next().value!("too-many-draining");
    }
  }

  /** Streams the controller opens carry policy documents, nothing else. */
  async #acceptControl(session: MuxSession): Promise<void> {
    for await (const stream of session) {
      // A replaced session gets no new work, policy included.
      if (this.#session !== session) {
        this.log.warn("a policy stream on a replaced controller tunnel was refused", {
          code: "tunnel-replaced",
        });
        stream.reset();
        continue;
      }
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
