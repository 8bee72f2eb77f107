/**
 * What every PharosVPN command line shares (relay, agent, `cox`): argument
 * parsing that prints usage on a mistake, and one rule for errors — a typed
 * PharosError or a file-system refusal becomes "error: …" and exit code 1,
 * anything else is a bug and propagates.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { PharosError } from "../core/errors.ts";

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

/** Parses flags and positionals; on a bad flag prints it with the usage and returns null. */
export function parseCommandLine<O extends Options>(
  args: string[],
  options: O,
  usage: string,
  io: CliIo,
) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: { ...options, help: { type: "boolean", short: "h" } },
    });
  } catch (e) {
    io.err(`${(e as Error).message}\n${usage}`);
    return null;
  }
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
