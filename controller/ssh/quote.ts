/**
 * Everything sent to a remote shell passes through here. SSH runs a
 * command line through the login shell of the remote user, so the line is
 * built from an argv array: each argument is checked (no control
 * characters: no newline, NUL, escape; at most 4096 characters) and
 * single-quoted, so `;`, `$()`, backquotes, spaces, globs and quotes are
 * plain bytes to a POSIX shell (sh, dash, bash, zsh). Paths are held to a
 * stricter alphabet, and the program (argv[0]) to a name or absolute path.
 */
import { SshError } from "./errors.ts";

const MAX_ARG = 4096;
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const PROGRAM = /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$|^\/[A-Za-z0-9._+/-]{1,1023}$/;
const PATH = /^\/[A-Za-z0-9._+/-]{0,4095}$/;

/** POSIX single quoting: `it's` → `'it'\''s'`. Checks nothing; use `remoteArg` first. */
export function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** An argument fit to be quoted: a string of 0-4096 characters without control characters. */
export function remoteArg(arg: unknown, what = "argument"): string {
  if (typeof arg !== "string") throw new SshError("bad-argument", `${what} is not text`);
  if (arg.length > MAX_ARG) {
    throw new SshError("bad-argument", `${what} is longer than ${MAX_ARG} characters`);
  }
  if (CONTROL.test(arg)) {
    throw new SshError(
      "bad-argument",
      `${what} ${
        JSON.stringify(arg.slice(0, 60))
      } holds a control character (newline, tab, NUL…); refused`,
    );
  }
  return arg;
}

/**
 * An absolute remote path of letters, digits and `._+-/`, without empty,
 * `.` or `..` segments: no spaces, quotes or shell characters at all.
 */
export function remotePath(path: unknown, what = "path"): string {
  if (typeof path !== "string" || !PATH.test(path)) {
    throw new SshError(
      "bad-argument",
      `${what} ${JSON.stringify(String(path).slice(0, 80))} must be an absolute path of ` +
        "letters, digits and ._+-/ (no spaces or shell characters)",
    );
  }
  const segments = path.split("/").slice(1);
  if (path !== "/" && segments.some((s) => s === "" || s === "." || s === "..")) {
    throw new SshError(
      "bad-argument",
      `${what} ${JSON.stringify(path.slice(0, 80))} has an empty, "." or ".." segment`,
    );
  }
  return path;
}

/** The command line for an argv: program checked, every word checked and quoted. */
export function commandLine(argv: readonly string[]): string {
  if (argv.length === 0) throw new SshError("bad-argument", "empty command");
  if (typeof argv[0] !== "string" || !PROGRAM.test(argv[0])) {
    throw new SshError(
      "bad-argument",
      `program ${
        JSON.stringify(String(argv[0]).slice(0, 80))
      } must be a plain name or an absolute path`,
    );
  }
  return argv.map((a, i) => shellQuote(remoteArg(a, i === 0 ? "program" : `argument ${i}`)))
    .join(" ");
}
