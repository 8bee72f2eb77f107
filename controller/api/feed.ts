/**
 * The live change feed behind `/api/events`: every committed change (from
 * the service layer's commit hook) and every event a fleet part publishes
 * (node up/down, peer connected, alert, onboarding progress, `observed`:
 * nodes whose observed state changed, at most one such event a second)
 * gets the next sequence number and goes to every subscriber.
 *
 * Resume: the last `capacity` events stay in a ring (`observed` batches
 * excepted: they are live only, since a tab that reconnects reloads its page
 * anyway, and on a busy fleet they would push every other event out). A subscriber that
 * reconnects with `after = N` first gets every event after N, then live
 * ones. When N is older than the ring (or from another process run, told
 * by `epoch`), it gets one `reset` event instead: it must reload what it
 * shows over the REST API, then follow the live events.
 */
export interface FeedEvent {
  seq: number;
  time: string;
  /** `change` (a committed mutation), `node`, `peer`, `alert`, `onboarding`, `operation`, `observed`, `reset`. */
  type: string;
  data: unknown;
}

export type FeedSink = (e: FeedEvent) => void;

export interface Subscription {
  /** Events since `after` (or a single `reset`), already sent when subscribe returns. */
  replayed: number;
  close(): void;
}

export const FEED_CAPACITY = 10_000;

/** Event types sent to live subscribers only, never replayed on resume. */
export const LIVE_ONLY: ReadonlySet<string> = new Set(["observed"]);

export class EventFeed {
  /** Random per process start: sequence numbers are comparable only within one epoch. */
  readonly epoch = crypto.randomUUID();
  readonly #ring: FeedEvent[] = [];
  #start = 0;
  #seq = 0;
  /** The newest event pushed out of the ring: a position before it cannot be resumed. */
  #dropped = 0;
  readonly #sinks = new Set<FeedSink>();

  constructor(
    private readonly capacity = FEED_CAPACITY,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  get seq(): number {
    return this.#seq;
  }

  get subscribers(): number {
    return this.#sinks.size;
  }

  /**
   * Publishes one event to every subscriber; a throwing sink is dropped.
   * Events of a LIVE_ONLY type are not kept for resuming.
   */
  publish(type: string, data: unknown): FeedEvent {
    const e: FeedEvent = { seq: ++this.#seq, time: this.clock().toISOString(), type, data };
    if (LIVE_ONLY.has(type)) { /* not kept */ }
    else if (this.#ring.length < this.capacity) this.#ring.push(e);
    else {
      this.#dropped = this.#ring[this.#start].seq;
      this.#ring[this.#start] = e;
      this.#start = (this.#start + 1) % this.capacity;
    }
    for (const sink of [...this.#sinks]) {
      try {
        sink(e);
      } catch {
        this.#sinks.delete(sink);
      }
    }
    return e;
  }

  /** The oldest sequence number still in the ring (seq + 1 when empty). */
  get oldest(): number {
    return this.#ring.length === 0 ? this.#seq + 1 : this.#ring[this.#start].seq;
  }

  /**
   * Subscribes `sink`. With `after` (and the epoch it came from), replays
   * what followed it first, or sends a `reset` when that is no longer held.
   */
  subscribe(sink: FeedSink, after?: number, epoch?: string): Subscription {
    let replayed = 0;
    if (after !== undefined) {
      const lost = (epoch !== undefined && epoch !== this.epoch) || after < this.#dropped ||
        after > this.#seq;
      if (lost) {
        sink({
          seq: this.#seq,
          time: this.clock().toISOString(),
          type: "reset",
          data: {
            epoch: this.epoch,
            oldest: this.oldest,
            reason: "events after your position are no longer held: reload",
          },
        });
        replayed = 1;
      } else {
        for (let i = 0; i < this.#ring.length; i++) {
          const e = this.#ring[(this.#start + i) % this.#ring.length];
          if (e.seq > after) {
            sink(e);
            replayed++;
          }
        }
      }
    }
    this.#sinks.add(sink);
    return { replayed, close: () => void this.#sinks.delete(sink) };
  }
}

/** Node ids named in one `observed` event at most; `count` says how many changed. */
export const MAX_OBSERVED_IDS = 100;

/**
 * Batches keys (ids of nodes whose observed state changed) and hands them
 * on at most once per `intervalMs`: a burst within one interval, however
 * large the fleet, becomes one call. The first change after a quiet
 * interval goes out on the next turn of the event loop.
 */
export class Coalescer {
  readonly #pending = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #last = -Infinity;

  constructor(
    private readonly flush: (keys: string[]) => void,
    private readonly intervalMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  add(key: string): void {
    this.#pending.add(key);
    if (this.#timer !== undefined) return;
    const wait = Math.max(0, this.#last + this.intervalMs - this.now());
    this.#timer = setTimeout(() => this.#fire(), wait);
  }

  /** Drops what is pending and stops the timer. */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending.clear();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#last = this.now();
    const keys = [...this.#pending];
    this.#pending.clear();
    if (keys.length > 0) this.flush(keys);
  }
}

/** The feed event of nodes whose observed state changed (a bounded list of ids). */
export function observedEvent(nodeIds: string[]): { node_ids: string[]; count: number } {
  return { node_ids: nodeIds.slice(0, MAX_OBSERVED_IDS), count: nodeIds.length };
}
