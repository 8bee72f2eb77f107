/**
 * Long-running operations started over the API (node onboarding, resealing
 * many profiles, a GeoIP download): each gets an id at once (202), runs in
 * the background, and keeps its progress events (controller/onboarding/events.ts:
 * OnboardingProgress, ResealProgress or GeoipProgress) for GET /api/operations/{id};
 * the same events go out on the change feed. Bounded: the newest
 * MAX_OPERATIONS operations and MAX_EVENTS events each are kept.
 *
 * Each run gets an AbortSignal: `close()` (the controller stopping) aborts
 * every run and waits, bounded, for them to end, so none works on after the
 * database is closed.
 */
import { PharosError } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import type { GeoipProgress, OnboardingProgress, ResealProgress } from "../onboarding/events.ts";

/** What an operation reports; `kind` tells them apart ("node"/"relay" or "reseal"). */
export type OperationEvent = OnboardingProgress | ResealProgress | GeoipProgress;

export const MAX_OPERATIONS = 100;
const MAX_EVENTS = 200;
/** How long `close()` waits for aborted runs to end. */
export const CLOSE_WAIT_MS = 10_000;

export interface Operation {
  id: string;
  kind: string;
  /** A queued follow-up (`startOrQueue`) is "running" with no events until it begins. */
  status: "running" | "done" | "failed";
  error: string | null;
  events: OperationEvent[];
  startedAt: string;
}

export type OperationRun<E extends OperationEvent = OnboardingProgress> = (
  emit: (e: E) => void,
  /** This operation's id (events carry it as `run`). */
  id: string,
  /** Aborted when the controller stops: the run ends at its next safe point. */
  signal: AbortSignal,
) => Promise<void>;

/** Why a run was aborted (its abort reason): the controller is stopping. */
export function stoppedError(): PharosError {
  return new PharosError(
    "operation-stopped",
    "stopped because the controller shut down; start it again once the controller runs",
  );
}

export class Operations {
  readonly #ops = new Map<string, Operation>();
  /** The settling of each run in progress. */
  readonly #runs = new Set<Promise<void>>();
  /** Per kind, the one follow-up waiting for the running operation to end. */
  readonly #queued = new Map<string, { op: Operation; run: OperationRun<never> }>();
  readonly #abort = new AbortController();

  constructor(
    private readonly publish: (e: OperationEvent) => void,
    private readonly log?: Logger,
  ) {}

  start<E extends OperationEvent>(kind: string, run: OperationRun<E>): Operation {
    const op = this.#add(kind);
    this.#launch(op, run);
    return op;
  }

  /**
   * Starts `run`, or — while an operation of `kind` runs — queues it as that
   * kind's one follow-up, begun when the running one ends (it may have done
   * part of its work with the state before this request). A request while a
   * follow-up waits joins it: its operation is returned.
   */
  startOrQueue<E extends OperationEvent>(kind: string, run: OperationRun<E>): Operation {
    const queued = this.#queued.get(kind);
    if (queued) return queued.op;
    if (!this.running(kind)) return this.start(kind, run);
    const op = this.#add(kind);
    this.#queued.set(kind, { op, run: run as OperationRun<never> });
    return op;
  }

  /** The operation of `kind` in progress (not a queued follow-up), if any. */
  running(kind: string): Operation | undefined {
    const queued = this.#queued.get(kind)?.op;
    for (const op of this.#ops.values()) {
      if (op.kind === kind && op.status === "running" && op !== queued) return op;
    }
    return undefined;
  }

  get(id: string): Operation | undefined {
    return this.#ops.get(id);
  }

  /**
   * Aborts every run, fails the queued follow-ups and waits up to `waitMs`
   * for the runs to end; operations started afterwards fail at once.
   */
  async close(waitMs = CLOSE_WAIT_MS): Promise<void> {
    this.#abort.abort(stoppedError());
    for (const { op } of this.#queued.values()) this.#settle(op, stoppedError());
    this.#queued.clear();
    if (this.#runs.size === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = await Promise.race([
      Promise.allSettled([...this.#runs]).then(() => true),
      new Promise<false>((r) => timer = setTimeout(() => r(false), waitMs)),
    ]);
    clearTimeout(timer);
    if (!waited) {
      this.log?.warn("operations still running after the stop", {
        code: "operation-stop-timeout",
        running: this.#runs.size,
        wait_ms: waitMs,
      });
    }
  }

  #add(kind: string): Operation {
    const op: Operation = {
      id: crypto.randomUUID(),
      kind,
      status: "running",
      error: null,
      events: [],
      startedAt: new Date().toISOString(),
    };
    this.#ops.set(op.id, op);
    for (const old of this.#ops.keys()) {
      if (this.#ops.size <= MAX_OPERATIONS) break;
      if (this.#ops.get(old)!.status !== "running") this.#ops.delete(old);
    }
    return op;
  }

  #launch<E extends OperationEvent>(op: Operation, run: OperationRun<E>): void {
    const signal = this.#abort.signal;
    if (signal.aborted) return this.#settle(op, signal.reason);
    op.startedAt = new Date().toISOString();
    const emit = (e: E) => {
      op.events.push(e);
      if (op.events.length > MAX_EVENTS) op.events.splice(0, op.events.length - MAX_EVENTS);
      this.publish(e);
    };
    let running: Promise<void>;
    try {
      running = run(emit, op.id, signal); // begun at once: it may claim what it works on
    } catch (e) {
      running = Promise.reject(e);
    }
    const settled: Promise<void> = running
      .then(() => this.#settle(op), (e) => this.#settle(op, e))
      .finally(() => {
        this.#runs.delete(settled);
        const next = this.#queued.get(op.kind);
        if (next) {
          this.#queued.delete(op.kind);
          this.#launch(next.op, next.run);
        }
      });
    this.#runs.add(settled);
  }

  #settle(op: Operation, error?: unknown): void {
    if (error === undefined) {
      op.status = "done";
      return;
    }
    op.status = "failed";
    op.error = String((error as Error)?.message ?? error).slice(0, 500);
    const fields = { kind: op.kind, id: op.id, error };
    if (this.#abort.signal.aborted) {
      this.log?.info("operation stopped", { code: "operation-stopped", ...fields });
    } else this.log?.warn("operation failed", { code: "operation-failed", ...fields });
  }
}
