/**
 * Deno 2.9.6's HTTP/2 stack can kill a process when a peer goes away under
 * a session (nghttp2 `find_stream_on_goaway_func` assertion, or a segfault;
 * denoland/deno#36788). JavaScript cannot raise either, so a process of
 * ours that died of SIGSEGV or SIGABRT died of the runtime. tests/run_all.ts
 * runs a file once more when its output names such a death.
 */

/** The nghttp2 assertion's function name, in the message of an abort. */
export const RUNTIME_ABORT = "find_stream_on_goaway_func";

/** What a test says when a process it runs died of a signal only the runtime can raise. */
export const CHILD_RUNTIME_CRASH = "died inside the Deno runtime (denoland/deno#36788)";

/**
 * How a process ended, for a failure message: its exit code and signal,
 * and CHILD_RUNTIME_CRASH when that was SIGSEGV or SIGABRT (directly, or
 * as 139/134 through a task runner or shell).
 */
export function describeExit(exit: Deno.CommandStatus | null): string {
  if (!exit) return "still running";
  const what = `exit ${exit.code}${exit.signal ? `, ${exit.signal}` : ""}`;
  const runtime = exit.signal === "SIGSEGV" || exit.signal === "SIGABRT" ||
    exit.code === 139 || exit.code === 134;
  return runtime ? `${what}: ${CHILD_RUNTIME_CRASH}` : what;
}
