/**
 * The large fuzz run:
 * `deno run -A --v8-flags=--expose-gc tests/fuzz/main.ts [cases] [seed]`
 * (default 100,000 cases per target). Prints each target's case count, time
 * and outcome histogram; exits non-zero on the first untyped error or hang.
 */
import {
  fuzzConnect,
  fuzzFrameDecoder,
  type FuzzReport,
  fuzzSessions,
} from "./mux_connect_fuzz.ts";

const cases = Number(Deno.args[0] ?? 100_000);
const seed = Number(Deno.args[1] ?? Date.now() % 2 ** 31);
if (!Number.isSafeInteger(cases) || cases < 1 || !Number.isSafeInteger(seed)) {
  console.error("usage: deno run -A tests/fuzz/main.ts [cases >= 1] [integer seed]");
  Deno.exit(2);
}

function show(name: string, r: FuzzReport): void {
  const top = [...r.outcomes.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`)
    .join(" ");
  console.log(`${name}: ${r.cases} cases in ${(r.ms / 1000).toFixed(1)} s; ${top}`);
}

console.log(`fuzz seed ${seed}, ${cases} cases per target`);
// With --v8-flags=--expose-gc the heap figures are measured after a full GC.
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
gc();
const heapBefore = Deno.memoryUsage().heapUsed;
show("mux frame decoder", fuzzFrameDecoder(seed, cases));
show("mux sessions", await fuzzSessions(seed, cases));
show("connect lines", await fuzzConnect(seed, cases));
gc();
const growth = Deno.memoryUsage().heapUsed - heapBefore;
console.log(`heap growth over the run: ${(growth / 1024 / 1024).toFixed(1)} MiB`);
if (growth > 256 * 1024 * 1024) {
  console.error("heap grew by more than 256 MiB: something is retained per case");
  Deno.exit(1);
}
