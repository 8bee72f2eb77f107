/** The `cox` command line: parses arguments and dispatches to commands. */
import { readJsonConfig } from "../../relay/host/files.ts";
import { CONTROLLER_SETTINGS, type ControllerConfig, resolveConfig } from "../config.ts";
import { devicesList, devicesRevoke, ticketsCreate, usersPasswd } from "./accounts.ts";
import { adminsAdd, adminsResetTotp } from "./admins.ts";
import { auditTailCmd, auditVerify, MAX_TAIL } from "./audit.ts";
import { caExport } from "./ca.ts";
import { onOff, UsageError, wholeNumber } from "./format.ts";
import { geoipDownload, geoipStatus } from "./geoip.ts";
import { initState } from "./init.ts";
import {
  nodesAdd,
  nodesEndpoints,
  nodesList,
  nodesPolicy,
  nodesRemove,
  nodesShow,
} from "./nodes.ts";
import { pathsAdd, pathsExit, pathsList, pathsRemove } from "./paths.ts";
import { profilesReseal } from "./profiles.ts";
import type { CoxIo } from "./onboarding_io.ts";
import { relaySign, relaysList } from "./relay.ts";
import { relaysAdd } from "./relays.ts";
import { settingsList, settingsPreset } from "./settings.ts";
import { sshKey } from "./ssh_key.ts";
import { usersAdd, usersList } from "./users.ts";
import { cliActor } from "./with_state.ts";
import { commandMistake, parseCommandLine, withCliErrors } from "../../relay/host/cli_support.ts";

const USAGE = `usage: cox <command> [flags]

commands:
  init [--personal|--enterprise]          create the state directory, its certificate
                                          authority and settings from a preset (personal
                                          by default); refused if it already holds a CA
  settings list                           every setting, its value and version
  settings preset personal|enterprise     apply a preset to an existing state
  ca export [--which root|fleet|device]   print the CA certificates (PEM)
  relay sign --csr FILE --hosts H[,H...] [--out-dir DIR]
                                          sign a relay's CSR and record the relay; with
                                          --out-dir, write relay.crt, ca.crt, fleet-ca.crt,
                                          device-ca.crt
  relays add USER@HOST[:PORT] [--hosts H[,H...]] [--tunnel-port N] [ssh flags]
                                          onboard a remote relay over SSH: install, key
                                          and CSR made on the relay, certificate, start;
                                          a running controller then dials its tunnel
  relays list                             the recorded relays
  ssh-key                                 print the controller's SSH public key (made on
                                          first use); put it in the host's authorized_keys
  nodes add USER@HOST[:PORT] [--name N] [--region R] [ssh flags]
                                          onboard a node over SSH: install the agent, key
                                          and CSR made on the node, certificate, start,
                                          wait for NodeControl; re-run to resume
  nodes list                              the recorded nodes
  nodes show NODE                         one node (by name or id)
  nodes policy NODE [--forwarding on|off] [--masquerade on|off] [--isolation on|off]
               [--expect-version N]       change a node's network policy
  nodes endpoints NODE IP:PORT[-LAST]... | --clear [--expect-version N]
                                          set the public IPs and UDP ports (at most 8)
                                          of the node's AmneziaWG listener, IPv6 as
                                          [IP]:PORT; stored, profiles resealed; a
                                          running controller pushes them to the node,
                                          whose agent DNATs them onto the listener
  nodes remove NODE [--expect-version N]  forget a node and revoke its certificate
  paths list                              the cascade paths (entry node → exit node)
  paths add ENTRY EXIT [--mtu N]          a cascade ENTRY → EXIT for devices that choose
                                          EXIT (nodes by name or id; inner-link MTU
                                          1280-9000, default 1340)
  paths exit PATH NODE [--expect-version N]
                                          switch the path's exit to NODE
  paths remove PATH [--expect-version N]  remove a path; devices bound to it leave at
                                          the entry node again
  users add EMAIL [--admin]               add a user (personal preset: one admin)
  users list                              the users
  users passwd EMAIL                      set the user's login password, read from stdin
                                          (one line)
  admins add [--url BASE]                 print a one-time link (24 h) that creates an
                                          admin (BASE: where you open the dashboard,
                                          default from --ui-listen)
  admins reset-totp EMAIL                 for an admin who lost the authenticator: remove
                                          two-factor sign-in and recovery codes, end every
                                          session of theirs
  tickets create EMAIL [--ttl 15m] [--relay HOST:PORT] [--unbound]
                                          an enrollment ticket for EMAIL: prints the deep
                                          link and its QR (single use; --ttl up to 7d;
                                          --relay: a remote relay instead of the embedded
                                          one; --unbound: for the original app, weaker:
                                          whoever sees the token in transit can claim it)
  profiles reseal --user ID|EMAIL | --all
                                          build and seal device profiles again (one
                                          user's or everyone's), printing progress; exit
                                          1 if a device failed (the others are resealed)
  devices list [--user EMAIL]             the enrolled devices
  devices revoke ID [--reason TEXT]       revoke a device: its certificate is refused
                                          everywhere, its peers removed
  geoip download|update [--url URL]       download a City database (.mmdb, .mmdb.gz or
                                          .tar.gz; default URL: setting geoip.url) into
                                          the state; a running controller switches to it
  geoip status                            the GeoIP database in use and the last download
  audit verify                            prove the audit log's hash chain; exit 1 naming
                                          the first broken entry
  audit tail [-n N]                       the last N audit entries (default 20)

ssh flags (nodes add, relays add):
  --password-stdin                log in with the password read from stdin (default: the
                                  controller's key); it also answers sudo
  --sudo                          the user is not root: run every command through sudo
  --accept-new-host-key SHA256:…  accept this host key although another one is pinned
                                  (after checking it on the host's console)
  --install-script FILE           install script to upload and run (default
                                  deploy/install-agent.sh / deploy/install-relay.sh)
  --dir DIR                       directory for key, CSR and certificates on the host
                                  (default /var/lib/pharos-agent / /etc/pharos-relay)
The host key is pinned on first contact; a changed one is refused before logging in.

global flags:
  --state DIR     state directory (env PHAROS_STATE, default ./state); every command but
                  init needs one the controller or "cox init" made
  --config FILE   the controller's JSON config file (env PHAROS_CONFIG)

--expect-version N refuses the change (exit 1, nothing written) unless the row is still
at version N, as "nodes show" (or "paths list") printed it.
`;

type Values = Record<string, string | boolean | undefined>;

interface Ctx {
  state: string;
  cfg: ControllerConfig;
  args: string[];
  values: Values;
  actor: string;
  io: CoxIo;
}

interface Command {
  /** Positional parameters after the command words. */
  params: string[];
  /** Flags besides --state, --config and --help. */
  flags: string[];
  /** The last param may be given any number of times, none included. */
  repeats?: boolean;
  run(c: Ctx): Promise<number>;
}

const str = (v: Values, k: string) => v[k] as string | undefined;

const SSH_FLAGS = ["password-stdin", "sudo", "accept-new-host-key", "install-script", "dir"];

function sshFlags(v: Values) {
  return {
    passwordStdin: v["password-stdin"] === true,
    sudo: v.sudo === true,
    acceptHostKey: str(v, "accept-new-host-key"),
    installScript: str(v, "install-script"),
    dir: str(v, "dir"),
  };
}

const COMMANDS: Record<string, Command> = {
  init: {
    params: [],
    flags: ["personal", "enterprise"],
    run: (c) => {
      if (c.values.personal && c.values.enterprise) {
        throw new UsageError("choose one of --personal and --enterprise");
      }
      return initState(c.state, c.values.enterprise ? "enterprise" : "personal", c.actor, c.io);
    },
  },
  "settings list": { params: [], flags: [], run: (c) => settingsList(c.state, c.io) },
  "settings preset": {
    params: ["NAME"],
    flags: [],
    run: (c) => settingsPreset(c.state, c.args[0], c.actor, c.io),
  },
  "ca export": {
    params: [],
    flags: ["which"],
    run: (c) => caExport(c.state, str(c.values, "which"), c.io),
  },
  "relay sign": {
    params: [],
    flags: ["csr", "hosts", "out-dir"],
    run: (c) =>
      relaySign(
        c.state,
        str(c.values, "csr"),
        str(c.values, "hosts"),
        str(c.values, "out-dir"),
        c.actor,
        c.io,
      ),
  },
  "relays list": { params: [], flags: [], run: (c) => relaysList(c.state, c.io) },
  "relays add": {
    params: ["USER@HOST[:PORT]"],
    flags: ["hosts", "tunnel-port", ...SSH_FLAGS],
    run: (c) =>
      relaysAdd(
        c.state,
        c.args[0],
        {
          hosts: str(c.values, "hosts"),
          tunnelPort: str(c.values, "tunnel-port"),
          ...sshFlags(c.values),
        },
        c.actor,
        c.io,
      ),
  },
  "ssh-key": { params: [], flags: [], run: (c) => sshKey(c.state, c.actor, c.io) },
  "nodes add": {
    params: ["USER@HOST[:PORT]"],
    flags: ["name", "region", ...SSH_FLAGS],
    run: (c) =>
      nodesAdd(
        c.state,
        c.args[0],
        {
          name: str(c.values, "name"),
          region: str(c.values, "region"),
          ...sshFlags(c.values),
        },
        c.actor,
        c.io,
      ),
  },
  "nodes list": { params: [], flags: [], run: (c) => nodesList(c.state, c.io) },
  "nodes show": { params: ["NODE"], flags: [], run: (c) => nodesShow(c.state, c.args[0], c.io) },
  "nodes policy": {
    params: ["NODE"],
    flags: ["forwarding", "masquerade", "isolation", "expect-version"],
    run: (c) =>
      nodesPolicy(
        c.state,
        c.args[0],
        {
          forwarding: onOff("forwarding", str(c.values, "forwarding")),
          masquerade: onOff("masquerade", str(c.values, "masquerade")),
          isolation: onOff("isolation", str(c.values, "isolation")),
        },
        wholeNumber("--expect-version", str(c.values, "expect-version")),
        c.actor,
        c.io,
      ),
  },
  "nodes endpoints": {
    params: ["NODE", "ENDPOINT"],
    flags: ["clear", "expect-version"],
    repeats: true,
    run: (c) =>
      nodesEndpoints(
        c.cfg,
        c.args[0],
        c.args.slice(1),
        c.values.clear === true,
        wholeNumber("--expect-version", str(c.values, "expect-version")),
        c.actor,
        c.io,
      ),
  },
  "nodes remove": {
    params: ["NODE"],
    flags: ["expect-version"],
    run: (c) =>
      nodesRemove(
        c.state,
        c.args[0],
        wholeNumber("--expect-version", str(c.values, "expect-version")),
        c.actor,
        c.io,
      ),
  },
  "paths list": { params: [], flags: [], run: (c) => pathsList(c.state, c.io) },
  "paths add": {
    params: ["ENTRY", "EXIT"],
    flags: ["mtu"],
    run: (c) =>
      pathsAdd(
        c.state,
        c.args[0],
        c.args[1],
        wholeNumber("--mtu", str(c.values, "mtu"), 1),
        c.actor,
        c.io,
      ),
  },
  "paths exit": {
    params: ["PATH", "NODE"],
    flags: ["expect-version"],
    run: (c) =>
      pathsExit(
        c.state,
        c.args[0],
        c.args[1],
        wholeNumber("--expect-version", str(c.values, "expect-version")),
        c.actor,
        c.io,
      ),
  },
  "paths remove": {
    params: ["PATH"],
    flags: ["expect-version"],
    run: (c) =>
      pathsRemove(
        c.state,
        c.args[0],
        wholeNumber("--expect-version", str(c.values, "expect-version")),
        c.actor,
        c.io,
      ),
  },
  "users add": {
    params: ["EMAIL"],
    flags: ["admin"],
    run: (c) => usersAdd(c.state, c.args[0], c.values.admin === true, c.actor, c.io),
  },
  "users list": { params: [], flags: [], run: (c) => usersList(c.state, c.io) },
  "users passwd": {
    params: ["EMAIL"],
    flags: [],
    run: (c) => usersPasswd(c.cfg, c.args[0], c.actor, c.io),
  },
  "admins add": {
    params: [],
    flags: ["url"],
    run: (c) => adminsAdd(c.cfg, str(c.values, "url"), c.actor, c.io),
  },
  "admins reset-totp": {
    params: ["EMAIL"],
    flags: [],
    run: (c) => adminsResetTotp(c.state, c.args[0], c.actor, c.io),
  },
  "tickets create": {
    params: ["EMAIL"],
    flags: ["ttl", "relay", "unbound"],
    run: (c) =>
      ticketsCreate(
        c.cfg,
        c.args[0],
        {
          ttl: str(c.values, "ttl"),
          relay: str(c.values, "relay"),
          unbound: c.values.unbound === true,
        },
        c.actor,
        c.io,
      ),
  },
  "devices list": {
    params: [],
    flags: ["user"],
    run: (c) => devicesList(c.cfg, str(c.values, "user"), c.io),
  },
  "devices revoke": {
    params: ["ID"],
    flags: ["reason"],
    run: (c) => devicesRevoke(c.cfg, c.args[0], str(c.values, "reason"), c.actor, c.io),
  },
  "geoip download": {
    params: [],
    flags: ["url"],
    run: (c) => geoipDownload(c.state, str(c.values, "url"), c.actor, c.io),
  },
  // DESIGN.md's name for the same command.
  "geoip update": {
    params: [],
    flags: ["url"],
    run: (c) => geoipDownload(c.state, str(c.values, "url"), c.actor, c.io),
  },
  "geoip status": { params: [], flags: [], run: (c) => geoipStatus(c.state, c.io) },
  "profiles reseal": {
    params: [],
    flags: ["user", "all"],
    run: (c) =>
      profilesReseal(
        c.cfg,
        { user: str(c.values, "user"), all: c.values.all === true },
        c.actor,
        c.io,
      ),
  },
  "audit verify": { params: [], flags: [], run: (c) => auditVerify(c.state, c.io) },
  "audit tail": {
    params: [],
    flags: ["lines"],
    run: (c) => {
      const n = wholeNumber("-n", str(c.values, "lines"), 1) ?? 20;
      if (n > MAX_TAIL) throw new UsageError(`-n takes at most ${MAX_TAIL}`);
      return auditTailCmd(c.state, n, c.io);
    },
  },
};

const GLOBAL_FLAGS = ["state", "config", "help"];
const BOOLEAN_FLAGS = [
  "personal",
  "enterprise",
  "admin",
  "password-stdin",
  "sudo",
  "unbound",
  "all",
  "clear",
];

/** The command named by the first one or two words, and the words after it. */
function findCommand(words: string[]): { name: string; args: string[] } | undefined {
  for (const n of [2, 1]) {
    const name = words.slice(0, n).join(" ");
    if (Object.hasOwn(COMMANDS, name)) return { name, args: words.slice(n) };
  }
  return undefined;
}

export async function runCli(
  args: string[],
  io: CoxIo,
  env: (n: string) => string | undefined,
): Promise<number> {
  const flags = [...new Set(Object.values(COMMANDS).flatMap((c) => c.flags))];
  const options = Object.fromEntries(
    flags.map((f) => [f, { type: BOOLEAN_FLAGS.includes(f) ? "boolean" : "string" }]),
  ) as Record<string, { type: "string" | "boolean"; short?: string }>;
  options.lines.short = "n";
  const parsed = parseCommandLine(
    args,
    { ...options, state: { type: "string" }, config: { type: "string" } },
    USAGE,
    io,
  );
  if (!parsed) return 2;
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const found = findCommand(positionals);
  if (!found) return commandMistake(positionals.join(" "), USAGE, io);
  const cmd = COMMANDS[found.name];
  const mistake = usageMistake(found.name, cmd, found.args, values);
  if (mistake) {
    io.err(`error: ${mistake}; "cox --help" lists the commands`);
    return 2;
  }
  return await withCliErrors(io, async () => {
    const file = await readJsonConfig(
      str(values, "config") ?? env("PHAROS_CONFIG"),
      CONTROLLER_SETTINGS,
    );
    const cfg = resolveConfig({ state: str(values, "state") }, env, file);
    try {
      return await cmd.run({
        state: cfg.state,
        cfg,
        args: found.args,
        values,
        actor: cliActor(),
        io,
      });
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      io.err(`error: ${e.message}`);
      return 2;
    }
  });
}

function usageMistake(name: string, cmd: Command, args: string[], values: Values) {
  const fits = cmd.repeats
    ? args.length >= cmd.params.length - 1
    : args.length === cmd.params.length;
  if (!fits) {
    const expected = [name, ...cmd.params].join(" ");
    return args.length < cmd.params.length
      ? `"${name}" needs ${cmd.params.slice(args.length).join(" ")}: cox ${expected}`
      : `unexpected argument "${args[cmd.params.length]}": cox ${expected}`;
  }
  const stray = Object.keys(values).find((f) =>
    values[f] !== undefined && !GLOBAL_FLAGS.includes(f) && !cmd.flags.includes(f)
  );
  return stray === undefined ? undefined : `--${stray} does not apply to "${name}"`;
}
