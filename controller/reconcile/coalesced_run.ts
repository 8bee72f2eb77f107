/**
 * A background job that runs at most once at a time: a request while it
 * runs asks for one more run after it, however many requests arrive
 * meanwhile, so a burst costs at most two runs and the last run starts
 * after the last request (it sees every change requested before).
 * Reconcile uses it for the profile reseal its endpoint confirmations ask
 * for, so several nodes confirming in one sweep, or in a quick series of
 * passes, do not each reseal every profile.
 */

export class CoalescedRun {
  #running: Promise<void> | null = null;
  #again = false;
  #abort = new AbortController();

  /** `run` gets a signal aborted by `stop()`; `onError` hears what it throws otherwise. */
  constructor(
    private readonly run: (signal: AbortSignal) => Promise<unknown>,
    private readonly onError: (e: unknown) => void,
  ) {}

  /** Runs the job soon (in a microtask), or once more after the run in progress. */
  request(): void {
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
        } catch (e) {
          if (!signal.aborted) this.onError(e);
        }
      }
    } finally {
      // In the same step as the last check: a request after it starts a new loop.
      this.#running = null;
    }
  }

  /** Resolves when no run is in progress or wanted. */
  async idle(): Promise<void> {
    while (this.#running !== null) await this.#running;
  }

  /**
   * Aborts the run in progress (it ends at its next safe point), drops the
   * one wanted after it and waits for it to end; later requests run again.
   */
  async stop(): Promise<void> {
    this.#abort.abort(new DOMException("stopped", "AbortError"));
    await this.idle();
    this.#again = false;
    this.#abort = new AbortController();
  }
}
