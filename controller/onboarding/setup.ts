/**
 * What onboarding runs on the host, as parameters (defaults below): the
 * install script and the files staged beside it, the directory for key,
 * CSR and certificates, the command that makes the CSR there, and the
 * commands that (re)start the service. `{dir}` inside any argument stands
 * for `dir`. Everything is checked before connecting (paths against a
 * strict alphabet, commands through quote.ts), so a bad value never
 * reaches a shell.
 *
 * Contract with the install scripts (deploy/install-agent.sh,
 * deploy/install-relay.sh): run as root as `sh STAGING/<script> ARGS…`,
 * idempotent, exit 0 when the host is ready for `genCsr` and `start`; files
 * listed in `installFiles` are staged in the same directory as the script.
 */
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { SshError } from "../ssh/errors.ts";
import { commandLine, remoteArg, remotePath } from "../ssh/quote.ts";
import { OnboardingError } from "./errors.ts";

export interface RemoteSetup {
  /** Local path of the install script. */
  installScript: string;
  /** Further local files staged beside the script (by base name). */
  installFiles: string[];
  installArgs: string[];
  /** The host's directory for key, CSR and certificates. */
  dir: string;
  /** Prints the CSR (PEM) on stdout, making or reusing the key in `dir`. */
  genCsr: string[];
  /** Run in order to enable and (re)start the service. */
  start: string[][];
  /** Root-only directory on the host where install files are staged. */
  stagingDir: string;
  /** Limit for the install script (default 15 min). */
  installTimeoutMs?: number;
}

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const STAGING = "/var/lib/pharos-onboarding";

/**
 * The node agent: state in /var/lib/pharos-agent (agent/config.ts), the
 * `pharos-agent` command and `pharos-agent.service` installed by
 * deploy/install-agent.sh.
 */
export const NODE_SETUP: RemoteSetup = {
  installScript: `${ROOT}deploy/install-agent.sh`,
  installFiles: [],
  installArgs: [],
  dir: "/var/lib/pharos-agent",
  genCsr: ["/usr/local/bin/pharos-agent", "gen-csr", "--dir", "{dir}"],
  start: [
    ["systemctl", "enable", "pharos-agent.service"],
    ["systemctl", "restart", "pharos-agent.service"],
  ],
  stagingDir: STAGING,
};

/**
 * A remote relay: files in /etc/pharos-relay (README "Relay"), the key made
 * by the `pharos-relay` system user that runs the service (see
 * deploy/install-relay.sh).
 */
export const RELAY_SETUP: RemoteSetup = {
  installScript: `${ROOT}deploy/install-relay.sh`,
  installFiles: [`${ROOT}deploy/systemd/pharos-relay.service`],
  installArgs: ["--dir", "{dir}"],
  dir: "/etc/pharos-relay",
  genCsr: [
    "runuser",
    "-u",
    "pharos-relay",
    "--",
    "/usr/local/bin/pharos-relay",
    "gen-csr",
    "--dir",
    "{dir}",
  ],
  start: [
    ["systemctl", "enable", "pharos-relay.service"],
    ["systemctl", "restart", "pharos-relay.service"],
  ],
  stagingDir: STAGING,
};

/** A setup with `{dir}` substituted. */
export interface ResolvedSetup extends RemoteSetup {
  /** Local files (script first) and their staged paths on the host. */
  staged: { local: string; remote: string }[];
}

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Substitutes `{dir}` and checks every value; throws OnboardingError "bad-setup". */
export function resolveSetup(setup: RemoteSetup): ResolvedSetup {
  try {
    const dir = remotePath(setup.dir, "directory");
    const stagingDir = remotePath(setup.stagingDir, "staging directory");
    const sub = (argv: string[]) => argv.map((a) => remoteArg(a).replaceAll("{dir}", dir));
    const installArgs = sub(setup.installArgs);
    const genCsr = sub(setup.genCsr);
    const start = setup.start.map(sub);
    for (const argv of [genCsr, ...start, ["sh", "/x", ...installArgs]]) commandLine(argv);
    const staged = [setup.installScript, ...setup.installFiles].map((local) => {
      const name = basename(local);
      if (!FILE_NAME.test(name)) {
        throw new SshError(
          "bad-argument",
          `install file name "${name.slice(0, 60)}" is not a plain file name`,
        );
      }
      return { local, remote: `${stagingDir}/${name}` };
    });
    if (new Set(staged.map((s) => s.remote)).size !== staged.length) {
      throw new SshError("bad-argument", "two install files have the same name");
    }
    return { ...setup, dir, stagingDir, installArgs, genCsr, start, staged };
  } catch (e) {
    if (!(e instanceof SshError)) throw e;
    throw new OnboardingError(
      "bad-setup",
      `onboarding setup refused before connecting: ${e.message}`,
      "prepare",
    );
  }
}
