/** The relay's command line: `gen-csr` and `run`. */
import { createLogger } from "../core/log.ts";
import { PharosError } from "../core/errors.ts";
import { type CliIo, commandMistake, parseCommandLine, withCliErrors } from "./host/cli_support.ts";
import { RELAY_SETTINGS, resolveRelayConfig } from "./config.ts";
import { readJsonConfig } from "./host/files.ts";
import { genCsr } from "./host/gen_csr.ts";
import { errorCode, logUnhandledErrors } from "./host/process_guard.ts";
import { type RunningRemoteRelay, runRelay } from "./run.ts";

const USAGE = `usage: relay <command> [flags]

commands:
  gen-csr   make the relay key (DIR/relay.key, 0600, reused if present) and print a CSR
  run       serve clients, the controller's reverse tunnel and control-plane egress

flags (each also from an environment variable or the --config JSON file):
  --dir DIR            key and certificates (PHAROS_RELAY_DIR, /etc/pharos-relay)
  --client-addr A      device listener (PHAROS_RELAY_CLIENT_ADDR, :8443)
  --tunnel-addr A      controller tunnel listener (PHAROS_RELAY_TUNNEL_ADDR, :8444)
  --egress-addr A|off  controller egress listener (PHAROS_RELAY_EGRESS_ADDR, :8456)
  --egress-allow LIST  host:port,... the controller may reach when it pushes no list
                       (PHAROS_RELAY_EGRESS_ALLOW)
  --log-level L        debug|info|warn|error (PHAROS_LOG_LEVEL, info)
  --legacy-controller-pins FP,...
                       SHA-256 fingerprints of original Go controller certificates
                       (no role marker) to accept as the controller; off by default
                       (PHAROS_RELAY_LEGACY_CONTROLLER_PINS)
  --max-connections N|auto
                       connections open at once, all ports (PHAROS_RELAY_MAX_CONNECTIONS;
                       auto = 5/8 of the open-files limit, at most 50000)
  --max-connections-per-source N|auto
                       per IPv4 address or IPv6 /64 on the client port
                       (PHAROS_RELAY_MAX_CONNECTIONS_PER_SOURCE; auto = total/16, 4..1024)
  --handshake-timeout D
                       connect to finished TLS handshake (PHAROS_RELAY_HANDSHAKE_TIMEOUT, 10s)
  --preface-timeout D  TLS to HTTP/2 preface, or to the verified controller on the
                       tunnel/egress ports (PHAROS_RELAY_PREFACE_TIMEOUT, 10s)
  --idle-timeout D     client connection without a call for this long is closed
                       (PHAROS_RELAY_IDLE_TIMEOUT, 120s); durations: 500ms, 10s, 2m, 1h
  --config FILE        JSON object with the keys dir, clientAddr, tunnelAddr,
                       egressAddr, egressAllow, logLevel, legacyControllerPins,
                       maxConnections, maxConnectionsPerSource, handshakeTimeout,
                       prefaceTimeout, idleTimeout (PHAROS_RELAY_CONFIG)
`;

export interface RelayCliIo extends CliIo {
  /** Resolves when the process should stop (signals); tests pass their own. */
  stopped?: Promise<unknown>;
}

export async function runRelayCli(
  args: string[],
  io: RelayCliIo,
  env: (name: string) => string | undefined,
): Promise<number> {
  const parsed = parseCommandLine(
    args,
    {
      dir: { type: "string" },
      "client-addr": { type: "string" },
      "tunnel-addr": { type: "string" },
      "egress-addr": { type: "string" },
      "egress-allow": { type: "string" },
      "log-level": { type: "string" },
      "legacy-controller-pins": { type: "string" },
      "max-connections": { type: "string" },
      "max-connections-per-source": { type: "string" },
      "handshake-timeout": { type: "string" },
      "preface-timeout": { type: "string" },
      "idle-timeout": { type: "string" },
      config: { type: "string" },
    },
    USAGE,
    io,
  );
  if (!parsed) return 2;
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const command = positionals.join(" ");
  if (command !== "gen-csr" && command !== "run") return commandMistake(command, USAGE, io);
  return await withCliErrors(io, async () => {
    const cfg = resolveRelayConfig(
      values,
      env,
      await readJsonConfig(values.config ?? env("PHAROS_RELAY_CONFIG"), RELAY_SETTINGS),
    );
    if (command === "gen-csr") return await genCsr("relay", cfg.dir, io);
    const log = createLogger("relay", { level: cfg.logLevel, sink: io.err });
    let relay: RunningRemoteRelay;
    try {
      relay = await runRelay(cfg, log);
    } catch (e) {
      if (isOperatorError(e)) throw e; // one "error: …" line (withCliErrors)
      log.error("relay not started", { code: errorCode(e, "start-failed"), error: e });
      return 1;
    }
    io.out(JSON.stringify({ ready: true, ports: relay.ports, pid: Deno.pid }) + "\n");
    const dead = await Promise.race([
      (io.stopped ?? new Promise<void>(() => {})).then(() => null),
      relay.failed,
    ]);
    if (dead) {
      log.error("a listener keeps dying: exiting for the supervisor to restart the relay", {
        code: "listener-fatal",
        error: dead,
      });
      await relay.close();
      return 1;
    }
    await relay.close(); // logs "stopped" once every listener is closed
    return 0;
  });
}

/** What withCliErrors turns into one "error: …" line (the operator can fix it). */
function isOperatorError(e: unknown): boolean {
  return e instanceof PharosError || e instanceof Deno.errors.PermissionDenied ||
    e instanceof Deno.errors.NotADirectory || e instanceof Deno.errors.NotFound;
}

/**
 * `deno task relay`, after main.ts registered the signals: runs the command
 * line; a runtime error nobody handled is logged as one JSON line (code
 * unhandled-error) instead of ending the relay with a stack trace, and an
 * error escaping the command line ends it with one JSON line and exit 1.
 */
export async function relayMain(
  args: string[],
  io: RelayCliIo,
  env: (name: string) => string | undefined,
): Promise<number> {
  const log = createLogger("relay", { sink: io.err });
  const unhandled = logUnhandledErrors("relay", io.err);
  try {
    return await runRelayCli(args, io, env);
  } catch (e) {
    log.error("relay failed", { code: errorCode(e, "crashed"), error: e });
    return 1;
  } finally {
    unhandled.close();
  }
}
