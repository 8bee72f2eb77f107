/** The list of benchmark modules `deno task bench` runs, in order. */
import type { BenchModule } from "./harness.ts";
import { pkiBench } from "./pki.ts";
import { muxBench } from "./mux.ts";
import { sealBench } from "./seal.ts";
import { relayBench } from "./relay.ts";
import { idleConnectionsBench } from "./abuse.ts";
import { agentBench } from "./agent.ts";

export const modules: BenchModule[] = [
  pkiBench,
  muxBench,
  sealBench,
  relayBench,
  idleConnectionsBench,
  agentBench,
];
