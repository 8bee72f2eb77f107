/** `cox relays add`: SSH onboarding of a remote relay (see controller/onboarding/relay.ts). */
import { listSetting } from "../config.ts";
import { onboardRelay } from "../onboarding/relay.ts";
import { UsageError, wholeNumber } from "./format.ts";
import { type AddFlags, type CoxIo, runAdd } from "./onboarding_io.ts";

export interface RelaysAddFlags extends AddFlags {
  hosts?: string;
  tunnelPort?: string;
}

export async function relaysAdd(
  state: string,
  targetText: string,
  flags: RelaysAddFlags,
  actor: string,
  io: CoxIo,
): Promise<number> {
  const tunnelPort = wholeNumber("--tunnel-port", flags.tunnelPort, 1);
  if (tunnelPort !== undefined && tunnelPort > 65535) {
    throw new UsageError("--tunnel-port takes 1-65535");
  }
  const result = await runAdd(
    state,
    "relays add",
    targetText,
    flags,
    [["hosts", flags.hosts], ["tunnel-port", flags.tunnelPort]],
    io,
    (st, req) =>
      onboardRelay(st, actor, {
        ...req,
        hosts: flags.hosts === undefined ? undefined : listSetting(flags.hosts),
        tunnelPort,
      }),
  );
  const r = result.relay;
  io.out(
    `relay ${r.host} onboarded (tunnel port ${r.tunnelPort}): host key ${result.hostKey.fingerprint}, ` +
      `certificate serial ${result.serial}${result.certificateReused ? " (reused)" : ""} for ${
        r.certHosts.join(", ")
      }; a running controller picks it up without a restart\n`,
  );
  return 0;
}
