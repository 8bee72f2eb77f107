/** The relay's command line: `gen-csr` and `run`. */
import { createLogger } from "../core/log.ts";
import { type CliIo, commandMistake, parseCommandLine, withCliErrors } from "./cli_support.ts";
import { RELAY_SETTINGS, resolveRelayConfig } from "./config.ts";
import { readJsonConfig } from "./files.ts";
import { genCsr } from "./gen_csr.ts";
import { runRelay } from "./run.ts";

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
  --config FILE        JSON object with the keys dir, clientAddr, tunnelAddr,
                       egressAddr, egressAllow, logLevel, legacyControllerPins
                       (PHAROS_RELAY_CONFIG)
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
    const relay = await runRelay(cfg, log);
    io.out(JSON.stringify({ ready: true, ports: relay.ports }) + "\n");
    await (io.stopped ?? new Promise<void>(() => {}));
    await relay.close(); // logs "stopped" once every listener is closed
    return 0;
  });
}
