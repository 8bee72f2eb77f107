/**
 * `deno task controller`: parses the controller's settings (flags,
 * environment, JSON config file, defaults), starts it, and stops it when
 * `stopped` resolves (SIGINT/SIGTERM in main.ts, registered before start).
 *
 * Exit codes: 0 after a clean stop or --help; 2 for a bad flag or argument
 * (one line); 1 for a bad setting or config file (one "error: …" line) or a
 * failed start (one JSON log line with the error's code).
 */
import { PharosError } from "../../core/errors.ts";
import { createLogger } from "../../core/log.ts";
import { settingsHelp } from "../../core/settings.ts";
import { type CliIo, parseCommandLine, withCliErrors } from "../../relay/host/cli_support.ts";
import { readJsonConfig } from "../../relay/host/files.ts";
import { CONTROLLER_SETTINGS, type ControllerConfig, resolveConfig } from "../config.ts";
import { type RunningController, startController } from "../serve.ts";

export const CONTROLLER_USAGE = `usage: deno task controller [flags]

Runs the controller: on first start it creates the state directory (database,
secret.key, certificate authority); later starts load it.

flags (each also from an environment variable or the --config JSON file;
a flag beats the environment, which beats the file, which beats the default):
${
  settingsHelp(CONTROLLER_SETTINGS, [
    ["--config FILE", "JSON object holding some of the keys (others are refused)"],
    ["", CONTROLLER_SETTINGS.map((s) => s.key).join(", ")],
    ["", "PHAROS_CONFIG"],
    ["-h, --help", "this text"],
  ])
}
`;

const HINT = `"deno task controller --help" lists the settings`;

export interface ControllerCliIo extends CliIo {
  /** Resolves when the controller should stop (a signal's name, or anything). */
  stopped: Promise<unknown>;
  /** Starts the controller; tests may wrap it. */
  start?: typeof startController;
}

export async function runControllerCli(
  args: string[],
  io: ControllerCliIo,
  env: (name: string) => string | undefined,
): Promise<number> {
  const options = Object.fromEntries(
    [...CONTROLLER_SETTINGS.map((s) => s.flag), "config"].map((f) => [f, { type: "string" }]),
  ) as Record<string, { type: "string" }>;
  const parsed = parseCommandLine(args, options, CONTROLLER_USAGE, io, HINT);
  if (!parsed) return 2;
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(CONTROLLER_USAGE);
    return 0;
  }
  if (positionals.length > 0) {
    io.err(`error: unexpected argument "${positionals[0]}"; ${HINT}`);
    return 2;
  }
  let cfg!: ControllerConfig;
  const configured = await withCliErrors(io, async () => {
    const file = await readJsonConfig(
      (values.config as string | undefined) ?? env("PHAROS_CONFIG"),
      CONTROLLER_SETTINGS,
    );
    cfg = resolveConfig(values, env, file);
    return 0;
  });
  return configured === 0 ? await serve(cfg, io) : configured;
}

async function serve(cfg: ControllerConfig, io: ControllerCliIo): Promise<number> {
  const log = createLogger("controller", { level: cfg.logLevel, sink: io.err });
  let controller: RunningController;
  try {
    controller = await (io.start ?? startController)(cfg, { logSink: io.err });
  } catch (e) {
    log.error("controller not started", startFailure(e, cfg));
    return 1;
  }
  const signal = await io.stopped;
  log.info("stopping", typeof signal === "string" ? { signal } : {});
  await controller.shutdown(); // logs "stopped"
  return 0;
}

const LISTEN_ERRORS = [
  Deno.errors.AddrInUse,
  Deno.errors.AddrNotAvailable,
  Deno.errors.PermissionDenied,
];

/**
 * The log fields for a failed start: the error's code and message, and for
 * a listener that could not be opened (state errors are typed, so the only
 * raw OS error left is the dashboard listener's) the setting to change.
 */
export function startFailure(e: unknown, cfg: ControllerConfig): Record<string, unknown> {
  if (e instanceof PharosError) return { code: e.code, error: e };
  const err = e instanceof Error ? e : new Error(String(e));
  if (LISTEN_ERRORS.some((c) => err instanceof c) || /lookup address/.test(err.message)) {
    return {
      code: "listen-failed",
      error: err,
      hint: `cannot listen on ${cfg.uiListen}: change --ui-listen (PHAROS_UI_LISTEN)`,
    };
  }
  return { code: "start-failed", error: err };
}
