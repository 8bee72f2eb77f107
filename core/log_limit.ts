/**
 * Rate-limited logging for lines a remote party can trigger (one per
 * connection, per call, per refusal): a token bucket per (level, message,
 * source) and one shared bucket for all of them, so neither one noisy
 * source nor many sources together can flood the log. What is dropped is
 * counted, and one summary line per interval says how much and from where:
 *
 * {"msg":"log lines suppressed","code":"log-suppressed","suppressed":812,
 *  "total_suppressed":812,"top":[{"msg":"call","source":"198.51.100.7","count":790},…]}
 *
 * The source of a line is its `remote` field, else `source`, else `device`.
 */
import type { Logger } from "./log.ts";

export interface LogLimitOptions {
  /** Lines one key may write at once. */
  burst?: number;
  /** Lines per second one key earns back. */
  perSecond?: number;
  /** Lines all keys together may write at once. */
  globalBurst?: number;
  /** Lines per second all keys together earn back. */
  globalPerSecond?: number;
  /** At most one summary line per this many ms (while lines are being dropped). */
  summaryIntervalMs?: number;
  /** Keys tracked at once; beyond, new keys share one bucket. */
  maxKeys?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export const DEFAULT_LOG_LIMITS = {
  burst: 20,
  perSecond: 5,
  globalBurst: 2000,
  globalPerSecond: 1000,
  summaryIntervalMs: 10_000,
  maxKeys: 4096,
} as const;

export interface LogLimitStats {
  /** Lines passed on. */
  emitted: number;
  /** Lines dropped since the start. */
  suppressed: number;
  /** Summary lines written. */
  summaries: number;
}

export interface LimitedLogger extends Logger {
  /** Counters shared by this logger and its children. */
  readonly stats: Readonly<LogLimitStats>;
  /** Writes the pending summary (if lines were dropped) now. */
  flush(): void;
  /** Flushes and stops the summary timer. */
  close(): void;
  child(fields: Record<string, unknown>): LimitedLogger;
}

interface Bucket {
  tokens: number;
  at: number;
  /** Dropped since the last summary. */
  dropped: number;
  msg: string;
  source: string;
}

const OVERFLOW_KEY = "\u0000overflow";

class Limiter {
  readonly stats: LogLimitStats = { emitted: 0, suppressed: 0, summaries: 0 };
  readonly o: Required<Omit<LogLimitOptions, "now">>;
  readonly now: () => number;
  #buckets = new Map<string, Bucket>();
  #global: { tokens: number; at: number };
  #globalDropped = 0;
  #pending = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly out: Logger, opts: LogLimitOptions) {
    this.o = { ...DEFAULT_LOG_LIMITS, ...stripUndefined(opts) };
    this.now = opts.now ?? (() => performance.now());
    this.#global = { tokens: this.o.globalBurst, at: this.now() };
  }

  /** True when the line may be written. */
  admit(level: string, msg: string, fields: Record<string, unknown> | undefined): boolean {
    const source = sourceOf(fields);
    const t = this.now();
    const key = `${level}\u0000${msg}\u0000${source}`;
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.o.maxKeys) this.#sweep(t);
      if (this.#buckets.size >= this.o.maxKeys) {
        b = this.#buckets.get(OVERFLOW_KEY);
        if (!b) {
          b = { tokens: this.o.burst, at: t, dropped: 0, msg: "(many)", source: "(many)" };
          this.#buckets.set(OVERFLOW_KEY, b);
        }
      } else {
        b = { tokens: this.o.burst, at: t, dropped: 0, msg, source };
        this.#buckets.set(key, b);
      }
    }
    refill(b, t, this.o.burst, this.o.perSecond);
    refill(this.#global, t, this.o.globalBurst, this.o.globalPerSecond);
    if (b.tokens >= 1 && this.#global.tokens >= 1) {
      b.tokens -= 1;
      this.#global.tokens -= 1;
      this.stats.emitted++;
      return true;
    }
    if (b.tokens >= 1) this.#globalDropped++;
    b.dropped++;
    this.#pending++;
    this.stats.suppressed++;
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, this.o.summaryIntervalMs);
    return false;
  }

  flush(): void {
    if (this.#pending === 0) return;
    const top = [...this.#buckets.values()].filter((b) => b.dropped > 0)
      .sort((a, b) => b.dropped - a.dropped).slice(0, 5)
      .map((b) => ({ msg: b.msg, source: b.source, count: b.dropped }));
    for (const b of this.#buckets.values()) b.dropped = 0;
    const fields = {
      code: "log-suppressed",
      suppressed: this.#pending,
      total_suppressed: this.stats.suppressed,
      by_global_limit: this.#globalDropped,
      top,
    };
    this.#pending = 0;
    this.#globalDropped = 0;
    this.stats.summaries++;
    this.out.warn("log lines suppressed", fields);
    this.#sweep(this.now());
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.flush();
  }

  /** Forgets keys that are full again and owe no summary. */
  #sweep(t: number): void {
    for (const [k, b] of this.#buckets) {
      refill(b, t, this.o.burst, this.o.perSecond);
      if (b.dropped === 0 && b.tokens >= this.o.burst) this.#buckets.delete(k);
    }
  }
}

function refill(b: { tokens: number; at: number }, t: number, burst: number, rate: number): void {
  if (t > b.at) {
    b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
    b.at = t;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function sourceOf(fields: Record<string, unknown> | undefined): string {
  const v = fields?.remote ?? fields?.source ?? fields?.device;
  const s = v === undefined || v === null ? "" : String(v);
  // A `remote` of "addr:port" / "[v6]:port" counts as its address: one source per client host.
  const host = fields?.remote === v ? /^(\[[^\]]*\]|[^:]*):\d+$/.exec(s)?.[1] : undefined;
  return (host ?? s).slice(0, 64);
}

function wrap(limiter: Limiter, base: Logger): LimitedLogger {
  const at = (level: "debug" | "info" | "warn" | "error") =>
  (
    msg: string,
    fields?: Record<string, unknown>,
  ) => {
    if (base.enabled?.(level) === false) return; // never written: neither counted nor dropped
    if (limiter.admit(level, msg, fields)) base[level](msg, fields);
  };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (fields) => wrap(limiter, base.child(fields)),
    get stats() {
      return limiter.stats;
    },
    flush: () => limiter.flush(),
    close: () => limiter.close(),
    enabled: (level) => base.enabled?.(level) ?? true,
  };
}

/**
 * A logger that passes lines on to `log` within the limits and writes the
 * summaries there too.
 * @example const noisy = rateLimitedLogger(log); noisy.warn("refused", { remote })
 */
export function rateLimitedLogger(log: Logger, opts: LogLimitOptions = {}): LimitedLogger {
  return wrap(new Limiter(log, opts), log);
}
