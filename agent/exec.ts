/**
 * The agent's only way to run a program: an argv list, never a shell
 * (CONTRACTS.md §7.6). Only the programs named in {@link ALLOWED_PROGRAMS}
 * (or an absolute path the operator configured, for xray) may run, every
 * argument is checked to be a single printable token (no NUL, no line
 * break), and every run is bounded by a timeout.
 */
import { AgentError, GrpcCode } from "./errors.ts";

/** Programs the agent may run by name (looked up on PATH). */
export const ALLOWED_PROGRAMS = new Set([
  "ip",
  "iptables",
  "ip6tables",
  "sysctl",
  "wg",
  "awg",
  "wireguard-go",
  "amneziawg-go",
  "xray",
]);

/** Default upper bound for one command. */
export const COMMAND_TIMEOUT_MS = 30_000;

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Throws unless `argv` is an allowed program followed by clean tokens. */
export function checkArgv(argv: readonly string[], extraPrograms: ReadonlySet<string> = new Set()) {
  if (argv.length === 0) throw new AgentError("bad-argv", "empty command line");
  const [program] = argv;
  const allowed = ALLOWED_PROGRAMS.has(program) ||
    (program.startsWith("/") && extraPrograms.has(program));
  if (!allowed) {
    throw new AgentError("program-not-allowed", `the agent may not run ${JSON.stringify(program)}`);
  }
  for (const [i, a] of argv.entries()) {
    if (typeof a !== "string" || a.length === 0 || /[\0\n\r]/.test(a)) {
      throw new AgentError(
        "bad-argv",
        `argument ${i} of ${program} is empty or holds a control character`,
      );
    }
  }
}

/**
 * Runs one program to completion (bounded: killed at the timeout, exit
 * code 124); never throws for a non-zero exit. There is deliberately no
 * stdin: secrets go through 0600 files, and `Deno.Command#output()` (unlike
 * spawn() with pipes) does not leave memory behind per process started.
 */
export async function runCommand(
  argv: readonly string[],
  opts: RunOptions & { extraPrograms?: ReadonlySet<string> } = {},
): Promise<CommandResult> {
  checkArgv(argv, opts.extraPrograms);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), opts.timeoutMs ?? COMMAND_TIMEOUT_MS);
  try {
    const out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: opts.env,
      signal: abort.signal,
    }).output();
    const dec = new TextDecoder();
    return {
      code: abort.signal.aborted && out.code !== 0 ? 124 : out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new AgentError(
        "program-missing",
        `${argv[0]} is not installed (not found on PATH); install its Debian package`,
        GrpcCode.FAILED_PRECONDITION,
      );
    }
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a command and throws an AgentError (code `command-failed`) on a non-zero exit. */
export async function mustRun(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await runCommand(argv, opts);
  if (r.code !== 0) {
    throw new AgentError(
      "command-failed",
      `\`${argv.join(" ")}\` exited ${r.code}: ${r.stderr.trim().slice(0, 500) || "(no output)"}`,
    );
  }
  return r.stdout;
}

/** True when `program` can be found and started (`--version`/`-V`-style probe args). */
export async function hasProgram(program: string, args: string[] = ["--version"]) {
  try {
    const r = await runCommand([program, ...args], {
      timeoutMs: 5000,
      extraPrograms: new Set([program]),
    });
    return r.code !== 124;
  } catch {
    return false;
  }
}
