/**
 * One SSH connection (npm:ssh2), with the host key checked by the caller
 * before authentication, exactly one authentication method (the
 * controller's key or a password, never both, no keyboard-interactive, no
 * agent), and commands run with bounded output and a time limit.
 *
 * ssh2 ships no types; the small part used here is typed below.
 */
import { Buffer } from "node:buffer";
import ssh2 from "ssh2";
import { joinHostPort } from "../../core/net/mod.ts";
import { SshError } from "./errors.ts";
import { type HostKey, hostKeyFromBlob } from "./host_key.ts";
import type { SshTarget } from "./target.ts";

interface Ssh2Stream {
  stderr: { on(ev: "data", fn: (b: Buffer) => void): void };
  on(ev: "data", fn: (b: Buffer) => void): void;
  on(ev: "exit", fn: (code: number | null, signal?: string) => void): void;
  on(ev: "close", fn: () => void): void;
  on(ev: "error", fn: (e: Error) => void): void;
  end(data?: Buffer): void;
  close(): void;
}

interface Ssh2Client {
  on(ev: "ready", fn: () => void): Ssh2Client;
  on(ev: "error", fn: (e: Error & { level?: string }) => void): Ssh2Client;
  on(ev: "close", fn: () => void): Ssh2Client;
  connect(cfg: Record<string, unknown>): void;
  exec(cmd: string, cb: (err: Error | undefined, stream: Ssh2Stream) => void): boolean;
  end(): void;
  destroy(): void;
}

export type SshAuth = { privateKey: string } | { password: string };

export interface ConnectOptions {
  target: SshTarget;
  auth: SshAuth;
  /** Sees the presented host key before any credential is sent; throws to refuse. */
  verifyHostKey(key: HostKey): void;
  /** Key type of the pin, offered first so that the same key is negotiated again. */
  preferHostKeyType?: string;
  /** Connection and handshake limit (default 20 s). */
  timeoutMs?: number;
  /** Gives up at once when aborted (rejecting with the abort reason). */
  signal?: AbortSignal;
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

export interface ExecOptions {
  stdin?: Uint8Array | string;
  /** Default 10 min (an install script may download packages). */
  timeoutMs?: number;
  /** Per stream, default 1 MiB. */
  maxOutput?: number;
}

const HOST_KEY_ALGORITHMS = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "rsa-sha2-512",
  "rsa-sha2-256",
  "ssh-rsa",
];

function algorithmsFor(type: string | undefined): string[] {
  const first = type === "ssh-rsa"
    ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    : type
    ? [type]
    : [];
  return [
    ...first.filter((a) => HOST_KEY_ALGORITHMS.includes(a)),
    ...HOST_KEY_ALGORITHMS.filter((a) => !first.includes(a)),
  ];
}

function concatChunks(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

export class SshConnection {
  #closed = false;
  #lost: Error | null = null;

  private constructor(private readonly client: Ssh2Client, readonly where: string) {
    client.on("error", (e) => {
      this.#lost = e;
    });
    client.on("close", () => {
      this.#closed = true;
    });
  }

  static connect(opts: ConnectOptions): Promise<SshConnection> {
    const where = joinHostPort(opts.target.host, opts.target.port);
    const client = new ssh2.Client() as Ssh2Client;
    let refusal: unknown = null;
    const timeoutMs = opts.timeoutMs ?? 20_000;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        client.destroy();
        reject(e);
      };
      // ssh2's readyTimeout does not cover a TCP connect that hangs: one limit for both.
      const timer = setTimeout(
        () =>
          fail(
            new SshError(
              "timeout",
              `no SSH session with ${where} within ${
                timeoutMs / 1000
              } s; check the address, the port and any firewall`,
            ),
          ),
        timeoutMs,
      );
      client.on("ready", () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(new SshConnection(client, where));
      });
      client.on(
        "error",
        (e) => fail(refusal ?? connectError(e, where, opts.target.user, opts.auth)),
      );
      client.on(
        "close",
        () =>
          fail(
            refusal ??
              new SshError("disconnected", `${where} closed the connection during the handshake`),
          ),
      );
      if (opts.signal) {
        const onAbort = () => fail(opts.signal!.reason);
        if (opts.signal.aborted) return onAbort();
        opts.signal.addEventListener("abort", onAbort, { once: true });
        client.on("close", () => opts.signal!.removeEventListener("abort", onAbort));
      }
      client.connect({
        host: opts.target.host,
        port: opts.target.port,
        username: opts.target.user,
        ...("privateKey" in opts.auth
          ? { privateKey: opts.auth.privateKey }
          : { password: opts.auth.password }),
        tryKeyboard: false,
        agent: undefined,
        readyTimeout: timeoutMs,
        keepaliveInterval: 10_000,
        keepaliveCountMax: 3,
        algorithms: { serverHostKey: algorithmsFor(opts.preferHostKeyType) },
        hostVerifier: (blob: Buffer) => {
          try {
            opts.verifyHostKey(hostKeyFromBlob(new Uint8Array(blob)));
            return true;
          } catch (e) {
            refusal = e;
            return false;
          }
        },
      });
    });
  }

  /**
   * Runs a command line (build it with quote.ts `commandLine`). Stdin, when
   * given, is written and closed; otherwise stdin is closed at once.
   */
  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    if (this.#closed || this.#lost) {
      return Promise.reject(
        new SshError(
          "disconnected",
          `the SSH connection to ${this.where} was lost${
            this.#lost ? `: ${this.#lost.message}` : ""
          }`,
        ),
      );
    }
    const max = opts.maxOutput ?? 1 << 20;
    const timeoutMs = opts.timeoutMs ?? 600_000;
    return new Promise((resolve, reject) => {
      this.client.exec(command, (err, stream) => {
        if (err) {
          reject(
            new SshError(
              "command-failed",
              `${this.where} refused to run a command: ${err.message}`,
            ),
          );
          return;
        }
        const out: Uint8Array[] = [];
        const errs: Uint8Array[] = [];
        let sizes = [0, 0];
        let overflow = false;
        let code: number | null = null;
        let signal: string | null = null;
        let done = false;
        const finish = (e?: Error) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          if (e) reject(e);
          else if (overflow) {
            reject(
              new SshError(
                "output-too-large",
                `a command on ${this.where} wrote more than ${max} bytes`,
              ),
            );
          } else resolve({ code, signal, stdout: concatChunks(out), stderr: concatChunks(errs) });
        };
        const timer = setTimeout(() => {
          try {
            stream.close();
          } catch { /* closed */ }
          finish(
            new SshError(
              "timeout",
              `a command on ${this.where} did not finish within ${Math.round(timeoutMs / 1000)} s`,
            ),
          );
        }, timeoutMs);
        const collect = (into: Uint8Array[], i: number) => (b: Buffer) => {
          sizes = sizes.map((s, j) => j === i ? s + b.length : s);
          if (sizes[i] > max) {
            if (!overflow) {
              overflow = true;
              try {
                stream.close();
              } catch { /* closed */ }
            }
            return;
          }
          into.push(new Uint8Array(b));
        };
        stream.on("data", collect(out, 0));
        stream.stderr.on("data", collect(errs, 1));
        stream.on("exit", (c, s) => {
          code = c;
          signal = s ?? null;
        });
        stream.on(
          "error",
          (e) => finish(new SshError("command-failed", `${this.where}: ${e.message}`)),
        );
        stream.on("close", () => finish());
        const input = opts.stdin === undefined
          ? undefined
          : typeof opts.stdin === "string"
          ? Buffer.from(opts.stdin, "utf8")
          : Buffer.from(opts.stdin);
        stream.end(input);
      });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.client.end();
    } catch { /* closed */ }
  }

  /** Drops the connection at once, without a goodbye to a server that may not answer. */
  destroy(): void {
    this.#closed = true;
    try {
      this.client.destroy();
    } catch { /* closed */ }
  }
}

function connectError(
  e: Error & { level?: string; code?: string },
  where: string,
  user: string,
  auth: SshAuth,
): SshError {
  if (e.level === "client-authentication") {
    return new SshError(
      "auth-failed",
      "privateKey" in auth
        ? `${where} refused the controller's SSH key for user ${user}: add the line "deno task cox ssh-key" prints to ~${user}/.ssh/authorized_keys on the host, or use --password-stdin`
        : `${where} refused the password for user ${user}: check it (the host must allow PasswordAuthentication), or use key authentication`,
    );
  }
  if (e.level === "client-timeout") {
    return new SshError(
      "timeout",
      `${where} did not complete the SSH handshake in time; check the address and port`,
    );
  }
  if (e.code === "ECONNREFUSED") {
    return new SshError(
      "connect-failed",
      `${where} refused the connection: is sshd running and is the port right?`,
    );
  }
  if (e.code === "ENOTFOUND" || e.code === "EAI_AGAIN") {
    return new SshError("connect-failed", `cannot resolve the host of ${where}: check the name`);
  }
  return new SshError("connect-failed", `cannot open an SSH session with ${where}: ${e.message}`);
}
