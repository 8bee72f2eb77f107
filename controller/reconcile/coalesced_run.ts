/**
 * A background job that runs at most once at a time: a request while it
 * runs asks for one more run after it, however many requests arrive
 * meanwhile, so a burst costs at most two runs and the last run starts
 * after the last request (it sees every change requested before).
 * Reconcile uses it for the profile reseal its endpoint confirmations ask
 * for, so several nodes confirming in one sweep, or in a quick series of
 * passes, do not each reseal every profile.
 *
 * A run that fails is run again after each delay of `retryMs` in turn
 * (bounded: a job that keeps failing, e.g. for one device a reseal cannot
 * fix, costs `retryMs.length` more runs per request, not one per sweep
 * forever). A success, or a new request, starts the delays over.
 */

/** What `onError` is told besides the error: when the job runs again by itself. */
export interface FailureNext {
  /** Milliseconds until the retry (0: a requested run follows now); null: retries used up. */
  retryInMs: number | null;
}

/** Default delays between retries of a failed run: 5 s, 30 s, 2 min, 10 min. */
export const RETRY_MS: readonly number[] = [5_000, 30_000, 120_000, 600_000];

export class CoalescedRun {
  #running: Promise<void> | null = null;
  #again = false;
  #abort = new AbortController();
  #failures = 0;
  #retry: ReturnType<typeof setTimeout> | null = null;

  /**
   * `run` gets a signal aborted by `stop()`; `onError` hears what it throws
   * otherwise, and whether a retry follows.
   */
  constructor(
    private readonly run: (signal: AbortSignal) => Promise<unknown>,
    private readonly onError: (e: unknown, next: FailureNext) => void,
    private readonly retryMs: readonly number[] = RETRY_MS,
  ) {}

  /** Runs the job soon (in a microtask), or once more after the run in progress. */
  request(): void {
    this.#failures = 0;
    this.#want();
  }

  /** Whether a failed run waits for its retry. */
  get retrying(): boolean {
    return this.#retry !== null;
  }

  #want(): void {
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#retry = null;
    this.#again = true;
    if (this.#running !== null) return;
    // Begun in a microtask, so #running is set before the loop can end and clear it.
    this.#running = Promise.resolve().then(() => this.#loop());
  }

  async #loop(): Promise<void> {
    const signal = this.#abort.signal;
    try {
      while (this.#again && !signal.aborted) {
        this.#again = false;
        try {
          await this.run(signal);
          this.#failures = 0;
        } catch (e) {
          if (!signal.aborted) this.#failed(e);
        }
      }
    } finally {
      // In the same step as the last check: a request after it starts a new loop.
      this.#running = null;
    }
  }

  #failed(e: unknown): void {
    if (this.#again) {
      // A request came during this run: the run it wants is the retry.
      this.onError(e, { retryInMs: 0 });
      return;
    }
    const delay = this.retryMs[this.#failures] ?? null;
    this.#failures++;
    if (delay !== null) {
      this.#retry = setTimeout(() => {
        this.#retry = null;
        this.#want();
      }, delay);
    }
    this.onError(e, { retryInMs: delay });
  }

  /** Resolves when no run is in progress or wanted now (a retry waiting on its delay is not). */
  async idle(): Promise<void> {
    while (this.#running !== null) await this.#running;
  }

  /**
   * Aborts the run in progress (it ends at its next safe point), drops the
   * one wanted after it and any retry, and waits for it to end; later
   * requests run again.
   */
  async stop(): Promise<void> {
    this.#abort.abort(new DOMException("stopped", "AbortError"));
    await this.idle();
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#retry = null;
    this.#again = false;
    this.#failures = 0;
    this.#abort = new AbortController();
  }
}
