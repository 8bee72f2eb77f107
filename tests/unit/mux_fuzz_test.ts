/**
 * Bounded fuzzing in the normal test run: 100,000 cases for the frame decoder
 * and for CONNECT lines, 10,000 whole-session cases. The large session run
 * (100,000 cases per target, random seed) is tests/fuzz/main.ts.
 * PHAROS_FUZZ_SEED replays a failing seed.
 */
import assert from "node:assert/strict";
import { fuzzConnect, fuzzFrameDecoder, fuzzSessions } from "../fuzz/mux_connect_fuzz.ts";

const seed = Number(Deno.env.get("PHAROS_FUZZ_SEED") ?? 20240601);

function assertVaried(outcomes: Map<string, number>, what: string): void {
  assert.ok(outcomes.size >= 3, `${what}: inputs reach several outcomes (${[...outcomes.keys()]})`);
}

Deno.test("mux fuzz: 100,000 random and mutated frame streams through FrameDecoder", () => {
  const r = fuzzFrameDecoder(seed, 100_000);
  assert.equal(r.cases, 100_000);
  assertVaried(r.outcomes, "decoder");
});

Deno.test("mux fuzz: 10,000 random and mutated frame streams against whole sessions", async () => {
  const r = await fuzzSessions(seed, 10_000);
  assert.equal(r.cases, 10_000);
  assertVaried(r.outcomes, "sessions");
  assert.ok((r.outcomes.get("remote-closed") ?? 0) > 0, "some inputs are valid to the end");
});

Deno.test("connect fuzz: 100,000 random and mutated CONNECT lines", async () => {
  const r = await fuzzConnect(seed, 100_000);
  assert.equal(r.cases, 100_000);
  assertVaried(r.outcomes, "connect");
  assert.ok((r.outcomes.get("ok") ?? 0) > 0, "some mutated lines stay valid");
});
