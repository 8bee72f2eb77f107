/**
 * A throwaway OpenSSH server for tests (Debian's `sshd`, run in the
 * foreground by the test): its own ed25519 host key, authorized keys in
 * files of its own directory (`AuthorizedKeysFile DIR/authorized_keys/%u`),
 * `UsePAM no`, `StrictModes no`, listening on 127.0.0.1 only, on a port
 * picked by binding 127.0.0.1:0 (sshd itself refuses port 0) and retried on
 * "address already in use".
 *
 * Also: the system user `pharos-test` (created when absent, for the sudo and
 * password paths; removed again by `removeTestUser` only if this run made
 * it), and sudoers.d entries that a test adds and removes.
 *
 * Reusable by any suite that needs a real SSH target on loopback:
 *
 *   const sshd = await Sshd.start({ authorizedKeys: { root: [pub] } });
 *   try { … connect to 127.0.0.1:sshd.port … } finally { await sshd.stop(); }
 */
import { capability, hasCommand, isRoot } from "./capability.ts";
import { run } from "./run.ts";
import { decodeText } from "../../core/encoding.ts";

export const SSHD = "/usr/sbin/sshd";
export const TEST_USER = "pharos-test";

/** Root, sshd and ssh-keygen; the suite is skipped loudly without them. */
export function sshdCapability(suite: string, opts: { sudo?: boolean } = {}) {
  const sudo = !opts.sudo || hasCommand("sudo", ["-V"]);
  let sshd = false;
  try {
    sshd = Deno.statSync(SSHD).isFile;
  } catch { /* absent */ }
  return capability(
    suite,
    isRoot() && sshd && hasCommand("ssh-keygen", ["-?"]) && sudo &&
      hasCommand("useradd", ["--help"]),
    `needs root, OpenSSH's sshd (${SSHD}, Debian package openssh-server), ssh-keygen` +
      (opts.sudo ? ", sudo (Debian package sudo)" : "") + " and useradd",
  );
}

export interface SshdOptions {
  /** Public key lines (OpenSSH format) per user name. */
  authorizedKeys?: Record<string, string[]>;
  /** Allow password authentication (default true). */
  passwords?: boolean;
  /** Reuse this directory's host key (restart with the same identity). */
  dir?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A free TCP port on 127.0.0.1 (free when asked: the caller retries on a race). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export class Sshd {
  #child: Deno.ChildProcess | null = null;
  #log = "";
  port = 0;

  private constructor(readonly dir: string, readonly opts: SshdOptions) {}

  /** Makes the directory (host key, config) and starts the server. */
  static async start(opts: SshdOptions = {}): Promise<Sshd> {
    await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
    const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "pharos-sshd-" });
    // sshd reads authorized_keys as the user logging in: the path must be traversable.
    await Deno.chmod(dir, 0o755);
    await Deno.mkdir(`${dir}/authorized_keys`, { recursive: true, mode: 0o755 });
    const s = new Sshd(dir, opts);
    if (!opts.dir) await s.newHostKey();
    for (const [user, keys] of Object.entries(opts.authorizedKeys ?? {})) {
      await s.setAuthorizedKeys(user, keys);
    }
    await s.#launch();
    return s;
  }

  get hostKeyPath(): string {
    return `${this.dir}/ssh_host_ed25519_key`;
  }

  /** The host key's public line ("ssh-ed25519 AAAA… comment"). */
  async hostPublicKey(): Promise<string> {
    return (await Deno.readTextFile(`${this.hostKeyPath}.pub`)).trim();
  }

  /** `SHA256:…` of the host key, as ssh-keygen prints it. */
  async hostFingerprint(): Promise<string> {
    const r = await run("ssh-keygen", ["-l", "-E", "sha256", "-f", `${this.hostKeyPath}.pub`]);
    if (r.code !== 0) throw new Error(`ssh-keygen -l: ${r.stderr}`);
    return r.stdout.split(" ")[1];
  }

  /** Replaces the host key (takes effect at the next restart). */
  async newHostKey(): Promise<void> {
    await Deno.remove(this.hostKeyPath).catch(() => {});
    await Deno.remove(`${this.hostKeyPath}.pub`).catch(() => {});
    const r = await run("ssh-keygen", [
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-C",
      "pharos-test-host",
      "-f",
      this.hostKeyPath,
    ]);
    if (r.code !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
  }

  async setAuthorizedKeys(user: string, keys: string[]): Promise<void> {
    await Deno.writeTextFile(
      `${this.dir}/authorized_keys/${user}`,
      keys.map((k) => k.trim() + "\n").join(""),
      {
        mode: 0o644,
      },
    );
    await Deno.chmod(`${this.dir}/authorized_keys/${user}`, 0o644);
  }

  #config(port: number): string {
    return [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${this.hostKeyPath}`,
      `PidFile ${this.dir}/sshd.pid`,
      `AuthorizedKeysFile ${this.dir}/authorized_keys/%u`,
      "UsePAM no",
      "StrictModes no",
      "PermitRootLogin yes",
      `PasswordAuthentication ${this.opts.passwords === false ? "no" : "yes"}`,
      "KbdInteractiveAuthentication no",
      "PubkeyAuthentication yes",
      `AllowUsers root ${TEST_USER}`,
      "UseDNS no",
      "MaxStartups 100",
      "MaxSessions 100",
      "LogLevel VERBOSE",
      "",
    ].join("\n");
  }

  /** Starts sshd on `port` (a restart keeps its port), else on a free one, retried. */
  async #launch(keepPort?: number): Promise<void> {
    let lastError = "";
    for (let attempt = 0; attempt < 10; attempt++) {
      const port = attempt === 0 && keepPort ? keepPort : freePort();
      const config = `${this.dir}/sshd_config`;
      await Deno.writeTextFile(config, this.#config(port));
      const child = new Deno.Command(SSHD, {
        args: ["-D", "-e", "-f", config],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const outcome = await this.#waitListening(child);
      if (outcome === "listening") {
        this.#child = child;
        this.port = port;
        return;
      }
      lastError = this.#log;
      await child.status.catch(() => {});
      if (!/Address already in use|Cannot bind/.test(this.#log)) break;
    }
    throw new Error(`sshd did not start:\n${lastError}`);
  }

  /** Reads stderr until sshd says it listens (or exits); keeps reading in the background. */
  async #waitListening(child: Deno.ChildProcess): Promise<"listening" | "exited"> {
    this.#log = "";
    const reader = decodeText(child.stderr).getReader();
    const deadline = Date.now() + 30_000;
    for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
      const { value, done } = await reader.read();
      if (done) return "exited";
      this.#log += value;
      if (/Server listening on 127\.0\.0\.1 port/.test(this.#log)) {
        (async () => {
          for (let j = 0; j < 10_000_000; j++) {
            const r = await reader.read().catch(() => ({ done: true, value: "" }));
            if (r.done) return;
            this.#log = (this.#log + r.value).slice(-200_000);
          }
        })();
        return "listening";
      }
    }
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    return "exited";
  }

  /** What sshd logged so far (connections, auth results). */
  get log(): string {
    return this.#log;
  }

  /** Stops the server (the directory stays for a restart). */
  async kill(): Promise<void> {
    const c = this.#child;
    this.#child = null;
    if (!c) return;
    try {
      c.kill("SIGTERM");
    } catch { /* gone */ }
    await c.status;
  }

  /** Stops and starts again, on the same port if it is still free (with a new host key if asked). */
  async restart(opts: { newHostKey?: boolean } = {}): Promise<void> {
    await this.kill();
    if (opts.newHostKey) await this.newHostKey();
    await this.#launch(this.port);
  }

  /** Starts a server stopped by `kill`, on its port if still free. */
  async start(): Promise<void> {
    if (this.#child) return;
    await this.#launch(this.port);
  }

  /** Stops the server and deletes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * The test user (created if absent), able to log in with a key.
 * `created` says whether this call made it.
 */
export async function ensureTestUser(): Promise<{ name: string; created: boolean }> {
  const created = await addTestUser();
  // A new system user is locked ("!"), and sshd without PAM refuses a locked
  // account even a key login: "*" matches no password but is not locked.
  const unlock = await run("usermod", ["-p", "*", TEST_USER]);
  if (unlock.code !== 0) throw new Error(`usermod ${TEST_USER}: ${unlock.stderr}`);
  return { name: TEST_USER, created };
}

async function addTestUser(): Promise<boolean> {
  if ((await run("id", ["-u", TEST_USER])).code === 0) return false;
  const r = await run("useradd", [
    "--system",
    "--create-home",
    "--home-dir",
    `/var/lib/${TEST_USER}`,
    "--shell",
    "/bin/sh",
    TEST_USER,
  ]);
  // Another suite may have made it meanwhile (exit 9: already exists).
  if (r.code !== 0 && r.code !== 9) throw new Error(`useradd ${TEST_USER}: ${r.stderr}`);
  return r.code === 0;
}

/** Sets the test user's password (which also unlocks the account for sshd). */
export async function setTestUserPassword(password: string): Promise<void> {
  const r = await run("chpasswd", [], { stdin: `${TEST_USER}:${password}\n` });
  if (r.code !== 0) throw new Error(`chpasswd: ${r.stderr}`);
}

/** Removes the test user if `created` (what ensureTestUser returned). */
export async function removeTestUser(created: boolean): Promise<void> {
  if (!created) {
    // Lock the password again: "*" matches no password but keeps key logins possible.
    await run("usermod", ["-p", "*", TEST_USER]);
    return;
  }
  for (let i = 0; i < 20; i++) {
    const r = await run("userdel", ["--remove", TEST_USER]);
    if (r.code === 0 || r.code === 6) return; // 6: no such user
    await sleep(100); // a login of the user is still ending
  }
}

/**
 * Adds `/etc/sudoers.d/<name>` letting the test user run anything as root
 * (with or without its password); returns the function that removes it.
 */
export async function allowSudo(opts: { nopasswd: boolean }): Promise<() => Promise<void>> {
  const name = `pharos-test-${crypto.getRandomValues(new Uint8Array(4)).toHex()}`;
  const path = `/etc/sudoers.d/${name}`;
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(
    tmp,
    `${TEST_USER} ALL=(root) ${opts.nopasswd ? "NOPASSWD: " : ""}ALL\n`,
    { mode: 0o440 },
  );
  const check = await run("visudo", ["-c", "-q", "-f", tmp]);
  if (check.code !== 0) {
    await Deno.remove(tmp);
    throw new Error(`visudo: ${check.stdout}${check.stderr}`);
  }
  await Deno.rename(tmp, path);
  return async () => {
    await Deno.remove(path).catch(() => {});
  };
}
