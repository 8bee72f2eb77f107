/**
 * The agent's persistent state: every push is on disk before the call
 * answers, so a node restarts from its last pushed config with no
 * controller (CONTRACTS.md §7.8).
 *
 * Two shapes:
 * - documents: one JSON file per object (`<name>.json`), replaced
 *   atomically (temp file in the same directory, fsync, rename, fsync of
 *   the directory), so a crash leaves either the old or the new document;
 * - journaled documents: a document plus an append-only journal of small
 *   changes (one JSON line each, fsynced) for operations that happen often
 *   (AddPeer/RemovePeer on thousands of peers). The document names its
 *   journal's generation; a journal of another generation is stale and
 *   ignored. A torn last line (crash mid-append) is dropped. The journal is
 *   folded into a new document once it grows past a bound, and at start.
 */
import { AgentError } from "./errors.ts";

const enc = new TextEncoder();
const NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

function checkName(name: string): string {
  if (!NAME.test(name) || name.includes("..")) {
    throw new AgentError("bad-state-name", `state file name ${JSON.stringify(name)}`);
  }
  return name;
}

/** fsync of a directory, so a rename in it is durable. */
async function syncDir(dir: string): Promise<void> {
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } finally {
    d.close();
  }
}

/** Writes `data` to `path` atomically (temp, fsync, rename, fsync dir), mode 0600. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash <= 0 ? (slash === 0 ? "/" : ".") : path.slice(0, slash);
  const tmp = `${path}.tmp-${crypto.getRandomValues(new Uint8Array(6)).toHex()}`;
  const f = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += await f.write(bytes.subarray(off));
    await f.sync();
  } catch (e) {
    f.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  f.close();
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dir);
}

/** A directory of JSON documents. */
export class StateStore {
  constructor(readonly dir: string) {}

  /** Creates the directory (0700) if needed and removes temp files a crash left behind. */
  async open(): Promise<void> {
    await Deno.mkdir(this.dir, { recursive: true, mode: 0o700 });
    for await (const e of Deno.readDir(this.dir)) {
      if (e.isFile && /\.tmp-[0-9a-f]{12}$/.test(e.name)) {
        await Deno.remove(`${this.dir}/${e.name}`).catch(() => {});
      }
    }
  }

  path(name: string): string {
    return `${this.dir}/${checkName(name)}`;
  }

  /** The parsed document, or null when it does not exist. A corrupt file throws. */
  async read<T>(name: string): Promise<T | null> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.path(name));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new AgentError(
        "corrupt-state",
        `${this.path(name)} is not valid JSON (${(e as Error).message}); ` +
          "restore it from a backup or delete it and let the controller push again",
      );
    }
  }

  async write(name: string, value: unknown): Promise<void> {
    await writeFileAtomic(this.path(name), JSON.stringify(value, null, 1) + "\n");
  }

  async remove(name: string): Promise<void> {
    try {
      await Deno.remove(this.path(name));
      await syncDir(this.dir);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  /** Names of the documents present whose names match `re`. */
  async list(re: RegExp): Promise<string[]> {
    const out: string[] = [];
    for await (const e of Deno.readDir(this.dir)) {
      if (e.isFile && re.test(e.name)) out.push(e.name);
    }
    return out.sort();
  }
}

/** What a journaled document stores on disk. */
interface JournaledFile<T> {
  generation: string;
  value: T;
}

/**
 * A document plus its change journal. `apply` folds one journal entry into
 * the value (pure); the caller keeps the live value in memory and calls
 * {@link append} after each change and {@link replace} for whole pushes.
 */
export class JournaledDocument<T, E> {
  #generation = "";
  #journal: Deno.FsFile | null = null;
  #entries = 0;
  #tail: Promise<void> = Promise.resolve();

  constructor(
    readonly store: StateStore,
    readonly name: string,
    readonly apply: (value: T, entry: E) => T,
    /** Journal entries after which the next append folds the journal into the document. */
    readonly compactAfter = 2000,
  ) {}

  get #journalName(): string {
    return `${this.name}.journal-${this.#generation}`;
  }

  /**
   * Loads the document and replays its journal; returns null when there is
   * no document. Always folds the journal in (a fresh generation), so the
   * next start replays nothing.
   */
  async load(): Promise<T | null> {
    const file = await this.store.read<JournaledFile<T>>(`${this.name}.json`);
    if (file === null) return null;
    if (typeof file !== "object" || typeof file.generation !== "string") {
      throw new AgentError("corrupt-state", `${this.store.path(`${this.name}.json`)}: bad format`);
    }
    this.#generation = file.generation;
    let value = file.value;
    let text = "";
    try {
      text = await Deno.readTextFile(this.store.path(this.#journalName));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const lines = text.split("\n");
    for (const [i, line] of lines.entries()) {
      if (line === "") continue;
      let entry: E;
      try {
        entry = JSON.parse(line) as E;
      } catch {
        if (i === lines.length - 1) break; // torn final append: never acknowledged
        throw new AgentError(
          "corrupt-state",
          `${this.store.path(this.#journalName)} line ${i + 1} is not JSON`,
        );
      }
      value = this.apply(value, entry);
    }
    await this.replace(value);
    return value;
  }

  /** Writes a whole new value (new generation) and drops the old journal. */
  replace(value: T): Promise<void> {
    return this.#serial(async () => {
      const old = this.#generation ? this.#journalName : null;
      this.#journal?.close();
      this.#journal = null;
      this.#entries = 0;
      this.#generation = crypto.getRandomValues(new Uint8Array(8)).toHex();
      await this.store.write(`${this.name}.json`, { generation: this.#generation, value });
      if (old) await this.store.remove(old);
      for (const stale of await this.store.list(new RegExp(`^${this.name}\\.journal-`))) {
        if (stale !== this.#journalName) await this.store.remove(stale);
      }
    });
  }

  /**
   * Appends one change; resolves once it is on disk. `current` returns the
   * value after every change made so far (used when the journal is folded).
   * Appends that arrive while an fsync is running share the next one (group
   * commit).
   */
  append(entry: E, current: () => T): Promise<void> {
    if (this.#generation === "") {
      return Promise.reject(
        new AgentError("state-not-loaded", `${this.name}: append before load/replace`),
      );
    }
    this.#current = current;
    return new Promise((resolve, reject) => {
      this.#queue.push({ entry, resolve, reject });
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        void this.#serial(() => this.#flush()).catch(() => {});
      }
    });
  }

  #queue: { entry: E; resolve: () => void; reject: (e: unknown) => void }[] = [];
  #flushQueued = false;
  #current: (() => T) | null = null;

  async #flush(): Promise<void> {
    this.#flushQueued = false;
    const batch = this.#queue.splice(0);
    if (batch.length === 0) return;
    try {
      if (this.#entries + batch.length > this.compactAfter && this.#current) {
        await this.#fold(this.#current());
      } else {
        if (this.#journal === null) {
          this.#journal = await Deno.open(this.store.path(this.#journalName), {
            append: true,
            create: true,
            mode: 0o600,
          });
        }
        const bytes = enc.encode(batch.map((b) => JSON.stringify(b.entry) + "\n").join(""));
        let off = 0;
        while (off < bytes.length) off += await this.#journal.write(bytes.subarray(off));
        await this.#journal.sync();
        this.#entries += batch.length;
      }
      for (const b of batch) b.resolve();
    } catch (e) {
      for (const b of batch) b.reject(e);
    }
  }

  async #fold(value: T): Promise<void> {
    const old = this.#journalName;
    this.#journal?.close();
    this.#journal = null;
    this.#entries = 0;
    this.#generation = crypto.getRandomValues(new Uint8Array(8)).toHex();
    await this.store.write(`${this.name}.json`, { generation: this.#generation, value });
    await this.store.remove(old);
  }

  /** Deletes the document and its journal. */
  remove(): Promise<void> {
    return this.#serial(async () => {
      this.#journal?.close();
      this.#journal = null;
      await this.store.remove(`${this.name}.json`);
      for (const j of await this.store.list(new RegExp(`^${this.name}\\.journal-`))) {
        await this.store.remove(j);
      }
      this.#generation = "";
    });
  }

  close(): void {
    this.#journal?.close();
    this.#journal = null;
  }

  /** Runs file operations one at a time, in call order. */
  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#tail.then(fn);
    this.#tail = next.catch(() => {});
    return next;
  }
}
