/**
 * Per-client stream limits of the relay, so that one client's behaviour only
 * ever costs that client: concurrent calls and new calls per second, per
 * connection and per peer (a device certificate, or the source address for
 * certificate-less clients), plus a relay-wide ceiling per class. A call over
 * any limit is refused on its own with RST_STREAM(REFUSED_STREAM) — "not
 * processed, safe to retry" — and the connection stays up.
 *
 * A call holds its slots until BOTH its client stream and its stream to the
 * controller have closed: a client that resets calls faster than the relay
 * may pass the resets on (see ResetPacer) keeps its own slots busy and gets
 * its next streams refused, while everyone else is unaffected.
 *
 * Also here: the reset pacer that keeps the relay under the controller's
 * HTTP/2 rapid-reset budget, and the per-method request caps.
 */
import { PharosError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";

export class StreamLimitError extends PharosError {}

/** The one method a client may call without a device certificate. */
export const CLAIM_METHOD = "/pharos.account.v1.AccountSync/ClaimEnrollment";

export interface RateLimit {
  /** Calls open at once. */
  concurrent: number;
  /** New calls per second, sustained. */
  perSecond: number;
  /** New calls allowed in a burst above the sustained rate. */
  burst: number;
}

export interface ClassLimits {
  /** One HTTP/2 connection. */
  connection: RateLimit;
  /** One peer: the source address (IPv4, or the IPv6 /64) without a certificate; the certificate with one. */
  peer: RateLimit;
  /** Every call of this class on the relay. */
  total: { concurrent: number };
}

export interface StreamLimitSettings {
  certless: ClassLimits;
  device: ClassLimits;
}

/**
 * Defaults. A claim needs a stream or two; a device app a handful, so 128
 * per connection leaves a wide margin. The per-peer limit of certificate-less
 * clients is per address: several people claiming at once behind one NAT
 * still fit, a flood from one address does not.
 */
export const DEFAULT_STREAM_LIMITS: StreamLimitSettings = {
  certless: {
    connection: { concurrent: 4, perSecond: 2, burst: 4 },
    peer: { concurrent: 8, perSecond: 4, burst: 8 },
    total: { concurrent: 256 },
  },
  device: {
    connection: { concurrent: 128, perSecond: 200, burst: 400 },
    peer: { concurrent: 256, perSecond: 400, burst: 800 },
    total: { concurrent: 4096 },
  },
};

/**
 * SETTINGS_MAX_CONCURRENT_STREAMS the client listener should advertise.
 * Above the largest per-connection limit on purpose: nghttp2 (Deno's
 * node:http2) treats a stream beyond the advertised value as a connection
 * error (GOAWAY PROTOCOL_ERROR) once the client has acknowledged the
 * SETTINGS, so the relay advertises headroom and refuses the excess streams
 * itself, one by one, with REFUSED_STREAM (RFC 9113 §5.1.2 allows either).
 * A client that exceeds even this value in one burst violates the protocol
 * and loses its own connection, nobody else's.
 */
export const ADVERTISED_MAX_STREAMS = 2 * DEFAULT_STREAM_LIMITS.device.connection.concurrent;

/** Per-method request caps, checked at each 5-byte gRPC message header. */
export interface MethodCap {
  /** Largest request message. */
  maxMessageBytes: number;
  /** Most request messages in one call (a unary call sends one). */
  maxMessages: number;
}

/** ClaimEnrollment carries a token and a CSR: about 8 KiB in practice. */
export const METHOD_CAPS: Readonly<Record<string, MethodCap>> = {
  [CLAIM_METHOD]: { maxMessageBytes: 64 * 1024, maxMessages: 1 },
};

class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(private readonly rate: number, private readonly capacity: number, now: number) {
    this.#tokens = capacity;
    this.#last = now;
  }

  #refill(now: number): void {
    const elapsed = Math.max(0, now - this.#last) / 1000;
    this.#tokens = Math.min(this.capacity, this.#tokens + elapsed * this.rate);
    this.#last = now;
  }

  take(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Puts back a token taken for a call that another limit then refused. */
  giveBack(): void {
    this.#tokens = Math.min(this.capacity, this.#tokens + 1);
  }

  full(now: number): boolean {
    this.#refill(now);
    return this.#tokens >= this.capacity;
  }

  /** Milliseconds until one token is available. */
  waitMs(now: number): number {
    this.#refill(now);
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) / this.rate) * 1000);
  }
}

class Counter {
  open = 0;
  readonly bucket: TokenBucket;
  /** Connections only: calls cancelled by the client or refused (see CANCEL_BUDGET), made on the first. */
  cancels?: TokenBucket;
  /** Peers only: new calls are refused until then (a connection of theirs was rapid reset). */
  calmUntil = 0;
  constructor(limit: RateLimit, now: number) {
    this.bucket = new TokenBucket(limit.perSecond, limit.burst, now);
  }
}

export type StreamClass = "certless" | "device";
export type RefusalReason =
  | "connection-concurrent"
  | "connection-rate"
  | "peer-concurrent"
  | "peer-rate"
  | "peer-calm"
  | "total-concurrent";

/** A call's slots; release() once both of its streams have closed. */
export interface StreamSlot {
  readonly cls: StreamClass;
  /** Key for fair reset pacing: the peer. */
  readonly owner: string;
  release(): void;
}

/**
 * Canonical peer key of a source address: IPv4 as is (also when IPv4-mapped),
 * IPv6 reduced to its /64, since anyone holding one address holds the whole
 * prefix.
 */
export function addressKey(remote: string | undefined): string {
  if (!remote) return "unknown";
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(remote);
  if (mapped) return mapped[1];
  if (!remote.includes(":")) return remote;
  const [head, tail] = remote.split("::", 2);
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined
    ? h
    : [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, "")).join(":") + "::/64";
}

/**
 * Calls a client may cancel, or have refused, on one connection: a burst as
 * large as twice its concurrent calls (an app that goes away cancels them
 * all), then a few per second. Past it the connection is rapid reset
 * (CVE-2023-44487) or a stream flood: every cancelled call cost the relay a
 * forward and a paced reset towards the controller, every refused one a
 * stream's setup, for nothing. The relay then ends that connection with
 * GOAWAY ENHANCE_YOUR_CALM, long before nghttp2's own limit of about 1,000
 * resets, and nobody else's calls are touched.
 */
export const CANCEL_BUDGET = {
  burst: 2 * DEFAULT_STREAM_LIMITS.device.connection.concurrent,
  perSecond: 16,
};
/**
 * After that, the peer (certificate, or address without one) is calmed for
 * this long: the first call on any of its connections ends that connection
 * (ENHANCE_YOUR_CALM again), so each further try costs it a new TLS
 * handshake, under the per-source connection caps.
 */
export const CALM_MS = 10_000;

/**
 * The relay's stream admission. Connections are keyed by their HTTP/2
 * session object (forgotten with it); peers by address or certificate,
 * forgotten once idle with full buckets (swept on a bounded schedule).
 */
export class StreamLimits {
  readonly settings: StreamLimitSettings;
  #connections = new WeakMap<object, Counter>();
  #peers = new Map<string, Counter>();
  #totals: Record<StreamClass, number> = { certless: 0, device: 0 };
  #refused = new Map<string, number>();
  #reportTimer?: ReturnType<typeof setTimeout>;

  constructor(
    settings: Partial<StreamLimitSettings> = {},
    private readonly log?: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.settings = { ...DEFAULT_STREAM_LIMITS, ...settings };
  }

  /** Calls open now, per class (tests, metrics). */
  get open(): Readonly<Record<StreamClass, number>> {
    return { ...this.#totals };
  }

  /** Peers tracked now (bounded by the sweep). */
  get trackedPeers(): number {
    return this.#peers.size;
  }

  /**
   * Takes the slots of one new call, or returns why it must be refused.
   * `connection` is the HTTP/2 session; `peer` the address key or the
   * certificate identity.
   */
  admit(cls: StreamClass, connection: object, peer: string): StreamSlot | RefusalReason {
    const lim = this.settings[cls];
    const now = this.now();
    let conn = this.#connections.get(connection);
    if (!conn) this.#connections.set(connection, conn = new Counter(lim.connection, now));
    const peerKey = `${cls}:${peer}`;
    let p = this.#peers.get(peerKey);
    if (!p) {
      this.#sweep(now);
      this.#peers.set(peerKey, p = new Counter(lim.peer, now));
    }
    const refuse = (why: RefusalReason): RefusalReason => {
      this.#count(cls, why);
      return why;
    };
    if (this.#totals[cls] >= lim.total.concurrent) return refuse("total-concurrent");
    if (conn.open >= lim.connection.concurrent) return refuse("connection-concurrent");
    if (p.open >= lim.peer.concurrent) return refuse("peer-concurrent");
    if (p.calmUntil > now) return refuse("peer-calm");
    if (!conn.bucket.take(now)) return refuse("connection-rate");
    if (!p.bucket.take(now)) {
      conn.bucket.giveBack();
      return refuse("peer-rate");
    }
    conn.open++;
    p.open++;
    this.#totals[cls]++;
    let released = false;
    return {
      cls,
      owner: peerKey,
      release: () => {
        if (released) return;
        released = true;
        conn.open--;
        p.open--;
        this.#totals[cls]--;
      },
    };
  }

  /**
   * Counts one call that the client of `connection` cancelled, or one that
   * the relay refused it (a client that keeps opening calls past its limits
   * costs the relay for each one). True once the connection has spent its
   * CANCEL_BUDGET: the caller ends the connection, and the peer's new calls
   * are refused for CALM_MS.
   */
  misbehaved(connection: object, cls: StreamClass, peer: string): boolean {
    const conn = this.#connections.get(connection);
    if (!conn) return false;
    const now = this.now();
    conn.cancels ??= new TokenBucket(CANCEL_BUDGET.perSecond, CANCEL_BUDGET.burst, now);
    if (conn.cancels.take(now)) return false;
    const p = this.#peers.get(`${cls}:${peer}`);
    if (p) p.calmUntil = now + CALM_MS;
    return true;
  }

  /** Drops idle peers with full buckets; bounded work per call. */
  #sweep(now: number): void {
    if (this.#peers.size < 1024) return;
    let checked = 0;
    for (const [key, c] of this.#peers) {
      if (++checked > 4096) break;
      if (c.open === 0 && c.bucket.full(now) && c.calmUntil <= now) this.#peers.delete(key);
    }
  }

  /**
   * Refusals are counted and logged as one summary line per 10 s at most:
   * a flood of refused streams must not become a flood of log lines.
   */
  #count(cls: StreamClass, why: RefusalReason): void {
    const key = `${cls}/${why}`;
    this.#refused.set(key, (this.#refused.get(key) ?? 0) + 1);
    if (this.#reportTimer || !this.log) return;
    this.#reportTimer = setTimeout(() => {
      this.#reportTimer = undefined;
      const counts = Object.fromEntries(this.#refused);
      this.#refused.clear();
      this.log?.warn("streams refused by the relay's limits", {
        code: "streams-refused",
        refused: counts,
      });
    }, 10_000);
    Deno.unrefTimer(this.#reportTimer as unknown as number);
  }
}

/**
 * nghttp2 — the HTTP/2 library under Deno's node:http2 and so under the
 * controller's grpc-js server — answers more than 1000 RST_STREAM frames
 * received on one connection, refilled at 33 per second, with
 * GOAWAY(INTERNAL_ERROR): every call on that connection dies. No
 * node:http2 or grpc-js option changes that budget (tested). The relay
 * therefore never spends more than half of it on one session: resets go out
 * at once while tokens last, then at a steady rate, taken in turn from each
 * client that has resets waiting, so a client resetting in bulk waits behind
 * its own queue while another client's one reset goes out at the next token.
 * A stream waiting for its reset is paused (the controller can send at most
 * its stream window) and keeps its client's slots.
 */
export const RESET_BUDGET = { burst: 500, perSecond: 20 };

export interface Resettable {
  readonly closed: boolean;
  readonly destroyed: boolean;
  close(code?: number): void;
}

export class ResetPacer {
  #bucket: TokenBucket;
  /** Waiting resets per owner, served round-robin. */
  #queues = new Map<string, Set<{ stream: Resettable; code: number }>>();
  #timer?: ReturnType<typeof setTimeout>;
  #sent = 0;
  #deferred = 0;

  constructor(
    private readonly budget = RESET_BUDGET,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#bucket = new TokenBucket(budget.perSecond, budget.burst, now());
  }

  /** Resets sent and resets that had to wait (tests, metrics). */
  get stats(): { sent: number; deferred: number; waiting: number } {
    let waiting = 0;
    for (const q of this.#queues.values()) waiting += q.size;
    return { sent: this.#sent, deferred: this.#deferred, waiting };
  }

  /** Resets `stream` now or as soon as the budget allows. */
  reset(owner: string, stream: Resettable, code: number): void {
    if (stream.closed || stream.destroyed) return;
    if (this.#queues.size === 0 && this.#bucket.take(this.now())) {
      this.#sent++;
      stream.close(code);
      return;
    }
    this.#deferred++;
    let q = this.#queues.get(owner);
    if (!q) this.#queues.set(owner, q = new Set());
    q.add({ stream, code });
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer || this.#queues.size === 0) return;
    const wait = Math.max(1, this.#bucket.waitMs(this.now()));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#drain();
    }, wait);
  }

  #drain(): void {
    // Bounded: each pass sends at most one reset per owner and stops when the bucket is empty.
    for (let pass = 0; pass < 10_000 && this.#queues.size > 0; pass++) {
      let progressed = false;
      for (const [owner, q] of this.#queues) {
        const item = q.values().next().value;
        if (!item) {
          this.#queues.delete(owner);
          continue;
        }
        q.delete(item);
        if (q.size === 0) this.#queues.delete(owner);
        if (item.stream.closed || item.stream.destroyed) {
          progressed = true;
          continue; // ended on its own meanwhile: no reset needed
        }
        if (!this.#bucket.take(this.now())) {
          // Put it back at the front of its owner's turn.
          const rest = this.#queues.get(owner);
          this.#queues.set(owner, new Set([item, ...(rest ?? [])]));
          this.#schedule();
          return;
        }
        this.#sent++;
        item.stream.close(item.code);
        progressed = true;
      }
      if (!progressed) break;
    }
    this.#schedule();
  }

  /** Forgets waiting resets (their session is gone). */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queues.clear();
  }
}
