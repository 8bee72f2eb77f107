/** The list of benchmark modules `deno task bench` runs, in order. */
import type { BenchModule } from "./harness.ts";
import { pkiBench } from "./pki.ts";

export const modules: BenchModule[] = [
  pkiBench,
];
