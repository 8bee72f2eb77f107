/**
 * A remote relay as onboarding would leave it: its key, certificate (issued
 * by the controller's Fleet CA for 127.0.0.1/localhost) and CA files in a
 * directory, running in this process with its logs collected.
 */
import * as pki from "../../core/pki/mod.ts";
import { createLogger } from "../../core/log.ts";
import { resolveRelayConfig } from "../../relay/config.ts";
import { runRelay } from "../../relay/run.ts";
import { WAIT_MS, within } from "./wait.ts";

export type RunningTestRelay = Awaited<ReturnType<typeof runRelay>>;

/** Writes a relay's material for `cas` into `dir`; returns the leaf's serial. */
export async function writeRelayMaterial(cas: pki.Pki, dir: string): Promise<string> {
  const csr = await pki.generateCsr("relay");
  const leaf = await pki.issueLeaf(cas, csr.csrPem, {
    kind: "relay",
    hosts: ["127.0.0.1", "localhost"],
  });
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/relay.key`, csr.keyPem);
  await Deno.writeTextFile(`${dir}/relay.crt`, pki.bundlePem([leaf, cas.fleet.cert]));
  await Deno.writeTextFile(`${dir}/ca.crt`, pki.certPem(cas.root.cert));
  await Deno.writeTextFile(`${dir}/fleet-ca.crt`, pki.certPem(cas.fleet.cert));
  await Deno.writeTextFile(`${dir}/device-ca.crt`, pki.certPem(cas.device.cert));
  return pki.serialOf(leaf);
}

/** Runs the relay of `dir` on loopback ports (egress off); its log lines go to `logs`. */
export function runTestRelay(dir: string, logs: string[]): Promise<RunningTestRelay> {
  return within(
    runRelay(
      resolveRelayConfig(
        {
          dir,
          "client-addr": "127.0.0.1:0",
          "tunnel-addr": "127.0.0.1:0",
          "egress-addr": "off",
        },
        () => undefined,
      ),
      createLogger("relay", { sink: (l) => logs.push(l) }),
    ),
    WAIT_MS,
    "the relay to start",
  );
}
