/**
 * What every PharosVPN command line shares (relay, agent, `cox`): argument
 * parsing that prints usage on a mistake, and one rule for errors — a typed
 * PharosError or a file-system refusal becomes "error: …" and exit code 1,
 * anything else is a bug and propagates.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { PharosError } from "../../core/errors.ts";

/** Where commands write: injectable so tests run them in-process. */
export interface CliIo {
  /** Command output (stdout), written as given. */
  out(text: string): void;
  /** Progress and errors (stderr), one line each. */
  err(line: string): void;
}

export const processIo: CliIo = {
  out: (text) => Deno.stdout.writeSync(new TextEncoder().encode(text)),
  err: (line) => console.error(line),
};

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * Parses flags and positionals; on a bad flag prints the mistake followed by
 * the usage (or, given `hint`, one line: the mistake and the hint) and
 * returns null (the caller exits with 2).
 */
export function parseCommandLine<O extends Options>(
  args: string[],
  options: O,
  usage: string,
  io: CliIo,
  hint?: string,
) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: { ...options, help: { type: "boolean", short: "h" } },
    });
  } catch (e) {
    const mistake = argumentMistake(e as Error & { code?: string });
    io.err(hint === undefined ? `${mistake}\n${usage}` : `error: ${mistake}; ${hint}`);
    return null;
  }
}

function argumentMistake(e: Error & { code?: string }): string {
  if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const flag = e.message.match(/'([^']*)'/)?.[1];
    if (flag) return `unknown flag "${flag}"`;
  }
  return e.message;
}

/** A missing command prints the usage, an unknown one is named first; both exit with 2. */
export function commandMistake(command: string, usage: string, io: CliIo): number {
  io.err(command === "" ? usage : `unknown command "${command}"\n${usage}`);
  return 2;
}

/**
 * Installs SIGINT and SIGTERM listeners at once (call it before any slow
 * start-up) and resolves with the first such signal's name.
 */
export function stopSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, () => resolve(sig));
    }
  });
}

/** Runs a command, turning operator-facing failures into "error: …" and exit 1. */
export async function withCliErrors(io: CliIo, command: () => Promise<number>): Promise<number> {
  try {
    return await command();
  } catch (e) {
    if (
      e instanceof PharosError || e instanceof Deno.errors.PermissionDenied ||
      e instanceof Deno.errors.NotADirectory || e instanceof Deno.errors.NotFound
    ) {
      io.err(`error: ${(e as Error).message}`);
      return 1;
    }
    throw e;
  }
}
