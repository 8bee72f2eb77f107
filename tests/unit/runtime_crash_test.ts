/**
 * Which deaths of a process count as the runtime's own (and so let
 * tests/run_all.ts run a file once more): a segfault, or an abort that names
 * the nghttp2 assertion — never an ordinary exit or any other abort.
 */
import assert from "node:assert/strict";
import { CHILD_RUNTIME_CRASH, describeExit, RUNTIME_ABORT } from "../support/runtime_crash.ts";

const status = (code: number, signal: Deno.Signal | null = null): Deno.CommandStatus => ({
  success: code === 0,
  code,
  signal,
});

Deno.test("describeExit: segfaults and the nghttp2 abort are the runtime's; other ends are not", () => {
  const runtime = (s: Deno.CommandStatus, output?: string) =>
    describeExit(s, output).includes(CHILD_RUNTIME_CRASH);
  assert.ok(runtime(status(139, "SIGSEGV")));
  assert.ok(runtime(status(139)), "139 through a shell or task runner");
  const nghttp2 = `Assertion failed: ... ${RUNTIME_ABORT} ...`;
  assert.ok(runtime(status(134, "SIGABRT"), nghttp2));
  assert.ok(runtime(status(134), nghttp2));
  assert.ok(!runtime(status(134, "SIGABRT"), "Fatal JavaScript out of memory"));
  assert.ok(!runtime(status(134, "SIGABRT")));
  assert.ok(!runtime(status(1)));
  assert.ok(!runtime(status(0)));
  assert.equal(describeExit(status(1)), "exit 1");
  assert.equal(describeExit(null), "still running");
  assert.match(describeExit(status(139, "SIGSEGV")), /^exit 139, SIGSEGV: /);
});
