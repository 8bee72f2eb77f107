/**
 * Deno 2.9.6's HTTP/2 stack can kill a process when a peer goes away under
 * a session (nghttp2 `find_stream_on_goaway_func` assertion, or a segfault;
 * denoland/deno#36788). JavaScript can raise neither a segfault nor that
 * assertion, so a process of ours that died of one died of the runtime.
 * tests/run_all.ts runs a file once more when the test process died so, or
 * when every failed test's own error names such a death.
 */

/** The nghttp2 assertion's function name, in the message of an abort. */
export const RUNTIME_ABORT = "find_stream_on_goaway_func";

/** What a test says when a process it runs died of a signal only the runtime can raise. */
export const CHILD_RUNTIME_CRASH = "died inside the Deno runtime (denoland/deno#36788)";

/**
 * How a process ended, for a failure message: its exit code and signal,
 * and CHILD_RUNTIME_CRASH when that was a segfault (SIGSEGV, or 139 through
 * a task runner or shell) or an abort whose `output` names the nghttp2
 * assertion. Any other abort (a V8 fatal error, out of memory, a panic) is
 * a failure like any other.
 */
export function describeExit(exit: Deno.CommandStatus | null, output = ""): string {
  if (!exit) return "still running";
  const what = `exit ${exit.code}${exit.signal ? `, ${exit.signal}` : ""}`;
  const segfault = exit.signal === "SIGSEGV" || exit.code === 139;
  const abort = (exit.signal === "SIGABRT" || exit.code === 134) && output.includes(RUNTIME_ABORT);
  return segfault || abort ? `${what}: ${CHILD_RUNTIME_CRASH}` : what;
}
