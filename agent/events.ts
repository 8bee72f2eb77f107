/**
 * Live events of the client interface (CONTRACTS.md §1.5): the observer
 * reads the interface (UAPI get or `wg show dump`) at a fixed interval,
 * diffs it against the previous reading, and publishes handshake up/down,
 * peer connected/disconnected (with the source endpoint and cumulative
 * counters) and errors. The first reading is a silent baseline. Each
 * WatchEvents subscriber has a bounded buffer (256); what overflows is
 * dropped and logged, never queued without bound.
 */
import type { WgDump } from "../core/dataplane/mod.ts";
import type { Logger } from "../core/log.ts";

export type EventType =
  | "EVENT_TYPE_HANDSHAKE_UP"
  | "EVENT_TYPE_HANDSHAKE_DOWN"
  | "EVENT_TYPE_PEER_CONNECTED"
  | "EVENT_TYPE_PEER_DISCONNECTED"
  | "EVENT_TYPE_ERROR";

export interface AgentEvent {
  /** Unix seconds (fractional) of the poll that saw it. */
  at: number;
  type: EventType;
  /** The peer's WireGuard public key ("" for errors). */
  peerId: string;
  message: string;
  sourceEndpoint: string;
  rxBytes: bigint;
  txBytes: bigint;
}

/** A peer is "up" while its last handshake is younger than this (WireGuard's reject-after time). */
export const HANDSHAKE_UP_WINDOW_S = 180;
/** Events buffered per subscriber before new ones are dropped. */
export const SUBSCRIBER_BUFFER = 256;

/** What the observer remembers of a peer between polls. */
export interface PeerObservation {
  handshake: number;
  endpoint: string | null;
  up: boolean;
  rx: bigint;
  tx: bigint;
}

export interface DiffResult {
  events: AgentEvent[];
  next: Map<string, PeerObservation>;
  handshakes: number;
}

function event(
  at: number,
  type: EventType,
  peerId: string,
  o: { endpoint: string | null; rx?: bigint; tx?: bigint; message?: string },
): AgentEvent {
  return {
    at,
    type,
    peerId,
    message: o.message ?? "",
    sourceEndpoint: o.endpoint ?? "",
    rxBytes: o.rx ?? 0n,
    txBytes: o.tx ?? 0n,
  };
}

/**
 * One observer step: the events between the previous observations and a
 * new dump taken at `now` (unix seconds). Pure.
 */
export function diffDump(
  prev: ReadonlyMap<string, PeerObservation>,
  dump: WgDump,
  now: number,
): DiffResult {
  const events: AgentEvent[] = [];
  const next = new Map<string, PeerObservation>();
  let handshakes = 0;
  for (const p of dump.peers) {
    const before = prev.get(p.publicKey);
    const fresh = p.latestHandshake > 0 && now - p.latestHandshake < HANDSHAKE_UP_WINDOW_S;
    let up = before?.up ?? false;
    const obs = { endpoint: p.endpoint, rx: p.rxBytes, tx: p.txBytes };
    const advanced = p.latestHandshake > (before?.handshake ?? 0);
    if (advanced) {
      handshakes++;
      events.push(event(now, "EVENT_TYPE_HANDSHAKE_UP", p.publicKey, { endpoint: p.endpoint }));
      if (fresh && !up) {
        up = true;
        events.push(event(now, "EVENT_TYPE_PEER_CONNECTED", p.publicKey, obs));
      } else if (up && before && before.endpoint !== p.endpoint) {
        events.push(event(now, "EVENT_TYPE_PEER_CONNECTED", p.publicKey, obs));
      }
    } else if (up && before && before.endpoint !== p.endpoint && p.endpoint !== null) {
      events.push(event(now, "EVENT_TYPE_PEER_CONNECTED", p.publicKey, obs)); // roaming
    }
    if (up && !fresh) {
      up = false;
      events.push(event(now, "EVENT_TYPE_HANDSHAKE_DOWN", p.publicKey, { endpoint: p.endpoint }));
      events.push(event(now, "EVENT_TYPE_PEER_DISCONNECTED", p.publicKey, obs));
    }
    next.set(p.publicKey, {
      handshake: p.latestHandshake,
      endpoint: p.endpoint,
      up,
      rx: p.rxBytes,
      tx: p.txBytes,
    });
  }
  for (const [key, o] of prev) {
    if (next.has(key)) continue;
    events.push(
      event(now, "EVENT_TYPE_PEER_DISCONNECTED", key, {
        endpoint: o.endpoint,
        rx: o.up ? o.rx : 0n,
        tx: o.up ? o.tx : 0n,
      }),
    );
  }
  return { events, next, handshakes };
}

/** The silent baseline: observations of a first dump (peers with a fresh handshake are up). */
export function baseline(dump: WgDump, now: number): Map<string, PeerObservation> {
  return new Map(dump.peers.map((p) => [p.publicKey, {
    handshake: p.latestHandshake,
    endpoint: p.endpoint,
    up: p.latestHandshake > 0 && now - p.latestHandshake < HANDSHAKE_UP_WINDOW_S,
    rx: p.rxBytes,
    tx: p.txBytes,
  }]));
}

/** One WatchEvents subscriber. */
export class Subscription<T = AgentEvent> {
  #queue: T[] = [];
  #waiter: ((e: T | null) => void) | null = null;
  #closed = false;
  dropped = 0;

  constructor(
    readonly onClose: (s: Subscription<T>) => void,
    readonly capacity = SUBSCRIBER_BUFFER,
  ) {}

  /** Queues an event; false when the buffer is full (the event is dropped). */
  offer(e: T): boolean {
    if (this.#closed) return false;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = null;
      w(e);
      return true;
    }
    if (this.#queue.length >= this.capacity) {
      this.dropped++;
      return false;
    }
    this.#queue.push(e);
    return true;
  }

  /** The next event, or null once the subscription is closed (queued events first). */
  next(): Promise<T | null> {
    const e = this.#queue.shift();
    if (e) return Promise.resolve(e);
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => this.#waiter = resolve);
  }

  /** Ends the subscription; events already queued are still handed out by next(). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#waiter?.(null);
    this.#waiter = null;
    this.onClose(this);
  }
}

export class EventHub<T extends { type: string } = AgentEvent> {
  readonly #subs = new Set<Subscription<T>>();

  constructor(readonly log: Logger) {}

  get subscribers(): number {
    return this.#subs.size;
  }

  subscribe(capacity = SUBSCRIBER_BUFFER): Subscription<T> {
    const s = new Subscription<T>((x) => this.#subs.delete(x), capacity);
    this.#subs.add(s);
    return s;
  }

  publish(e: T): void {
    for (const s of this.#subs) {
      if (!s.offer(e)) {
        this.log.warn("event dropped: a WatchEvents subscriber is not reading", {
          code: "event-dropped",
          type: e.type,
          dropped: s.dropped,
        });
      }
    }
  }

  /** Ends every stream (agent shutdown). */
  closeAll(): void {
    for (const s of [...this.#subs]) s.close();
  }
}

export interface ObserverOptions {
  /** Reads the client interface; null while it is deliberately not up. */
  read: () => Promise<WgDump | null>;
  hub: EventHub;
  log: Logger;
  intervalMs: number;
  /** Unix seconds; tests pass their own clock. */
  now?: () => number;
}

/** Polls the client interface and publishes what changed. */
export class Observer {
  #prev: Map<string, PeerObservation> | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running: Promise<void> | null = null;
  #stopped = true;
  handshakesTotal = 0n;
  errorsTotal = 0n;
  /** Listeners told about each successful reading (status, health checks). */
  readonly #onPoll: ((dump: WgDump) => void)[] = [];

  constructor(readonly opts: ObserverOptions) {}

  onPoll(fn: (dump: WgDump) => void): void {
    this.#onPoll.push(fn);
  }

  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.poll().finally(() => {
        this.#running = null;
        this.#schedule(this.opts.intervalMs);
      });
    }, ms);
  }

  #now(): number {
    return this.opts.now ? this.opts.now() : Date.now() / 1000;
  }

  /** One observation (also called directly by tests). */
  async poll(): Promise<void> {
    const now = this.#now();
    let dump: WgDump | null;
    try {
      dump = await this.opts.read();
    } catch (e) {
      this.errorsTotal++;
      this.opts.hub.publish({
        at: now,
        type: "EVENT_TYPE_ERROR",
        peerId: "",
        message: (e as Error).message ?? String(e),
        sourceEndpoint: "",
        rxBytes: 0n,
        txBytes: 0n,
      });
      return;
    }
    if (dump === null) return;
    for (const fn of this.#onPoll) fn(dump);
    if (this.#prev === null) {
      this.#prev = baseline(dump, now);
      return;
    }
    const r = diffDump(this.#prev, dump, now);
    this.#prev = r.next;
    this.handshakesTotal += BigInt(r.handshakes);
    for (const e of r.events) this.opts.hub.publish(e);
  }

  /** Graceful stop: PEER_DISCONNECTED "node-shutdown" for every peer still up. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
    const now = this.#now();
    for (const [key, o] of this.#prev ?? []) {
      if (!o.up) continue;
      this.opts.hub.publish({
        at: now,
        type: "EVENT_TYPE_PEER_DISCONNECTED",
        peerId: key,
        message: "node-shutdown",
        sourceEndpoint: o.endpoint ?? "",
        rxBytes: o.rx,
        txBytes: o.tx,
      });
    }
  }
}
