/**
 * Onboarding progress as a stream of events: the CLI prints each one as it
 * happens, and a long-running controller can fan them out (OnboardingEvents)
 * to dashboards over WebSocket later. Events carry no secret (no password,
 * no key): a host-key fingerprint, a certificate serial, a step's outcome.
 *
 * Per run: for each step a `started`, maybe some `progress` (e.g. each wait
 * for the service), then a `done` (or `failed`, which ends the run); after
 * the last step one `finished`.
 */
import type { Logger } from "../../core/log.ts";

export type OnboardingKind = "node" | "relay";

export type StepName =
  | "connect"
  | "privilege"
  | "install"
  | "gen-csr"
  | "sign"
  | "upload"
  | "start"
  | "ready";

export const STEPS: readonly StepName[] = [
  "connect",
  "privilege",
  "install",
  "gen-csr",
  "sign",
  "upload",
  "start",
  "ready",
];

export type ProgressStatus = "started" | "progress" | "done" | "failed" | "finished";

export interface OnboardingProgress {
  /** One id per onboarding run (a `nodes add` / `relays add` invocation). */
  run: string;
  kind: OnboardingKind;
  /** The node's or relay's row id. */
  id: string;
  /** Node name or relay host. */
  name: string;
  /** `user@host:port`. */
  target: string;
  step: StepName;
  /** 1-based position of the step, and the number of steps. */
  index: number;
  total: number;
  status: ProgressStatus;
  /** One line for people. */
  message: string;
  /** ISO 8601. */
  time: string;
  /** Error code when `failed`. */
  code?: string;
  /** Facts a page may show: `fingerprint`, `serial`, `privilege`, … */
  details?: Record<string, string>;
}

export type ProgressListener = (e: OnboardingProgress) => void;

/**
 * A hub for the events of every onboarding in this process: subscribers
 * (a dashboard's WebSocket) hear each event; `recent()` replays the last
 * ones to a page opened late. A throwing listener is dropped, never stops
 * the onboarding.
 */
export class OnboardingEvents {
  readonly #listeners = new Set<ProgressListener>();
  readonly #recent: OnboardingProgress[] = [];

  constructor(private readonly keep = 500) {}

  subscribe(fn: ProgressListener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  emit = (e: OnboardingProgress): void => {
    this.#recent.push(e);
    if (this.#recent.length > this.keep) this.#recent.splice(0, this.#recent.length - this.keep);
    for (const fn of [...this.#listeners]) {
      try {
        fn(e);
      } catch {
        this.#listeners.delete(fn);
      }
    }
  };

  recent(): OnboardingProgress[] {
    return [...this.#recent];
  }
}

/** One line per event for the CLI: `[3/8] install: ok — install script finished`. */
export function formatProgress(e: OnboardingProgress): string {
  if (e.status === "finished") return `[done] ${e.message}`;
  const head = `[${e.index}/${e.total}] ${e.step}:`;
  switch (e.status) {
    case "started":
      return `${head} ${e.message} …`;
    case "progress":
      return `${head} … ${e.message}`;
    case "done":
      return `${head} ok — ${e.message}`;
    case "failed":
      return `${head} FAILED (${e.code ?? "error"}) — ${e.message}`;
  }
}

/** A listener logging each event as one JSON line (`code`: `onboarding-<status>`). */
export function progressLogger(log: Logger): ProgressListener {
  return (e) => {
    const fields = {
      code: e.status === "failed" ? e.code ?? "onboarding-failed" : `onboarding-${e.status}`,
      run: e.run,
      kind: e.kind,
      id: e.id,
      target: e.target,
      step: e.step,
      ...e.details,
    };
    if (e.status === "failed") log.error(e.message, fields);
    else log.info(e.message, fields);
  };
}

/**
 * Progress of resealing many device profiles (POST /api/profiles/reseal,
 * `cox profiles reseal`): a sibling of OnboardingProgress for the same
 * operations and feed. A `started` with the device count, `progress`
 * ("n of m devices resealed", throttled), a `failed` per device that could
 * not be resealed (the others go on), and one closing `finished`.
 */
export interface ResealProgress {
  /** The operation's id. */
  run: string;
  kind: "reseal";
  status: "started" | "progress" | "failed" | "finished";
  /** Devices finished (resealed or failed), how many failed, how many are planned. */
  done: number;
  failed: number;
  total: number;
  /** The user whose devices are resealed; absent when all users' are. */
  user_id?: string;
  /** The device a `failed` event is about. */
  device_id?: string;
  /** One line for people. */
  message: string;
  /** ISO 8601. */
  time: string;
  /** Error code when `failed`. */
  code?: string;
}

/** One line per reseal event for the CLI: `[12/40] 12 of 40 devices resealed`. */
export function formatResealProgress(e: ResealProgress): string {
  if (e.status === "finished") return `[done] ${e.message}`;
  if (e.status === "failed") return `[${e.done}/${e.total}] FAILED (${e.code}) — ${e.message}`;
  return `[${e.done}/${e.total}] ${e.message}`;
}

/**
 * Progress of a GeoIP database download (controller/geoip/operation.ts):
 * the onboarding event's shape with its own kind and phases, so the
 * operation page shows it as steps.
 */
export interface GeoipProgress extends Omit<OnboardingProgress, "kind" | "step"> {
  kind: "geoip";
  step: "download" | "validate" | "install";
}
