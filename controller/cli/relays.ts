/** `cox relays add`: SSH onboarding of a remote relay (see controller/onboarding/relay.ts). */
import { listSetting } from "../config.ts";
import { onboardRelay } from "../onboarding/relay.ts";
import { UsageError, wholeNumber } from "./format.ts";
import { type CoxIo, onboardingFlags, printProgress, rerunCommand } from "./onboarding_io.ts";
import { withService } from "./with_state.ts";

export interface RelaysAddFlags {
  hosts?: string;
  tunnelPort?: string;
  passwordStdin: boolean;
  sudo: boolean;
  acceptHostKey?: string;
  installScript?: string;
  dir?: string;
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
  const { target, credentials, sudo } = await onboardingFlags(
    targetText,
    flags.passwordStdin,
    flags.sudo,
    io,
  );
  const result = await withService(state, (_svc, st) =>
    onboardRelay(st, actor, {
      target,
      hosts: flags.hosts === undefined ? undefined : listSetting(flags.hosts),
      tunnelPort,
      credentials,
      sudo,
      acceptHostKey: flags.acceptHostKey,
      setup: {
        ...(flags.installScript ? { installScript: flags.installScript } : {}),
        ...(flags.dir ? { dir: flags.dir } : {}),
      },
      rerun: rerunCommand(`relays add ${targetText}`, state, [
        ["hosts", flags.hosts],
        ["tunnel-port", flags.tunnelPort],
        ["sudo", flags.sudo],
        ["password-stdin", flags.passwordStdin],
        ["install-script", flags.installScript],
        ["dir", flags.dir],
      ]),
      onProgress: printProgress(io),
    }));
  const r = result.relay;
  io.out(
    `relay ${r.host} onboarded (tunnel port ${r.tunnelPort}): host key ${result.hostKey.fingerprint}, ` +
      `certificate serial ${result.serial}${result.certificateReused ? " (reused)" : ""} for ${
        r.certHosts.join(", ")
      }; a running controller picks it up without a restart\n`,
  );
  return 0;
}
