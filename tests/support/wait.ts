/** Polls `cond` every 10 ms until it holds; fails after `timeoutMs` (bounded). */
export async function until(
  cond: () => boolean,
  timeoutMs = 5000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Bound of `within` when none is given: generous, so load never trips it. */
export const WAIT_MS = 30_000;

/**
 * Awaits `promise` for at most `timeoutMs`; past that, fails naming `what`
 * was awaited, so a bug fails the test instead of hanging the run. The
 * promise itself cannot be cancelled: `onTimeout` may end what it waits on
 * (e.g. kill a child process); a rejection after the bound is ignored.
 */
export function within<T>(
  promise: Promise<T>,
  timeoutMs = WAIT_MS,
  what = "a promise",
  onTimeout?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      try {
        onTimeout?.();
      } catch {
        // e.g. the process exited meanwhile: the bound failed all the same
      }
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
  });
  promise.catch(() => {});
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * Closes gRPC clients of an in-process relay and waits until the relay has
 * seen every connection go, before the caller tears the relay down: a test
 * process holds both ends, and Deno 2.9.6 can abort it inside nghttp2 when
 * the server's GOAWAY meets a client session that is still closing
 * (denoland/deno#36788).
 */
export async function closeClients(
  clients: Iterable<{ close(): void }>,
  relay: { listener: { stats: { open: number } } } | null | undefined,
): Promise<void> {
  for (const c of clients) c.close();
  if (relay) {
    await until(() => relay.listener.stats.open === 0, WAIT_MS, "the device connections to close");
  }
}
