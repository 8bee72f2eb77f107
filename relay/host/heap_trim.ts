/**
 * Gives memory the relay freed back to the system. After an attack (e.g.
 * clients that stop reading on every call) the relay's JS heap and its
 * buffers go back to idle, but glibc keeps the freed chunks of its main heap
 * resident: free() only returns the top of the heap, and one live allocation
 * above the freed ones pins them all. Measured on Deno 2.9.6 (issue 10):
 * 512 stalled calls, then disconnect: JS heap 15 MiB and external buffers
 * 2 MiB again, RSS still +200 MiB 45 s later (as long as we watched); MALLOC_ARENA_MAX,
 * MALLOC_TRIM_THRESHOLD_ and MALLOC_TOP_PAD_ changed nothing, while one
 * malloc_trim(0) (which releases free pages anywhere in the heap) took RSS
 * below idle in about 10 ms.
 *
 * So a timer watches glibc's own counters (mallinfo2) and calls
 * malloc_trim(0) once a sizeable amount was freed since the last trim. Only
 * on glibc, and only with FFI permission for the system library directories
 * (the relay task grants it); otherwise it logs once and stays off.
 */
import type { Logger } from "../../core/log.ts";

const MiB = 1024 * 1024;
/** How often glibc's counters are read (a read walks the free lists: well under a millisecond). */
const CHECK_MS = 2000;
/**
 * Trim once this much was freed since the last trim (and is still free):
 * below it the gain does not pay for the trim (~10 ms of event loop for a
 * 200 MiB heap) and the pages would soon be reused anyway.
 */
const MIN_FREED = 16 * MiB;

const SYMBOLS = {
  malloc_trim: { parameters: ["usize"], result: "i32" },
  /** struct mallinfo2: ten size_t fields (glibc ≥ 2.33). */
  mallinfo2: { parameters: [], result: { struct: Array(10).fill("usize") } },
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;

/** Bytes in use and free in glibc's arenas (fields `uordblks` and `fordblks`). */
function arenaBytes(libc: Libc): { inUse: number; free: number } {
  const raw = libc.symbols.mallinfo2() as Uint8Array<ArrayBuffer>;
  const f = new BigUint64Array(raw.buffer, raw.byteOffset, 10);
  return { inUse: Number(f[7]), free: Number(f[8]) };
}

/**
 * Where glibc lives (Debian/Ubuntu multiarch, then Fedora/Arch layouts); the
 * process map would say for sure but needs full permissions to read.
 */
function glibcPath(): string | null {
  const multiarch = `${Deno.build.arch}-linux-gnu`;
  for (
    const path of [
      `/usr/lib/${multiarch}/libc.so.6`,
      `/lib/${multiarch}/libc.so.6`,
      "/usr/lib64/libc.so.6",
      "/lib64/libc.so.6",
      "/usr/lib/libc.so.6",
    ]
  ) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not this layout
    }
  }
  return null;
}

function openLibc(log: Logger): Libc | null {
  if (Deno.build.os !== "linux") return null;
  const path = glibcPath();
  const off = (reason: string) => {
    log.info("freed memory is left to the allocator", {
      code: "heap-trim-off",
      reason,
      hint:
        "run the relay with --allow-ffi=/usr/lib,/lib,/usr/lib64,/lib64 (as the relay task does)",
    });
    return null;
  };
  if (!path) return off("no glibc found");
  if (Deno.permissions.querySync({ name: "ffi", path }).state !== "granted") {
    return off(`no ffi permission for ${path}`);
  }
  try {
    return Deno.dlopen(path, SYMBOLS);
  } catch (e) {
    return off(`cannot open ${path}: ${(e as Error).message}`);
  }
}

class HeapTrimmer {
  #highWater = 0;
  #timer: ReturnType<typeof setInterval>;
  /** Trims done so far (for tests and logs). */
  trims = 0;

  constructor(private readonly libc: Libc, private readonly log: Logger) {
    this.#highWater = arenaBytes(libc).inUse;
    // Never what keeps the process alive.
    this.#timer = setInterval(() => this.check(), CHECK_MS);
    this.#timer.unref();
  }

  check(): void {
    const { inUse, free } = arenaBytes(this.libc);
    this.#highWater = Math.max(this.#highWater, inUse);
    const freed = this.#highWater - inUse;
    if (freed < MIN_FREED || free < MIN_FREED) return;
    const before = Deno.memoryUsage().rss;
    const t0 = performance.now();
    this.libc.symbols.malloc_trim(0n);
    const ms = performance.now() - t0;
    this.trims++;
    this.#highWater = inUse;
    const after = Deno.memoryUsage().rss;
    this.log.info("freed memory returned to the system", {
      code: "heap-trim",
      freed_mib: Math.round(freed / MiB),
      rss_mib_before: Math.round(before / MiB),
      rss_mib_after: Math.round(after / MiB),
      ms: Math.round(ms * 10) / 10,
    });
  }

  stop(): void {
    clearInterval(this.#timer);
    this.libc.close();
  }
}

let shared: { trimmer: HeapTrimmer | null; users: number } | null = null;

/**
 * Starts the process-wide trimmer (once, however many relays the process
 * runs); the returned function releases this user's hold on it.
 */
export function holdHeapTrim(log: Logger): () => void {
  if (!shared) shared = { trimmer: null, users: 0 };
  if (shared.users === 0) {
    const libc = openLibc(log);
    shared.trimmer = libc ? new HeapTrimmer(libc, log) : null;
  }
  shared.users++;
  let held = true;
  return () => {
    if (!held || !shared) return;
    held = false;
    if (--shared.users === 0) {
      shared.trimmer?.stop();
      shared.trimmer = null;
    }
  };
}
