/** The list of benchmark modules `deno task bench` runs, in order. */
import type { BenchModule } from "./harness.ts";
import { pkiBench } from "./pki.ts";
import { muxBench } from "./mux.ts";
import { sealBench } from "./seal.ts";
import { relayBench } from "./relay.ts";
import { relayGoBench } from "./relay_go.ts";
import { idleConnectionsBench } from "./abuse.ts";
import { relayAbuseBench } from "./relay_abuse.ts";
import { agentBench } from "./agent.ts";
import { uiBench } from "./ui.ts";
import { accountsBench } from "./accounts.ts";
import { apiBench } from "./api.ts";
import { reconcileBench } from "./reconcile.ts";
import { controllerBench } from "./controller.ts";

export const modules: BenchModule[] = [
  pkiBench,
  muxBench,
  sealBench,
  relayBench,
  relayGoBench,
  idleConnectionsBench,
  relayAbuseBench,
  agentBench,
  accountsBench,
  apiBench,
  reconcileBench,
  controllerBench,
  uiBench,
];
