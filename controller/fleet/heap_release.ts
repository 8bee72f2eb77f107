/**
 * Gives back the V8 heap that a burst of calls grew. A sweep of 1,000 nodes
 * allocates a few hundred MB of short-lived objects (requests, answers, the
 * JSON lines between the driver and its worker); V8 grows its heap to keep
 * up, and Deno 2.9.6 never shrinks it again on its own: measured in the
 * reconcile benchmark, the controller process held 163 MB of V8 pages for
 * 25 MB of live objects, still after 30 s idle and after a plain full GC.
 * V8's memory-reducing collection (the "last-resort" one it runs under
 * memory pressure) releases them in tens of milliseconds.
 *
 * So a timer (unref'd) looks at the heap once a second and, once the
 * process has been quiet for a moment after a burst (no call through the
 * fleet driver's NodeCaller; heartbeats do not count) and the V8 heap grew by a sizeable amount since the last
 * release, runs that collection once. The collection function comes from
 * V8's gc extension, switched on for one new context only (the flag is
 * switched off again at once); where that is not possible it logs once and
 * stays off. Native memory freed by the burst is heap_trim's part
 * (relay/host/heap_trim.ts). The gRPC worker does without it: run with
 * --optimize-for-size its heap stays near what it holds (measured at 1,000
 * nodes: one release took it from 137 to 133 MB RSS for a 270 ms pause).
 */
import v8 from "node:v8";
import vm from "node:vm";
import type { Logger } from "../../core/log.ts";

const MiB = 1024 * 1024;
/** How often the heap is looked at (Deno.memoryUsage: microseconds). */
const CHECK_MS = 1000;
/** Quiet this long after the last call before a release (never in the middle of a sweep). */
const QUIET_MS = 1500;
/**
 * Release once V8 reserved this much more than right after the last
 * release: below it the pause does not pay (measured 60–140 ms for the
 * controller's 25 MB of live heap at 1,000 nodes, on a loaded machine).
 */
const MIN_GROWTH = 32 * MiB;

type Collect = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;

/** V8's gc function, found once per process (undefined: not looked for yet). */
let found: Collect | null | undefined;

/** V8's gc function: the global one when the process has it, else from a new context. */
function gcFunction(): Collect | null {
  if (found === undefined) found = findGc();
  return found;
}

function findGc(): Collect | null {
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === "function") return own as Collect;
  try {
    v8.setFlagsFromString("--expose-gc");
    try {
      const gc = vm.runInNewContext("gc");
      return typeof gc === "function" ? gc as Collect : null;
    } finally {
      v8.setFlagsFromString("--no-expose-gc");
    }
  } catch {
    return null;
  }
}

export class HeapReleaser {
  readonly #gc: Collect;
  readonly #timer: ReturnType<typeof setInterval>;
  #lastBusy = 0;
  /** V8 heap reserved right after the last release (or at the start). */
  #floor: number;
  /** Releases done so far (for tests and logs). */
  releases = 0;

  private constructor(gc: Collect, private readonly log: Logger) {
    this.#gc = gc;
    this.#floor = Deno.memoryUsage().heapTotal;
    this.#timer = setInterval(() => this.check(), CHECK_MS);
    Deno.unrefTimer(this.#timer);
  }

  /** A releaser for this process, or null (logged) when V8's gc cannot be had. */
  static start(log: Logger): HeapReleaser | null {
    const gc = gcFunction();
    if (!gc) {
      log.info("grown V8 heap is left to V8", {
        code: "heap-release-off",
        reason: "V8's gc extension is not available in this runtime",
      });
      return null;
    }
    return new HeapReleaser(gc, log);
  }

  /** A call went through: no release for a moment. */
  busy(): void {
    this.#lastBusy = Date.now();
  }

  /** Releases now when quiet and grown enough; true when it did. */
  check(now = Date.now()): boolean {
    if (now - this.#lastBusy < QUIET_MS) return false;
    const before = Deno.memoryUsage();
    if (before.heapTotal - this.#floor < MIN_GROWTH) return false;
    const t0 = performance.now();
    this.#gc({ type: "major", execution: "sync", flavor: "last-resort" });
    const ms = performance.now() - t0;
    const after = Deno.memoryUsage();
    this.#floor = after.heapTotal;
    this.releases++;
    this.log.info("grown V8 heap returned to the system", {
      code: "heap-release",
      heap_mib_before: Math.round(before.heapTotal / MiB),
      heap_mib_after: Math.round(after.heapTotal / MiB),
      rss_mib_before: Math.round(before.rss / MiB),
      rss_mib_after: Math.round(after.rss / MiB),
      ms: Math.round(ms * 10) / 10,
    });
    return true;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
