/**
 * Long-running operations started over the API (node onboarding, resealing
 * many profiles): each gets an id at once (202), runs in the background,
 * and keeps its progress events (controller/onboarding/events.ts:
 * OnboardingProgress, ResealProgress or GeoipProgress) for GET /api/operations/{id};
 * the same events go out on the change feed. Bounded: the newest
 * MAX_OPERATIONS operations and MAX_EVENTS events each are kept.
 */
import type { Logger } from "../../core/log.ts";
import type { GeoipProgress, OnboardingProgress, ResealProgress } from "../onboarding/events.ts";

/** What an operation reports; `kind` tells them apart ("node"/"relay" or "reseal"). */
export type OperationEvent = OnboardingProgress | ResealProgress | GeoipProgress;

export const MAX_OPERATIONS = 100;
const MAX_EVENTS = 200;

export interface Operation {
  id: string;
  kind: string;
  status: "running" | "done" | "failed";
  error: string | null;
  events: OperationEvent[];
  startedAt: string;
}

export type OperationRun<E extends OperationEvent = OnboardingProgress> = (
  emit: (e: E) => void,
  /** This operation's id (events carry it as `run`). */
  id: string,
) => Promise<void>;

export class Operations {
  readonly #ops = new Map<string, Operation>();

  constructor(
    private readonly publish: (e: OperationEvent) => void,
    private readonly log?: Logger,
  ) {}

  start<E extends OperationEvent>(kind: string, run: OperationRun<E>): Operation {
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
    const emit = (e: E) => {
      op.events.push(e);
      if (op.events.length > MAX_EVENTS) op.events.splice(0, op.events.length - MAX_EVENTS);
      this.publish(e);
    };
    run(emit, op.id).then(
      () => void (op.status = "done"),
      (e) => {
        op.status = "failed";
        op.error = String((e as Error)?.message ?? e).slice(0, 500);
        this.log?.warn("operation failed", { code: "operation-failed", kind, id: op.id, error: e });
      },
    );
    return op;
  }

  /** The operation of `kind` still running, if any (one reseal of all profiles at a time). */
  running(kind: string): Operation | undefined {
    for (const op of this.#ops.values()) {
      if (op.kind === kind && op.status === "running") return op;
    }
    return undefined;
  }

  get(id: string): Operation | undefined {
    return this.#ops.get(id);
  }
}
