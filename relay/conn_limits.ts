/**
 * The connection settings a listener is started with, and the process's
 * plan of caps derived from its fd limit (RLIMIT_NOFILE, /proc/self/limits).
 */
import {
  ConnectionPlan,
  type ConnectionSettingValues,
  deriveCaps,
  parseCount,
  type TimeLimits,
} from "../core/conn_limits.ts";
import type { Logger } from "../core/log.ts";
import type { ConnectionBudget } from "../core/conn_limits.ts";
import type { WatchdogOptions } from "./conn_guard.ts";
import { softNofile } from "./host/fd_limit.ts";

export interface ConnectionSettings {
  /** The listener's budget (a child of the process's global one). */
  budget?: ConnectionBudget;
  limits?: Partial<TimeLimits>;
  /** Rate-limited logger for per-connection and per-call lines (shared by the process). */
  noisy?: Logger;
  watchdog?: Partial<WatchdogOptions>;
  /** The listener cannot be rebuilt: the relay exits non-zero, the controller keeps trying. */
  onFatal?: (e: Error) => void;
  /** At most one "connections" summary line per this many ms. */
  statsIntervalMs?: number;
}

let fallback: ConnectionPlan | undefined;

/**
 * The plan used by listeners started without one (tests, fixtures): caps
 * from this process's fd limit, no pools set apart.
 */
export function defaultPlan(): ConnectionPlan {
  fallback ??= new ConnectionPlan(deriveCaps(softNofile()));
  return fallback;
}

/** The plan from the settings ("auto" derives from the fd limit) with `smallPools` set apart. */
export function planFromSettings(
  v: Pick<ConnectionSettingValues, "maxConnections" | "maxConnectionsPerSource">,
  smallPools: number,
  nofile: number | null = softNofile(),
): ConnectionPlan {
  return new ConnectionPlan(
    deriveCaps(nofile, {
      total: parseCount(v.maxConnections),
      perSource: parseCount(v.maxConnectionsPerSource),
    }),
    smallPools,
  );
}
