/**
 * What `nodes add` and `relays add` share on the command line: the SSH
 * target (refused before anything happens when malformed), the password
 * read from stdin, the printing of progress, the re-run hint.
 */
import { formatProgress, type ProgressListener } from "../onboarding/events.ts";
import type { SshCredentials } from "../onboarding/engine.ts";
import type { RemoteSetup } from "../onboarding/setup.ts";
import type { ControllerState } from "../state.ts";
import { SshError } from "../ssh/errors.ts";
import { remoteArg } from "../ssh/quote.ts";
import { parseSshTarget, type SshTarget } from "../ssh/target.ts";
import type { CliIo } from "../../relay/host/cli_support.ts";
import { UsageError } from "./format.ts";
import { withService } from "./with_state.ts";

/** The `cox` IO, with stdin for --password-stdin (tests pass their own). */
export interface CoxIo extends CliIo {
  stdin?: () => Promise<Uint8Array>;
}

const MAX_PASSWORD = 1024;

/** Up to `limit` bytes of `stream` (until EOF); the rest stays unread. */
export async function readAtMost(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array> {
  const buf = new Uint8Array(limit);
  let n = 0;
  const reader = stream.getReader();
  try {
    while (n < limit) {
      const { value, done } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, limit - n);
      buf.set(value.subarray(0, take), n);
      n += take;
    }
  } finally {
    reader.releaseLock();
  }
  return buf.subarray(0, n);
}

/** The password on stdin: one line (a final newline is dropped), 1-1024 bytes. */
export async function passwordFromStdin(io: CoxIo): Promise<string> {
  const bytes = await (io.stdin ?? (() => readAtMost(Deno.stdin.readable, MAX_PASSWORD + 2)))();
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError("--password-stdin: the password is not UTF-8 text");
  }
  text = text.replace(/\r?\n$/, "");
  if (text.length === 0) throw new UsageError("--password-stdin: stdin held no password");
  if (new TextEncoder().encode(text).length > MAX_PASSWORD) {
    throw new UsageError(`--password-stdin: the password is longer than ${MAX_PASSWORD} bytes`);
  }
  try {
    remoteArg(text, "the password");
  } catch {
    throw new UsageError(
      "--password-stdin: the password holds a control character or a second line",
    );
  }
  return text;
}

export interface OnboardingFlags {
  target: SshTarget;
  credentials: SshCredentials;
  sudo: boolean;
}

/** Checks the target and the sudo choice; reads the password. UsageError (exit 2) on mistakes. */
export async function onboardingFlags(
  targetText: string,
  passwordStdin: boolean,
  sudo: boolean,
  io: CoxIo,
): Promise<OnboardingFlags> {
  let target: SshTarget;
  try {
    target = parseSshTarget(targetText);
  } catch (e) {
    if (e instanceof SshError) throw new UsageError(e.message);
    throw e;
  }
  if (target.user !== "root" && !sudo) {
    throw new UsageError(
      `${target.user} is not root: add --sudo (commands then run through sudo; with --password-stdin the same password answers sudo)`,
    );
  }
  const credentials: SshCredentials = passwordStdin
    ? { kind: "password", password: await passwordFromStdin(io) }
    : { kind: "key" };
  return { target, credentials, sudo };
}

/** Prints each progress event on stderr as it happens. */
export function printProgress(io: CliIo): ProgressListener {
  return (e) => io.err(formatProgress(e));
}

/** `deno task cox <words> <flags…>` as the operator re-runs it (never the password). */
export function rerunCommand(
  words: string,
  state: string,
  flags: [string, string | boolean | undefined][],
): string {
  const parts = [`deno task cox ${words}`];
  for (const [f, v] of flags) {
    if (v === undefined || v === false) continue;
    parts.push(
      v === true ? `--${f}` : `--${f} ${/^[A-Za-z0-9._/:@,+=-]+$/.test(v) ? v : JSON.stringify(v)}`,
    );
  }
  if (state !== "./state") parts.push(`--state ${state}`);
  return parts.join(" ");
}

/** The flags `nodes add` and `relays add` both take. */
export interface AddFlags {
  passwordStdin: boolean;
  sudo: boolean;
  acceptHostKey?: string;
  installScript?: string;
  dir?: string;
}

/** What both onboardings take from the command line. */
export interface AddRequest extends OnboardingFlags {
  acceptHostKey?: string;
  setup: Partial<RemoteSetup>;
  rerun: string;
  onProgress: ProgressListener;
}

/**
 * `cox <words> <target>`: checks the target and the flags, then runs
 * `onboard` on the opened state. `own` are the command's own flags, listed
 * before the shared ones in the re-run hint.
 */
export async function runAdd<T>(
  state: string,
  words: string,
  targetText: string,
  flags: AddFlags,
  own: [string, string | boolean | undefined][],
  io: CoxIo,
  onboard: (st: ControllerState, req: AddRequest) => Promise<T>,
): Promise<T> {
  const { target, credentials, sudo } = await onboardingFlags(
    targetText,
    flags.passwordStdin,
    flags.sudo,
    io,
  );
  return await withService(state, (_svc, st) =>
    onboard(st, {
      target,
      credentials,
      sudo,
      acceptHostKey: flags.acceptHostKey,
      setup: {
        ...(flags.installScript ? { installScript: flags.installScript } : {}),
        ...(flags.dir ? { dir: flags.dir } : {}),
      },
      rerun: rerunCommand(`${words} ${targetText}`, state, [
        ...own,
        ["sudo", flags.sudo],
        ["password-stdin", flags.passwordStdin],
        ["install-script", flags.installScript],
        ["dir", flags.dir],
      ]),
      onProgress: printProgress(io),
    }));
}
