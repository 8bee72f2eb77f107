/**
 * Go test peers: small Go programs under tests/support/go/<name>/ (go.mod and
 * go.sum checked in), built with the machine's Go toolchain in test setup and
 * cached outside the repository, plus a driver for the line protocol they
 * share (see tests/support/go/yamuxpeer/main.go):
 *
 * - the process prints plain lines on startup ("listening PORT", "ready");
 * - a command is one stdin line "ID VERB ARGS..."; the answer is zero or more
 *   "ID ev TEXT" lines, then one "ID ok [TEXT]" or "ID err TEXT".
 *
 * Cache: `${XDG_CACHE_HOME:-$HOME/.cache}/pharos-tests/go-peers/<name>-<hash>/`
 * where the hash covers the peer's Go sources, go.mod, go.sum and the Go
 * version, so any change builds a new binary. A build goes to a temporary
 * directory next to it and is renamed into place, so concurrent test
 * processes never run a half-written binary.
 */
import { type Capability, capability } from "./capability.ts";
import { decodeText } from "../../core/encoding.ts";

const GO_ROOT = new URL("./go/", import.meta.url);

/** The Go command: $PHAROS_GO, else `go` on PATH, else /usr/local/go/bin/go. */
export function goCommand(): string | null {
  const candidates = [Deno.env.get("PHAROS_GO"), "go", "/usr/local/go/bin/go"];
  for (const c of candidates) {
    if (!c) continue;
    try {
      const out = new Deno.Command(c, { args: ["version"], stdout: "null", stderr: "null" })
        .outputSync();
      if (out.code === 0) return c;
    } catch {
      // not there; try the next one
    }
  }
  return null;
}

/** Skips `suite` loudly when Go is missing (a failure under PHAROS_REQUIRE_ALL=1). */
export function goCapability(suite: string): Capability {
  return capability(
    suite,
    goCommand() !== null,
    "no Go toolchain: `go` is neither on PATH nor at /usr/local/go/bin/go (or set PHAROS_GO)",
  );
}

function cacheRoot(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const base = xdg && xdg.startsWith("/") ? xdg : `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
  return `${base}/pharos-tests/go-peers`;
}

/** Relative paths of the files that make up the build, sorted. */
async function sourceFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (rel: string, depth: number) => {
    if (depth > 8) throw new Error(`go peer ${dir}: directories nested too deep`);
    for await (const e of Deno.readDir(`${dir}/${rel}`)) {
      const path = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory) await walk(path, depth + 1);
      else if (e.isFile && /(\.go|^go\.mod|^go\.sum)$/.test(e.name)) found.push(path);
    }
  };
  await walk("", 0);
  return found.sort();
}

async function hashBuildInputs(dir: string, goVersion: string): Promise<string> {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [enc.encode(`${goVersion}\0${Deno.build.os}/${Deno.build.arch}\0`)];
  for (const rel of await sourceFiles(dir)) {
    const body = await Deno.readFile(`${dir}/${rel}`);
    parts.push(enc.encode(`${rel}\0${body.length}\0`), body);
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(digest.subarray(0, 10), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const st = await Deno.stat(path);
    return st.isFile && st.mode !== null && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

const builds = new Map<string, Promise<string>>();

/**
 * Builds (or finds in the cache) the Go program in tests/support/go/<name>/
 * and returns the binary's path. Throws with the compiler's output when the
 * build fails, and when Go is missing (gate suites with goCapability first).
 */
export function buildGoPeer(name: string): Promise<string> {
  if (!/^[a-z0-9_-]+$/.test(name)) throw new Error(`go peer name ${JSON.stringify(name)}`);
  let p = builds.get(name);
  if (p === undefined) {
    p = build(name);
    builds.set(name, p);
    p.catch(() => builds.delete(name));
  }
  return p;
}

async function build(name: string): Promise<string> {
  const go = goCommand();
  if (go === null) throw new Error("buildGoPeer: no Go toolchain found");
  const dir = new URL(`./${name}/`, GO_ROOT).pathname.replace(/\/$/, "");
  const env = { GOTOOLCHAIN: "local", GOFLAGS: "-mod=readonly -buildvcs=false" };
  const version = await new Deno.Command(go, { args: ["version"], env, stdout: "piped" }).output();
  const goVersion = new TextDecoder().decode(version.stdout).trim();
  const hash = await hashBuildInputs(dir, goVersion);
  const root = cacheRoot();
  const finalDir = `${root}/${name}-${hash}`;
  const binary = `${finalDir}/${name}`;
  if (await isExecutable(binary)) return binary;

  await Deno.mkdir(root, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: root, prefix: `.${name}-build-` });
  try {
    const out = await new Deno.Command(go, {
      args: ["build", "-trimpath", "-o", `${tmp}/${name}`, "."],
      cwd: dir,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.code !== 0) {
      const dec = new TextDecoder();
      throw new Error(
        `go build of ${dir} failed (exit ${out.code}):\n${dec.decode(out.stdout)}${
          dec.decode(out.stderr)
        }`,
      );
    }
    await Deno.mkdir(finalDir, { recursive: true });
    // Atomic on one filesystem: another process either sees no binary or all of it.
    await Deno.rename(`${tmp}/${name}`, binary);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return binary;
}

/** The outcome of one command. */
export interface PeerReply {
  ok: boolean;
  text: string;
}

interface Pending {
  events: string[];
  eventWaiters: { match: (e: string) => boolean; resolve: (e: string) => void }[];
  reply: Promise<PeerReply>;
  settle: (r: PeerReply) => void;
}

/** A command sent to a Go peer: its events as they come, and its final reply. */
export class PeerCommand {
  constructor(readonly id: number, readonly reply: Promise<PeerReply>, readonly pending: Pending) {}

  /**
   * Resolves with the first event (past or future) for which `match` holds;
   * rejects if the command ends without one.
   */
  event(match: (e: string) => boolean): Promise<string> {
    const seen = this.pending.events.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.pending.eventWaiters.push({ match, resolve });
      // Events come before the reply, so a matching one has resolved first.
      this.reply.then((r) =>
        reject(
          new Error(`go peer command ${this.id} ended (${r.ok ? "ok" : "err"} ${r.text}) first`),
        )
      );
    });
  }

  /** The reply text; throws if the peer answered "err". */
  async ok(): Promise<string> {
    const r = await this.reply;
    if (!r.ok) throw new Error(`go peer command ${this.id} failed: ${r.text}`);
    return r.text;
  }
}

/**
 * A running Go peer speaking the line protocol. Its stderr is kept (the last
 * 64 KiB) for failure messages. Always `await peer.stop()`.
 */
export class GoPeerProcess {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #plain: string[] = [];
  #plainWaiters: { match: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  #stderr = "";
  readonly #reading: Promise<void>;
  readonly #readingErr: Promise<void>;
  readonly status: Promise<Deno.CommandStatus>;
  #exited = false;

  constructor(binary: string, args: string[]) {
    this.#child = new Deno.Command(binary, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.status = this.#child.status.then((s) => {
      this.#exited = true;
      return s;
    });
    this.#reading = this.#readLines();
    this.#readingErr = this.#readStderr();
  }

  async #readStderr(): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of this.#child.stderr) {
      this.#stderr = (this.#stderr + dec.decode(chunk, { stream: true })).slice(-65536);
    }
  }

  /** What the peer wrote on stderr so far (its yamux log). */
  get stderr(): string {
    return this.#stderr;
  }

  async #readLines(): Promise<void> {
    const lines = decodeText(this.#child.stdout);
    let buf = "";
    for await (const text of lines) {
      buf += text;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        this.#line(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    // The process ended: nothing more will come.
    const why = `go peer exited; stderr:\n${this.#stderr}`;
    for (const p of this.#pending.values()) p.settle({ ok: false, text: why });
    this.#pending.clear();
  }

  #line(line: string): void {
    const m = /^(\d+) (ok|err|ev)(?: (.*))?$/.exec(line);
    if (m === null) {
      this.#plain.push(line);
      this.#plainWaiters = this.#plainWaiters.filter((w) => {
        if (!w.match(line)) return true;
        w.resolve(line);
        return false;
      });
      return;
    }
    const p = this.#pending.get(Number(m[1]));
    if (p === undefined) return;
    const text = m[3] ?? "";
    if (m[2] === "ev") {
      p.events.push(text);
      p.eventWaiters = p.eventWaiters.filter((w) => {
        if (!w.match(text)) return true;
        w.resolve(text);
        return false;
      });
      return;
    }
    this.#pending.delete(Number(m[1]));
    p.settle({ ok: m[2] === "ok", text });
  }

  /** The first plain line (not a command answer) matching `re`; its match. */
  async line(re: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    const seen = this.#plain.find((l) => re.test(l));
    const got = seen ?? await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`go peer: no line ${re} within ${timeoutMs} ms; ${this.#stderr}`)),
        timeoutMs,
      );
      this.#plainWaiters.push({
        match: (l) => re.test(l),
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      this.status.then(() => {
        clearTimeout(timer);
        reject(new Error(`go peer exited before printing ${re}; stderr:\n${this.#stderr}`));
      });
    });
    return re.exec(got)!;
  }

  /** Sends "ID VERB ARGS..." and returns the command handle. */
  command(verb: string, ...args: (string | number)[]): PeerCommand {
    const id = this.#nextId++;
    let settle!: (r: PeerReply) => void;
    const reply = new Promise<PeerReply>((resolve) => settle = resolve);
    const pending: Pending = { events: [], eventWaiters: [], reply, settle };
    if (this.#exited) {
      settle({ ok: false, text: `go peer already exited; stderr:\n${this.#stderr}` });
    } else {
      this.#pending.set(id, pending);
      const line = [id, verb, ...args].join(" ") + "\n";
      this.#writer.write(new TextEncoder().encode(line)).catch((e) =>
        settle({ ok: false, text: `writing to the go peer failed: ${e}` })
      );
    }
    return new PeerCommand(id, reply, pending);
  }

  /** Sends a command and returns its reply text; throws on "err". */
  run(verb: string, ...args: (string | number)[]): Promise<string> {
    return this.command(verb, ...args).ok();
  }

  /**
   * Closes stdin (the peer closes its session and exits), kills it if it has
   * not exited within `graceMs`, and waits for its output to end.
   */
  async stop(graceMs = 5000): Promise<Deno.CommandStatus> {
    await this.#writer.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) =>
      timer = setTimeout(() => resolve("late"), graceMs)
    );
    if (await Promise.race([this.status, late]) === "late") {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    clearTimeout(timer);
    const status = await this.status;
    await this.#reading;
    await this.#readingErr;
    return status;
  }
}
