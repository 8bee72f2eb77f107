/**
 * `deno task client`: the reference client. Every command ends in one line
 * (stdout for results, `error: …` on stderr) and an exit code. Secrets never
 * come from argv: passwords and passphrases are read from the environment
 * (PHAROS_PASSWORD, PHAROS_PASSPHRASE) or a file named by a flag.
 */
import {
  ClientError,
  enroll,
  enrollAccountKey,
  login,
  openChannel,
  planTunnel,
  syncProfile,
  type TunnelPlan,
} from "../../core/client/mod.ts";
import { createLogger } from "../../core/log.ts";
import {
  type CliIo,
  commandMistake,
  parseCommandLine,
  withCliErrors,
} from "../../relay/host/cli_support.ts";
import { AWG_KINDS, type AwgKind } from "../dataplane/awg.ts";
import { grpcTransport } from "./grpc_transport.ts";
import { defaultStateDir, loadState, saveConfig, saveState } from "./state_file.ts";
import { bringUp } from "./tunnel_up.ts";
import type { AccountTransport } from "../../core/client/mod.ts";

const USAGE = `usage: client <command> [flags]

commands:
  enroll LINK      claim the enrollment ticket in LINK (pharosvpn://enroll?…),
                   then sync the profile and write the tunnel config
  login            log in with --email and the password (device login without it);
                   with a passphrase, creates the account key if it has none
  rekey            replace the account key with a new one wrapped under the new
                   passphrase (--new-passphrase-file); when the account has a key,
                   proves it with the one this device enrolled (current passphrase)
  sync             fetch, verify and decrypt the profile; write the tunnel config
  up               sync, then bring the tunnel up and hold it until SIGINT/SIGTERM

flags:
  --state DIR            client state (0700; default $PHAROS_CLIENT_STATE or ~/.config/pharos-client)
  --name NAME            device name shown to the admin (enroll)
  --email EMAIL          account e-mail (login)
  --password-file F      login password (else $PHAROS_PASSWORD)
  --passphrase-file F    account passphrase (else $PHAROS_PASSPHRASE), for profiles
                         sealed to the account key; the current one for rekey
  --new-passphrase-file F  passphrase of the new account key (rekey; else
                         $PHAROS_NEW_PASSPHRASE)
  --profile ID|NAME      profile entry to use (default: the first usable)
  --node ID|NAME         node to dial (default: the cascade entry or the first usable)
  --interface NAME       tunnel interface for up (default pharos0)
  --relay HOST:PORT      login/sync/up through another relay of the fleet (not saved)
  --dataplane KIND       auto | ${AWG_KINDS.join(" | ")} (default auto)
`;

export interface ClientCliIo extends CliIo {
  /** Resolves when `up` should take the tunnel down; tests pass their own. */
  stopped?: Promise<unknown>;
  transport?: AccountTransport;
}

/** A secret named but not given (unreadable or empty file): a usage mistake, exit 2. */
class SecretError extends Error {}

/**
 * A secret from `--<flag> FILE` (its first line's end trimmed), else from
 * `$<envName>`; undefined when neither is given. An empty or unreadable
 * file is a SecretError, never an empty secret.
 */
async function secret(
  flag: string,
  file: string | undefined,
  envName: string,
  env: (n: string) => string | undefined,
): Promise<string | undefined> {
  if (file === undefined) return env(envName) || undefined;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new SecretError(`--${flag} ${file}: cannot read it (${(e as Error).message})`);
  }
  const value = text.replace(/\r?\n$/, "");
  if (value === "") throw new SecretError(`--${flag} ${file} is empty`);
  return value;
}

export async function runClientCli(
  args: string[],
  io: ClientCliIo,
  env: (name: string) => string | undefined,
): Promise<number> {
  const str = { type: "string" } as const;
  const parsed = parseCommandLine(
    args,
    {
      state: str,
      name: str,
      email: str,
      "password-file": str,
      "passphrase-file": str,
      "new-passphrase-file": str,
      profile: str,
      node: str,
      interface: str,
      dataplane: str,
      relay: str,
    },
    USAGE,
    io,
  );
  if (!parsed) return 2;
  const { values: v, positionals } = parsed;
  if (v.help) {
    io.out(USAGE);
    return 0;
  }
  const [command = "", ...rest] = positionals;
  if (
    !["enroll", "login", "rekey", "sync", "up"].includes(command) ||
    (command === "enroll") !== (rest.length === 1) || (command !== "enroll" && rest.length > 0)
  ) {
    return commandMistake(positionals.join(" "), USAGE, io);
  }
  const dataplane = (v.dataplane ?? "auto") as AwgKind | "auto";
  if (dataplane !== "auto" && !AWG_KINDS.includes(dataplane)) {
    io.err(`error: --dataplane must be auto or one of ${AWG_KINDS.join(", ")}`);
    return 2;
  }
  const dir = v.state ?? defaultStateDir(env);
  const transport = io.transport ?? grpcTransport;
  const log = createLogger("client", { sink: io.err });

  return await withCliErrors(io, async () => {
    try {
      return await run();
    } catch (e) {
      if (!(e instanceof SecretError)) throw e;
      io.err(`error: ${e.message}`);
      return 2;
    }
  });

  async function run(): Promise<number> {
    const passphrase = await secret(
      "passphrase-file",
      v["passphrase-file"],
      "PHAROS_PASSPHRASE",
      env,
    );
    const choice = { profile: v.profile, node: v.node };
    // A profile without a node yet (none onboarded) is still a successful sync.
    // `savedRelay`: the relay of the state file (a --relay override is never saved).
    const syncAndWrite = async (
      state: Awaited<ReturnType<typeof loadState>>,
      savedRelay: string,
    ) => {
      const synced = await syncProfile(transport, state, { passphrase });
      await saveState(dir, { ...synced.state, relay: savedRelay });
      for (const s of synced.skipped) {
        log.warn("profile entry skipped", { code: s.code, path: s.path, reason: s.reason });
      }
      let plan: TunnelPlan | undefined;
      try {
        plan = planTunnel(synced.document, state.wireguardKey, choice);
      } catch (e) {
        if (!(e instanceof ClientError && e.code === "no-usable-node") || command === "up") throw e;
      }
      const where = plan
        ? `node ${plan.node.name ?? plan.node.id}; config ${await saveConfig(dir, plan.configText)}`
        : "no node in the profile yet (sync again later)";
      return { synced, plan, where };
    };

    if (command === "enroll") {
      const state = await enroll(transport, rest[0], { deviceName: v.name });
      await saveState(dir, state);
      const { synced, where } = await syncAndWrite(state, state.relay);
      io.out(
        `enrolled as ${synced.state.user}; profile revision ${synced.document.revision}; ${where}\n`,
      );
      return 0;
    }
    const stored = await loadState(dir);
    // Another relay of the same fleet for this run (its chain must still reach the pinned root).
    const state = v.relay ? { ...stored, relay: v.relay } : stored;
    if (command === "login" || command === "rekey") {
      const password = await secret("password-file", v["password-file"], "PHAROS_PASSWORD", env);
      if (v.email && !password) {
        io.err("error: give the password in $PHAROS_PASSWORD or --password-file");
        return 2;
      }
      const newPassphrase = command === "rekey"
        ? await secret(
          "new-passphrase-file",
          v["new-passphrase-file"],
          "PHAROS_NEW_PASSPHRASE",
          env,
        )
        : undefined;
      if (command === "rekey" && !newPassphrase) {
        io.err("error: give the new passphrase in $PHAROS_NEW_PASSPHRASE or --new-passphrase-file");
        return 2;
      }
      const channel = openChannel(transport, state);
      try {
        let next = await login(channel, { ...state, session: undefined }, {
          email: v.email,
          password,
          passphrase: command === "login" ? passphrase : undefined,
        });
        if (newPassphrase) {
          next = await enrollAccountKey(channel, next, next.session!, {
            passphrase: newPassphrase,
            oldPassphrase: passphrase,
          });
        }
        await saveState(dir, { ...next, relay: stored.relay });
        io.out(
          command === "login"
            ? `logged in as ${next.user}\n`
            : `account key of ${next.user} replaced; its passphrase is the new one\n`,
        );
      } finally {
        channel.close();
      }
      return 0;
    }
    const { synced, plan, where } = await syncAndWrite(state, stored.relay);
    if (command === "sync" || !plan) {
      io.out(`profile revision ${synced.document.revision}; ${where}\n`);
      return 0;
    }
    const iface = v.interface ?? "pharos0";
    const tunnel = await bringUp(plan, { iface, dataplane, runtimeDir: dir, log });
    io.out(
      `tunnel ${iface} up: ${plan.address} via ${plan.peer.endpoint.host}:${plan.peer.endpoint.port} ` +
        `(revision ${synced.document.revision})\n`,
    );
    await (io.stopped ?? new Promise(() => {}));
    await tunnel.down();
    io.err(JSON.stringify({ level: "info", msg: "tunnel down", interface: iface }));
    return 0;
  }
}
