/** The node agent's command line: `gen-csr` and `run`. */
import { createLogger } from "../core/log.ts";
import { settingsHelp } from "../core/settings.ts";
import {
  type CliIo,
  commandMistake,
  parseCommandLine,
  withCliErrors,
} from "../relay/host/cli_support.ts";
import { readJsonConfig } from "../relay/host/files.ts";
import { genCsr } from "../relay/host/gen_csr.ts";
import { splitListen } from "../core/settings.ts";
import { fingerprintSet } from "../core/pki/fingerprint.ts";
import { AGENT_SETTINGS, DEFAULT_STATE_DIR, resolveAgentConfig } from "./config.ts";
import { runControlFront } from "./control_front.ts";
import { runAgent } from "./run.ts";

const USAGE = `usage: agent <command> [flags]

commands:
  gen-csr [--dir DIR]   make the node key (DIR/node.key, 0600, reused if present)
                        and print a CSR (DIR defaults to $PHAROS_NODE_DIR, else
                        $PHAROS_AGENT_STATE, else ${DEFAULT_STATE_DIR})
  run                   restore the data plane from the state directory and serve
                        NodeControl to the controller

run flags (each also from an environment variable or the --config JSON file):
${
  settingsHelp(AGENT_SETTINGS, [[
    "--config FILE",
    "JSON object with the keys above (PHAROS_AGENT_CONFIG)",
  ]])
}
`;

export interface AgentCliIo extends CliIo {
  /** Resolves when the process should stop (signals); tests pass their own. */
  stopped?: Promise<unknown>;
}

export async function runAgentCli(
  args: string[],
  io: AgentCliIo,
  env: (name: string) => string | undefined,
): Promise<number> {
  const options: Record<string, { type: "string" }> = {
    dir: { type: "string" },
    config: { type: "string" },
  };
  for (const s of AGENT_SETTINGS) options[s.flag] = { type: "string" };
  const parsed = parseCommandLine(args, options, USAGE, io);
  if (!parsed) return 2;
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const command = positionals.join(" ");
  if (command === "control-front") {
    // Internal: the NodeControl listener process `run` starts (control_front.ts).
    const cfg = resolveAgentConfig(values, env, {});
    return await runControlFront({
      state: cfg.state,
      listen: splitListen(cfg.listen),
      legacyControllerPins: fingerprintSet(cfg.legacyControllerPins),
      log: createLogger("agent-control", { level: cfg.logLevel, sink: io.err }),
      input: Deno.stdin.readable,
      output: Deno.stdout.writable,
    });
  }
  if (command !== "gen-csr" && command !== "run") return commandMistake(command, USAGE, io);
  if (command === "gen-csr") {
    const dir = (values.dir as string | undefined) ?? env("PHAROS_NODE_DIR") ??
      env("PHAROS_AGENT_STATE") ?? DEFAULT_STATE_DIR;
    return await withCliErrors(io, () => genCsr("node", dir, io));
  }
  return await withCliErrors(io, async () => {
    const file = await readJsonConfig(
      (values.config as string | undefined) ?? env("PHAROS_AGENT_CONFIG"),
      AGENT_SETTINGS,
    );
    const cfg = resolveAgentConfig(values, env, file);
    const log = createLogger("agent", { level: cfg.logLevel, sink: io.err });
    let agent;
    try {
      agent = await runAgent(cfg, log);
    } catch (e) {
      log.error("agent not started", {
        code: (e as { code?: string }).code ?? "start-failed",
        error: e,
      });
      return 1;
    }
    io.out(JSON.stringify({ ready: true, port: agent.port }) + "\n");
    await (io.stopped ?? new Promise<void>(() => {}));
    await agent.close();
    return 0;
  });
}
