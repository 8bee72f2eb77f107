/**
 * Connection limits, without any I/O: connection budgets (a total cap and a
 * per-source-address cap, nested so one process-wide budget holds every
 * listener's), the caps derived from the process's file-descriptor limit,
 * and the duration settings of the time limits.
 *
 * Why caps at all: every accepted connection costs a file descriptor, and a
 * Deno listener that once hits EMFILE never accepts again (denoland/deno#10148).
 * So connections beyond the caps are closed at once, and the caps leave room
 * below the fd limit for what is accepted in one burst before it is closed,
 * for outgoing connections (egress, tunnels) and for files.
 */
import { PharosError } from "./errors.ts";
import type { SettingSpec } from "./settings.ts";

export class LimitError extends PharosError {}

export interface ConnectionCaps {
  /** Connections open at once. */
  total: number;
  /** Connections open at once from one source (an IPv4 address or an IPv6 /64). */
  perSource: number;
}

export type Refusal = "total" | "per-source";

export type Admission =
  | { ok: true; /** Gives the slot back; idempotent. */ release(): void }
  | { ok: false; reason: Refusal };

/**
 * Counts open connections by source and admits a new one only below both
 * caps, its own and its parent's (a parent's per-source cap applies to the
 * sources across all its children).
 */
export class ConnectionBudget {
  #open = 0;
  #bySource = new Map<string, number>();

  constructor(readonly caps: ConnectionCaps, readonly parent?: ConnectionBudget) {
    for (const [k, v] of Object.entries(caps)) {
      if (!Number.isInteger(v) || v < 1) {
        throw new LimitError("bad-limit", `connection cap ${k} must be a positive integer`);
      }
    }
  }

  get open(): number {
    return this.#open;
  }

  /** Open connections from `source` (already a sourceKey). */
  openFrom(source: string): number {
    return this.#bySource.get(source) ?? 0;
  }

  /** Number of distinct sources with an open connection. */
  get sources(): number {
    return this.#bySource.size;
  }

  /** Takes a slot for a connection from `address` (any textual IP form). */
  admit(address: string): Admission {
    const source = sourceKey(address);
    const refusal = this.#check(source);
    if (refusal) return { ok: false, reason: refusal };
    const chain = this.#chain();
    for (const b of chain) b.#take(source);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        for (const b of chain) b.#give(source);
      },
    };
  }

  /** This budget and its ancestors. */
  #chain(): ConnectionBudget[] {
    const chain: ConnectionBudget[] = [this];
    for (let b = this.parent; b; b = b.parent) chain.push(b);
    return chain;
  }

  #check(source: string): Refusal | null {
    for (const b of this.#chain()) {
      if (b.#open >= b.caps.total) return "total";
      if ((b.#bySource.get(source) ?? 0) >= b.caps.perSource) return "per-source";
    }
    return null;
  }

  #take(source: string): void {
    this.#open++;
    this.#bySource.set(source, (this.#bySource.get(source) ?? 0) + 1);
  }

  #give(source: string): void {
    this.#open--;
    const n = (this.#bySource.get(source) ?? 1) - 1;
    if (n <= 0) this.#bySource.delete(source);
    else this.#bySource.set(source, n);
  }
}

/**
 * The source a connection is counted against: an IPv4 address as is (also
 * when IPv4-mapped), an IPv6 address by its /64 (what one subscriber
 * usually holds), anything else as given.
 */
export function sourceKey(address: string): string {
  let a = address.trim().toLowerCase();
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  if (a.startsWith("[") && a.endsWith("]")) a = a.slice(1, -1);
  const mapped = a.match(/^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/);
  if (mapped) return mapped[1];
  if (!a.includes(":")) return a;
  const groups = expandIpv6(a);
  return groups ? `${groups.slice(0, 4).join(":")}::/64` : a;
}

function expandIpv6(a: string): string[] | null {
  const halves = a.split("::");
  if (halves.length > 2) return null;
  const part = (s: string) => (s === "" ? [] : s.split(":"));
  const head = part(halves[0]);
  const tail = halves.length === 2 ? part(halves[1]) : [];
  // An embedded IPv4 tail (e.g. 64:ff9b::1.2.3.4) counts as two groups.
  const last = tail.length ? tail : head;
  if (last.length && last[last.length - 1].includes(".")) {
    const v4 = last.pop()!.split(".").map(Number);
    if (v4.length !== 4 || v4.some((n) => !(n >= 0 && n <= 255))) return null;
    last.push(((v4[0] << 8) | v4[1]).toString(16), ((v4[2] << 8) | v4[3]).toString(16));
  }
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 0) return null;
  const all = [...head, ...Array(missing).fill("0"), ...tail];
  if (all.some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return null;
  return all.map((g) => g.replace(/^0+(?=.)/, ""));
}

/** Default caps never exceed this many connections (memory, not fds, is then the limit). */
export const AUTO_TOTAL_CEILING = 50_000;
/** Share of the fd limit the connection caps may use; the rest is headroom. */
export const FD_SHARE = 5 / 8;
/** An fd limit we cannot read is taken to be this (the usual Linux soft default). */
export const ASSUMED_NOFILE = 1024;

/**
 * The caps for "auto" settings, from the process's RLIMIT_NOFILE soft limit:
 * 5/8 of it in total (at most AUTO_TOTAL_CEILING), and 1/16 of that per
 * source (4 to 1024). At 1024 fds: 640 total, 40 per source; at 65536:
 * 40960 and 1024. Explicit settings win; the per-source cap never exceeds
 * the total.
 */
export function deriveCaps(
  nofile: number | null,
  explicit: { total?: number; perSource?: number } = {},
): ConnectionCaps {
  const fds = nofile && nofile > 0 ? nofile : ASSUMED_NOFILE;
  const total = explicit.total ??
    Math.max(16, Math.min(AUTO_TOTAL_CEILING, Math.floor(fds * FD_SHARE)));
  const perSource = explicit.perSource ?? Math.min(1024, Math.max(4, Math.floor(total / 16)));
  return { total, perSource: Math.min(perSource, total) };
}

/**
 * A small fixed pool carved out of `total` for a listener that only the
 * controller uses (tunnel, egress) or that is local (dashboard), so a
 * flood on the public port cannot take its slots: 1/16 of the total,
 * between 8 and 64.
 */
export function smallPool(total: number): number {
  return Math.max(8, Math.min(64, Math.floor(total / 16)));
}

/** "auto" or a positive integer count (a setting's check). */
export function checkCount(v: string): string | undefined {
  if (v === "auto") return undefined;
  return /^[1-9]\d{0,6}$/.test(v) ? undefined : `use "auto" or a whole number from 1 to 9999999`;
}

/** The number of a checked count setting, undefined for "auto". */
export function parseCount(v: string): number | undefined {
  return v === "auto" ? undefined : Number(v);
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const MAX_DURATION_MS = 24 * 3_600_000;

/** A duration such as "500ms", "10s", "2m" or "1h" (a setting's check). */
export function checkDuration(v: string): string | undefined {
  const m = v.match(/^(\d+(?:\.\d+)?)(ms|s|m|h)$/);
  const ms = m ? Number(m[1]) * UNIT_MS[m[2]] : NaN;
  if (!(ms >= 1 && ms <= MAX_DURATION_MS)) {
    return `expected a duration from 1ms to 24h such as 500ms, 10s or 2m`;
  }
  return undefined;
}

/** Milliseconds of a duration setting; throws LimitError on a bad one. */
export function parseDuration(v: string): number {
  const problem = checkDuration(v);
  if (problem) throw new LimitError("bad-limit", `"${v}": ${problem}`);
  const m = v.match(/^(\d+(?:\.\d+)?)(ms|s|m|h)$/)!;
  return Math.round(Number(m[1]) * UNIT_MS[m[2]]);
}

/** The time limits of one listener, in milliseconds. */
export interface TimeLimits {
  /** From accepting the TCP connection to a finished TLS handshake. */
  handshakeMs: number;
  /**
   * From the TLS handshake (accept, on a plain listener) to the protocol's
   * first word: the HTTP/2 preface and SETTINGS, the first HTTP request's
   * headers, or, on controller-only ports, the verified controller.
   */
  prefaceMs: number;
  /** A connection with no call (HTTP/2 stream) or request in progress for this long is closed. */
  idleMs: number;
}

export const DEFAULT_TIME_LIMITS: TimeLimits = {
  handshakeMs: 10_000,
  prefaceMs: 10_000,
  idleMs: 120_000,
};

/** The connection settings both programs take, in their config as these keys. */
export interface ConnectionSettingValues {
  maxConnections: string;
  maxConnectionsPerSource: string;
  handshakeTimeout: string;
  prefaceTimeout: string;
  idleTimeout: string;
}

/**
 * The specs of the connection settings, with environment variables named
 * `${envPrefix}MAX_CONNECTIONS` etc.
 */
export function connectionSettingSpecs(envPrefix: string): SettingSpec[] {
  return [
    {
      key: "maxConnections",
      flag: "max-connections",
      env: `${envPrefix}MAX_CONNECTIONS`,
      default: "auto",
      check: checkCount,
      arg: "N|auto",
      help: "connections open at once, all listeners (auto: 5/8 of the fd limit)",
    },
    {
      key: "maxConnectionsPerSource",
      flag: "max-connections-per-source",
      env: `${envPrefix}MAX_CONNECTIONS_PER_SOURCE`,
      default: "auto",
      check: checkCount,
      arg: "N|auto",
      help: "connections open at once from one IPv4 address or IPv6 /64 (auto: total/16)",
    },
    {
      key: "handshakeTimeout",
      flag: "handshake-timeout",
      env: `${envPrefix}HANDSHAKE_TIMEOUT`,
      default: "10s",
      check: checkDuration,
      arg: "DURATION",
      help: "time from connect to a finished TLS handshake",
    },
    {
      key: "prefaceTimeout",
      flag: "preface-timeout",
      env: `${envPrefix}PREFACE_TIMEOUT`,
      default: "10s",
      check: checkDuration,
      arg: "DURATION",
      help: "time from TLS to the HTTP/2 preface (or first HTTP request, or verified controller)",
    },
    {
      key: "idleTimeout",
      flag: "idle-timeout",
      env: `${envPrefix}IDLE_TIMEOUT`,
      default: "120s",
      check: checkDuration,
      arg: "DURATION",
      help: "a connection without a call or request for this long is closed",
    },
  ];
}

/** Time limits from checked settings. */
export function timeLimitsOf(v: ConnectionSettingValues): TimeLimits {
  return {
    handshakeMs: parseDuration(v.handshakeTimeout),
    prefaceMs: parseDuration(v.prefaceTimeout),
    idleMs: parseDuration(v.idleTimeout),
  };
}

/**
 * How a process shares its connection budget: `smallPools` small fixed
 * pools (controller-only ports, the dashboard; smallPool() each) are set
 * apart, and the public listener gets the rest; all under one global cap.
 */
export class ConnectionPlan {
  readonly global: ConnectionBudget;
  readonly pool: number;

  constructor(readonly caps: ConnectionCaps, readonly smallPools = 0) {
    this.global = new ConnectionBudget({ total: caps.total, perSource: caps.total });
    this.pool = Math.min(smallPool(caps.total), caps.total);
  }

  /** The public listener (devices): what the small pools leave, the per-source cap as set. */
  publicBudget(): ConnectionBudget {
    const total = Math.max(1, this.caps.total - this.smallPools * this.pool);
    return new ConnectionBudget(
      { total, perSource: Math.min(this.caps.perSource, total) },
      this.global,
    );
  }

  /** A port only the controller uses (one address): a small pool, at most 16 per source. */
  controllerOnlyBudget(): ConnectionBudget {
    return new ConnectionBudget(
      { total: this.pool, perSource: Math.min(this.caps.perSource, 16, this.pool) },
      this.global,
    );
  }

  /** A local listener (the dashboard, usually behind one reverse proxy): a small pool, no per-source cap. */
  localBudget(): ConnectionBudget {
    return new ConnectionBudget({ total: this.pool, perSource: this.pool }, this.global);
  }
}
