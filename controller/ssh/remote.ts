/**
 * Commands on an onboarded host, as root: directly when the SSH user is
 * root, else through sudo. Every command is an argv array turned into a
 * quoted line by quote.ts; file contents travel on stdin, never on the
 * command line.
 *
 * sudo: `checkPrivilege` first tries `sudo -n true` (NOPASSWD). Otherwise,
 * with a password, `sudo -S -k -p '' true` with the password on stdin; once
 * that worked, every command runs as `sudo -S -k -p '' -- …` with the
 * password as stdin's first line (`-k` makes sudo ask every time, so the
 * line is always consumed, and the rest of stdin is the command's). The
 * password is checked before any payload follows it, so a wrong one never
 * makes sudo read payload lines as further attempts.
 */
import type { ExecOptions, ExecResult, SshConnection } from "./client.ts";
import { SshError } from "./errors.ts";
import { commandLine, remotePath } from "./quote.ts";
import { oneLine } from "./text.ts";

export type Privilege = "root" | "sudo-nopasswd" | "sudo-password";

const decoder = new TextDecoder();

/** The end of a command's output as one line (see text.ts), for a message. */
export function tail(bytes: Uint8Array, max = 600): string {
  return oneLine(decoder.decode(bytes), max);
}

export interface RemoteOptions {
  /** The SSH user is not root: run through sudo. */
  sudo: boolean;
  /** The password for sudo (the SSH password when --password-stdin). */
  sudoPassword?: string;
}

export class RemoteHost {
  #privilege: Privilege | null = null;

  constructor(readonly conn: SshConnection, readonly opts: RemoteOptions) {}

  get privilege(): Privilege | null {
    return this.#privilege;
  }

  /** Finds out how to become root; throws `sudo-failed` saying what to configure. */
  async checkPrivilege(): Promise<Privilege> {
    if (!this.opts.sudo) {
      const r = await this.conn.exec(commandLine(["id", "-u"]));
      if (decoder.decode(r.stdout).trim() !== "0") {
        throw new SshError(
          "sudo-failed",
          `the SSH user on ${this.conn.where} is not root (uid ${
            decoder.decode(r.stdout).trim() || "?"
          }): add --sudo`,
        );
      }
      return this.#privilege = "root";
    }
    const nopasswd = await this.conn.exec(commandLine(["sudo", "-n", "--", "true"]), {
      timeoutMs: 60_000,
    });
    if (nopasswd.code === 0) return this.#privilege = "sudo-nopasswd";
    if (this.opts.sudoPassword === undefined) {
      throw new SshError(
        "sudo-failed",
        `sudo on ${this.conn.where} wants a password (${
          tail(nopasswd.stderr, 200) || "sudo -n failed"
        }): ` +
          "give it with --password-stdin, or allow the user NOPASSWD in /etc/sudoers.d",
      );
    }
    const withPassword = await this.conn.exec(
      commandLine(["sudo", "-S", "-k", "-p", "", "--", "true"]),
      { stdin: this.opts.sudoPassword + "\n", timeoutMs: 60_000 },
    );
    if (withPassword.code !== 0) {
      throw new SshError(
        "sudo-failed",
        `sudo on ${this.conn.where} refused the password (${
          tail(withPassword.stderr, 200) || "no reason given"
        }): ` +
          "check that the user may run commands as root with sudo and that the password is right",
      );
    }
    return this.#privilege = "sudo-password";
  }

  #wrap(argv: readonly string[], stdin: Uint8Array | string | undefined) {
    const p = this.#privilege;
    if (p === null) throw new SshError("sudo-failed", "checkPrivilege must run before commands");
    if (p === "root") return { line: commandLine(argv), stdin };
    if (p === "sudo-nopasswd") return { line: commandLine(["sudo", "-n", "--", ...argv]), stdin };
    const head = new TextEncoder().encode(this.opts.sudoPassword + "\n");
    const body = stdin === undefined
      ? new Uint8Array(0)
      : typeof stdin === "string"
      ? new TextEncoder().encode(stdin)
      : stdin;
    const all = new Uint8Array(head.length + body.length);
    all.set(head);
    all.set(body, head.length);
    return { line: commandLine(["sudo", "-S", "-k", "-p", "", "--", ...argv]), stdin: all };
  }

  /** Runs argv as root; returns whatever the exit code (see `mustRun`). */
  async run(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const { line, stdin } = this.#wrap(argv, opts.stdin);
    return await this.conn.exec(line, { ...opts, stdin });
  }

  /** Runs argv as root; a non-zero exit is `command-failed` with its error output. */
  async mustRun(
    argv: readonly string[],
    what: string,
    opts: ExecOptions = {},
  ): Promise<ExecResult> {
    const r = await this.run(argv, opts);
    if (r.code !== 0) {
      throw new SshError(
        "command-failed",
        `${what} failed on ${this.conn.where} (exit ${r.code ?? r.signal ?? "?"})${
          r.stderr.length || r.stdout.length ? ": " + (tail(r.stderr) || tail(r.stdout)) : ""
        }`,
      );
    }
    return r;
  }

  /** `install -d -m MODE DIR` (creates parents; an existing directory gets the mode). */
  async ensureDir(dir: string, mode: number): Promise<void> {
    await this.mustRun(
      ["install", "-d", "-m", octal(mode), remotePath(dir, "directory")],
      `creating ${dir}`,
    );
  }

  /**
   * Writes a file atomically: the content on stdin into `PATH.pharos-new`
   * (`install -m MODE /dev/stdin …`), then `mv -f -T` over PATH.
   */
  async writeFile(path: string, content: Uint8Array | string, mode: number): Promise<void> {
    const p = remotePath(path, "file");
    const tmp = `${p}.pharos-new`;
    await this.mustRun(["install", "-m", octal(mode), "/dev/stdin", tmp], `writing ${tmp}`, {
      stdin: content,
    });
    await this.mustRun(["mv", "-f", "-T", tmp, p], `moving ${tmp} to ${p}`);
  }
}

function octal(mode: number): string {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new SshError("bad-argument", `mode ${mode}`);
  }
  return mode.toString(8).padStart(4, "0");
}
