/**
 * Long-running operations started over the API (node onboarding): each gets
 * an id at once (202), runs in the background, and keeps its progress
 * events (controller/onboarding/events.ts) for GET /api/operations/{id};
 * the same events go out on the change feed. Bounded: the newest
 * MAX_OPERATIONS operations and MAX_EVENTS events each are kept.
 */
import type { Logger } from "../../core/log.ts";
import type { OnboardingProgress } from "../onboarding/events.ts";

export const MAX_OPERATIONS = 100;
const MAX_EVENTS = 200;

export interface Operation {
  id: string;
  kind: string;
  status: "running" | "done" | "failed";
  error: string | null;
  events: OnboardingProgress[];
  startedAt: string;
}

export type OperationRun = (emit: (e: OnboardingProgress) => void) => Promise<void>;

export class Operations {
  readonly #ops = new Map<string, Operation>();

  constructor(
    private readonly publish: (e: OnboardingProgress) => void,
    private readonly log?: Logger,
  ) {}

  start(kind: string, run: OperationRun): Operation {
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
    const emit = (e: OnboardingProgress) => {
      op.events.push(e);
      if (op.events.length > MAX_EVENTS) op.events.splice(0, op.events.length - MAX_EVENTS);
      this.publish(e);
    };
    run(emit).then(
      () => void (op.status = "done"),
      (e) => {
        op.status = "failed";
        op.error = String((e as Error)?.message ?? e).slice(0, 500);
        this.log?.warn("operation failed", { code: "operation-failed", kind, id: op.id, error: e });
      },
    );
    return op;
  }

  get(id: string): Operation | undefined {
    return this.#ops.get(id);
  }
}
