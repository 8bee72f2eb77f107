/**
 * A listening socket that guards the protocol server behind it (TLS,
 * HTTP/2, HTTP): the protocol server never listens itself; every accepted
 * connection passes the guard first and is handed over with
 * `inner.emit("connection", socket)`.
 *
 * - Caps: a connection beyond its listener's total or per-source cap, or
 *   the process-wide one (a ConnectionBudget chain), is closed at once.
 * - Time limits: each connection has one deadline at a time — the TLS
 *   handshake, then the protocol preface, then (where the protocol has
 *   calls) idleness; the protocol adapter reports the steps
 *   (handshakeDone, established, activity). A missed deadline closes it.
 * - Watchdog: a Deno listener that hit EMFILE never accepts again and says
 *   nothing (denoland/deno#10148). When a listener has accepted nothing for
 *   a while, it connects to itself; if that connection is not accepted in
 *   time (or cannot even be made for lack of fds), the listener is rebuilt
 *   on the same port — connections in progress are kept, the ones still in
 *   handshake or preface are shed to free descriptors. If rebuilding keeps
 *   failing, `onFatal` decides (the relay exits non-zero for its supervisor;
 *   the controller logs and keeps trying).
 * - Counters, and a "connections" summary line (code conn-stats) at most
 *   once per interval when they changed, and at close.
 */
import net from "node:net";
import type { EventEmitter } from "node:events";
import {
  type ConnectionBudget,
  DEFAULT_TIME_LIMITS,
  type Refusal,
  type TimeLimits,
} from "../core/conn_limits.ts";
import type { Logger } from "../core/log.ts";
import { openFds } from "./host/fd_limit.ts";
import { LISTEN_BACKLOG, listenOrExplain } from "./listen.ts";

export interface WatchdogOptions {
  /** How often a listener that accepted nothing meanwhile checks itself. */
  intervalMs: number;
  /** How long its own connection may wait to be accepted. */
  probeTimeoutMs: number;
  /** Failed rebuilds in a row before `onFatal`. */
  maxFailures: number;
}

export const DEFAULT_WATCHDOG: WatchdogOptions = {
  intervalMs: 5000,
  probeTimeoutMs: 5000,
  maxFailures: 12,
};

export interface GuardedListenerOptions {
  /** Listener name in logs: client, tunnel, egress, dashboard. */
  name: string;
  listen: { hostname: string; port: number };
  /** The setting that moves the listener, named in bind errors. */
  listenSetting: string;
  /** The protocol server (never listening itself). */
  inner: EventEmitter;
  budget: ConnectionBudget;
  limits?: Partial<TimeLimits>;
  /** True when a TLS handshake comes first (its own deadline). */
  tls: boolean;
  /** True when established connections are closed after limits.idleMs without a call. */
  idle: boolean;
  /** Rare lines: rebuilds, summaries. */
  log: Logger;
  /** Per-connection lines (refusals, closes): pass a rate-limited logger. */
  noisy: Logger;
  watchdog?: Partial<WatchdogOptions>;
  /** The listener cannot be rebuilt (maxFailures in a row). */
  onFatal?: (e: Error) => void;
  /** At most one "connections" summary line per this many ms (default 60 s). */
  statsIntervalMs?: number;
  backlog?: number;
}

export interface ListenerStats {
  /** Connections accepted by the kernel and seen by the listener (refused ones included). */
  accepted: number;
  open: number;
  refused: Record<Refusal, number>;
  /** Closed by a time limit, by phase. */
  closed: { handshake: number; preface: number; idle: number };
  /** Closed by the peer before sending a byte (scanners, health checks). */
  empty: number;
  /** Connections in handshake or preface closed to free descriptors during a rebuild. */
  shed: number;
  rebuilds: number;
}

type Phase = "handshake" | "preface" | "open";

interface Conn {
  socket: net.Socket;
  phase: Phase;
  active: number;
  timer?: ReturnType<typeof setTimeout>;
  /** Set once an idle connection was asked to close gracefully. */
  closing: boolean;
  onIdle?: () => void;
  release(): void;
}

const GRACE_MS = 5000;
/** Waits before each bind of a rebuild (the first lets destroyed sockets free their descriptors). */
const REBIND_DELAYS_MS = [50, 250, 1000, 3000];
/** After a rebuild: this many checks of our own, this far apart, each this patient. */
const FOLLOW_UP_PROBES = 15;
const FOLLOW_UP_GAP_MS = 700;
const FOLLOW_UP_TIMEOUT_MS = 2000;
/** More rebuilds than this within the window are fatal (onFatal). */
const MAX_REBUILDS_IN_WINDOW = 5;
const RELAPSE_WINDOW_MS = 120_000;

/** The raw TCP socket under a TLS socket or an HTTP/2 session's socket. */
export function rawSocketOf(s: unknown): net.Socket | undefined {
  const o = s as { _parent?: unknown } | null | undefined;
  if (!o) return undefined;
  try {
    return ((o._parent as net.Socket | undefined) ?? (o as net.Socket));
  } catch {
    return undefined; // an HTTP/2 session's socket proxy after the session ended
  }
}

export class GuardedListener {
  readonly name: string;
  readonly stats: ListenerStats = {
    accepted: 0,
    open: 0,
    refused: { total: 0, "per-source": 0 },
    closed: { handshake: 0, preface: 0, idle: 0 },
    empty: 0,
    shed: 0,
    rebuilds: 0,
  };
  readonly limits: TimeLimits;
  #o: GuardedListenerOptions;
  #watchdog: WatchdogOptions;
  #server: net.Server | null = null;
  #port = 0;
  #conns = new Map<net.Socket, Conn>();
  #closed = false;
  #timers: ReturnType<typeof setInterval>[] = [];
  #acceptWaiters = new Set<() => void>();
  #probePorts = new Set<number>();
  #checking: Promise<void> | null = null;
  #lastAccepted = -1;
  #failures = 0;
  #lastStats = "";
  #drained: (() => void) | undefined;
  #retired: net.Server[] = [];
  #rebuildTimes: number[] = [];

  constructor(opts: GuardedListenerOptions) {
    this.#o = opts;
    this.name = opts.name;
    this.limits = { ...DEFAULT_TIME_LIMITS, ...definedOnly(opts.limits ?? {}) };
    this.#watchdog = { ...DEFAULT_WATCHDOG, ...definedOnly(opts.watchdog ?? {}) };
  }

  /** The bound port (after listen). */
  get port(): number {
    return this.#port;
  }

  /** Binds (ListenError with the setting to change on failure) and starts the watchdog. */
  async listen(): Promise<number> {
    this.#server = await this.#bind(this.#o.listen.port);
    this.#port = (this.#server.address() as net.AddressInfo).port;
    this.#timers.push(setInterval(() => void this.check(), this.#watchdog.intervalMs));
    this.#timers.push(setInterval(() => this.#summary(false), this.#o.statsIntervalMs ?? 60_000));
    return this.#port;
  }

  /** The TLS handshake of `s` (raw or TLS socket) finished: the preface deadline starts. */
  handshakeDone(s: unknown): void {
    const c = this.#conn(s);
    if (!c || c.phase !== "handshake") return;
    c.phase = "preface";
    this.#arm(c, this.limits.prefaceMs);
  }

  /**
   * The protocol is up on `s` (HTTP/2 preface received, first request,
   * controller verified). `onIdle` closes it gracefully when idle (else it
   * is destroyed).
   */
  established(s: unknown, onIdle?: () => void): void {
    const c = this.#conn(s);
    if (!c || c.phase === "open") return;
    c.phase = "open";
    c.onIdle = onIdle;
    this.#settle(c);
  }

  /** A call (stream, request) started (+1) or ended (-1) on `s`. */
  activity(s: unknown, delta: 1 | -1): void {
    const c = this.#conn(s);
    if (!c) return;
    c.active = Math.max(0, c.active + delta);
    if (this.#closed) {
      if (c.active === 0) c.socket.destroy();
      if (this.#busy() === 0) this.#drained?.();
      return;
    }
    if (c.phase === "open") this.#settle(c);
  }

  #busy(): number {
    let n = 0;
    for (const c of this.#conns.values()) if (c.active > 0) n++;
    return n;
  }

  /** The raw socket of `s` if this listener holds it. */
  holds(s: unknown): boolean {
    return this.#conn(s) !== undefined;
  }

  /** Closes the listener and every connection it accepted; `graceMs` lets calls in progress end first. */
  async close(graceMs = 0): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    this.#wake();
    await this.#checking;
    const server = this.#server;
    this.#server = null;
    server?.close();
    for (const c of this.#conns.values()) if (c.active === 0) c.socket.destroy();
    if (graceMs > 0 && this.#busy() > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = setTimeout(resolve, graceMs);
      });
      clearTimeout(timer);
      this.#drained = undefined;
    }
    for (const c of this.#conns.values()) c.socket.destroy();
    this.#summary(true);
  }

  /**
   * One watchdog round (also run by the interval): if nothing was accepted
   * since the last round, connect to ourselves; rebuild when that fails.
   */
  check(): Promise<void> {
    if (this.#checking || this.#closed || !this.#server) return this.#checking ?? Promise.resolve();
    if (this.stats.accepted !== this.#lastAccepted) {
      this.#lastAccepted = this.stats.accepted;
      this.#failures = 0;
      return Promise.resolve();
    }
    this.#checking = (async () => {
      try {
        const verdict = await this.#probe();
        if (verdict === "alive" || this.#closed) {
          this.#failures = 0;
          return;
        }
        await this.#recover(verdict);
      } finally {
        this.#lastAccepted = this.stats.accepted;
        this.#checking = null;
      }
    })();
    return this.#checking;
  }

  async #bind(port: number): Promise<net.Server> {
    const server = net.createServer();
    server.on("connection", (socket: net.Socket) => this.#onConnection(socket));
    await listenOrExplain(
      server,
      { hostname: this.#o.listen.hostname, port },
      this.#o.listenSetting,
      this.#o.backlog ?? LISTEN_BACKLOG,
    );
    // After listening, an error (EMFILE on accept, should the runtime report
    // it) means the listener may be dead: check at once.
    server.on("error", (e: Error) => {
      this.#o.log.error("listener error", {
        code: "listener-error",
        listener: this.name,
        error: e,
      });
      this.#lastAccepted = -2;
      void this.check();
    });
    return server;
  }

  #onConnection(socket: net.Socket): void {
    socket.on("error", () => {}); // the protocol server reports what matters
    const remote = socket.remoteAddress;
    if (
      remote && isLoopback(remote) && socket.remotePort !== undefined &&
      this.#probePorts.delete(socket.remotePort)
    ) {
      this.#wake();
      socket.destroy();
      return;
    }
    this.stats.accepted++;
    this.#wake();
    if (this.#closed || !remote) {
      socket.destroy();
      return;
    }
    const admission = this.#o.budget.admit(remote);
    if (!admission.ok) {
      this.stats.refused[admission.reason]++;
      socket.destroy();
      // Rate-limited per listener, not per address: a spread-out flood
      // must not buy one line per address; the counters have the rest.
      this.#o.noisy.warn("connection refused: too many connections", {
        code: admission.reason === "total" ? "conn-limit-total" : "conn-limit-source",
        listener: this.name,
        source: `${this.name} listener`,
        address: remote,
      });
      return;
    }
    const conn: Conn = {
      socket,
      phase: this.#o.tls ? "handshake" : "preface",
      active: 0,
      closing: false,
      release: admission.release,
    };
    this.#conns.set(socket, conn);
    this.stats.open++;
    socket.once("close", () => {
      clearTimeout(conn.timer);
      conn.release();
      this.#conns.delete(socket);
      this.stats.open--;
      if (socket.bytesRead === 0 && conn.phase !== "open") this.stats.empty++;
      if (this.#closed && this.#busy() === 0) this.#drained?.();
    });
    this.#arm(conn, conn.phase === "handshake" ? this.limits.handshakeMs : this.limits.prefaceMs);
    this.#o.inner.emit("connection", socket);
  }

  #conn(s: unknown): Conn | undefined {
    const raw = rawSocketOf(s);
    return raw ? this.#conns.get(raw) : undefined;
  }

  /** Arms the idle deadline of an open connection, or clears it while calls run. */
  #settle(c: Conn): void {
    if (c.active > 0) {
      clearTimeout(c.timer);
      c.timer = undefined;
      return;
    }
    if (this.#o.idle) this.#arm(c, this.limits.idleMs);
    else {
      clearTimeout(c.timer);
      c.timer = undefined;
    }
  }

  #arm(c: Conn, ms: number): void {
    clearTimeout(c.timer);
    c.timer = setTimeout(() => this.#expire(c), ms);
  }

  #expire(c: Conn): void {
    c.timer = undefined;
    if (c.socket.destroyed) return;
    if (c.phase === "open") {
      if (c.active > 0) return;
      if (c.closing || !c.onIdle) {
        if (!c.closing) this.stats.closed.idle++;
        c.socket.destroy();
        return;
      }
      // Ask politely (HTTP/2 GOAWAY); the socket goes when it is done or the grace ends.
      this.stats.closed.idle++;
      c.closing = true;
      this.#o.noisy.debug("idle connection closed", {
        code: "conn-idle",
        listener: this.name,
        remote: c.socket.remoteAddress,
      });
      try {
        c.onIdle();
      } catch {
        c.socket.destroy();
        return;
      }
      this.#arm(c, Math.min(GRACE_MS, this.limits.idleMs));
      return;
    }
    this.stats.closed[c.phase]++;
    this.#o.noisy.debug(`connection closed: no ${c.phase} in time`, {
      code: c.phase === "handshake" ? "conn-handshake-timeout" : "conn-preface-timeout",
      listener: this.name,
      remote: c.socket.remoteAddress,
    });
    c.socket.destroy();
  }

  #wake(): void {
    for (const w of this.#acceptWaiters) w();
    this.#acceptWaiters.clear();
  }

  /** Connects to the listener; "alive" once anything is accepted meanwhile. */
  async #probe(
    timeoutMs = this.#watchdog.probeTimeoutMs,
  ): Promise<"alive" | "not-accepting" | "fd-exhausted" | "not-listening"> {
    const before = this.stats.accepted;
    const host = probeHost(this.#o.listen.hostname);
    let conn: Deno.TcpConn | undefined;
    let waiter!: () => void;
    const accepted = new Promise<void>((resolve) => {
      waiter = resolve;
      this.#acceptWaiters.add(resolve);
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
    try {
      const dial = Deno.connect({ hostname: host, port: this.#port });
      const result = await Promise.race([
        dial.then((c) => c, (e: Error) => e),
        timeout.then(() => null),
      ]);
      if (result === null) {
        dial.then((c) => c.close(), () => {});
      } else if (result instanceof Error) {
        if (/os error 24|too many open files/i.test(result.message)) return "fd-exhausted";
        if (result instanceof Deno.errors.ConnectionRefused) return "not-listening";
        return this.stats.accepted !== before ? "alive" : "not-accepting";
      } else {
        conn = result;
        this.#probePorts.add((conn.localAddr as Deno.NetAddr).port);
      }
      await Promise.race([accepted, timeout]);
      return this.stats.accepted !== before || !this.#acceptWaiters.has(waiter)
        ? "alive"
        : "not-accepting";
    } finally {
      clearTimeout(timer);
      this.#acceptWaiters.delete(waiter);
      if (conn) {
        this.#probePorts.delete((conn.localAddr as Deno.NetAddr).port);
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
    }
  }

  /**
   * Rebuilds the listener, then keeps checking it for a while: under
   * Deno a rebuilt listener was seen to go deaf again shortly after
   * (a relapse), which is rebuilt at once. Too many rebuilds in a short
   * time call `onFatal` (the relay then exits for its supervisor).
   */
  async #recover(why: string): Promise<void> {
    for (let round = 0; round < MAX_REBUILDS_IN_WINDOW * 2 && !this.#closed; round++) {
      const now = Date.now();
      this.#rebuildTimes = this.#rebuildTimes.filter((t) => now - t < RELAPSE_WINDOW_MS);
      this.#rebuildTimes.push(now);
      if (this.#rebuildTimes.length > MAX_REBUILDS_IN_WINDOW) {
        const e = new Error(
          `the ${this.name} listener died ${this.#rebuildTimes.length} times within ${
            RELAPSE_WINDOW_MS / 1000
          } s`,
        );
        this.#o.log.error("the listener keeps dying", {
          code: "listener-relapsing",
          listener: this.name,
          error: e,
        });
        this.#o.onFatal?.(e);
      }
      if (!await this.#rebuild(round === 0 ? why : "relapsed")) return;
      let relapsed = false;
      for (let k = 0; k < FOLLOW_UP_PROBES && !this.#closed; k++) {
        await new Promise((r) => setTimeout(r, FOLLOW_UP_GAP_MS));
        if (this.#closed) return;
        if (await this.#probe(FOLLOW_UP_TIMEOUT_MS) !== "alive") {
          relapsed = true;
          break;
        }
      }
      if (!relapsed) return;
    }
  }

  /** One rebuild: true once a new listener accepted our own connection. */
  async #rebuild(why: string): Promise<boolean> {
    this.stats.rebuilds++;
    let shed = 0;
    for (const c of this.#conns.values()) {
      if (c.phase !== "open") {
        c.socket.destroy();
        shed++;
      }
    }
    this.stats.shed += shed;
    this.#o.log.error("listener stopped accepting connections: rebuilding it", {
      code: "listener-dead",
      listener: this.name,
      reason: why,
      open: this.#conns.size - shed,
      shed,
      fds: openFds(),
    });
    let server = this.#server;
    let error: Error | null = null;
    // Deno frees a closed listener's handle one or more event-loop turns
    // later; a new listener bound meanwhile can get the same descriptor
    // number and be left deaf by that late free (seen under load). So each
    // new listener is checked with a connection of our own, and bound
    // again, after a longer wait, until it accepts.
    for (let attempt = 0; attempt < REBIND_DELAYS_MS.length && !this.#closed; attempt++) {
      if (server) this.#retire(server);
      server = null;
      await new Promise((r) => setTimeout(r, REBIND_DELAYS_MS[attempt]));
      if (this.#closed) return false;
      try {
        server = await this.#bind(this.#port);
      } catch (e) {
        error = e as Error;
        continue;
      }
      this.#server = server;
      if (await this.#probe() === "alive") {
        this.#failures = 0;
        this.#o.log.warn("listener rebuilt", {
          code: "listener-rebuilt",
          listener: this.name,
          port: this.#port,
          attempts: attempt + 1,
        });
        return true;
      }
      error = new Error("the rebuilt listener accepts nothing either");
    }
    if (this.#closed) {
      server?.close();
      return false;
    }
    // Keep what we have: the next round checks (and rebuilds) again.
    if (server) this.#server = server;
    this.#failures++;
    this.#o.log.error("cannot rebuild the listener", {
      code: "listener-rebuild-failed",
      listener: this.name,
      attempt: this.#failures,
      error,
    });
    if (this.#failures >= this.#watchdog.maxFailures) {
      this.#o.onFatal?.(error ?? new Error("listener cannot be rebuilt"));
    }
    return false;
  }

  /**
   * Closes a listener we replace, and keeps the object referenced: its
   * native handle is then never garbage-collected while a new listener
   * runs (a late free of the old handle was seen to leave the new one
   * deaf). A rebuild is rare; the last few are kept.
   */
  #retire(server: net.Server): void {
    server.removeAllListeners("connection");
    // An accept already under way can still deliver a socket: close it, never drop it.
    server.on("connection", (socket: net.Socket) => socket.destroy());
    server.close();
    this.#retired.push(server);
    if (this.#retired.length > 8) this.#retired.shift();
  }

  #summary(final: boolean): void {
    const s = this.stats;
    const key = JSON.stringify(s);
    if (key === this.#lastStats || (final && s.accepted === 0 && s.rebuilds === 0)) return;
    this.#lastStats = key;
    this.#o.log.info("connections", {
      code: "conn-stats",
      listener: this.name,
      ...structuredClone(s),
      final,
    });
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function isLoopback(a: string): boolean {
  return a.startsWith("127.") || a === "::1" || a.startsWith("::ffff:127.");
}

/** Where a listener on `hostname` can be reached from this host. */
function probeHost(hostname: string): string {
  if (hostname === "" || hostname === "0.0.0.0") return "127.0.0.1";
  if (hostname === "::" || hostname === "[::]") return "::1";
  return hostname;
}
