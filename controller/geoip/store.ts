/**
 * The controller's GeoIP database: `<state>/geoip/city.mmdb`, held in
 * memory and reloaded when the file changes (a download by this process
 * hands its opened database over with `adopt`; `cox geoip download` in
 * another process renames a new file into place). A file that cannot be
 * read or does not open keeps the database in use and is reported in
 * `status()` with its error code; an unreadable one is tried again at the
 * next look. Requests never wait for a file read: after the first load,
 * the file is looked at in the background (at most once a second).
 */
import type { Logger } from "../../core/log.ts";
import { GeoipDatabase, type GeoipInfo, type GeoPosition } from "./database.ts";
import { GeoipError } from "./errors.ts";

export const GEOIP_DIR = "geoip";
export const DATABASE_FILE = "city.mmdb";
export const LAST_DOWNLOAD_FILE = "last_download.json";
/** How often the file is looked at for a change, at most. */
const STAT_EVERY_MS = 1000;

/** What the last download (from any process) left behind. */
export interface LastDownload {
  at: string;
  /** The URL with its credentials and query values hidden. */
  url: string;
  ok: boolean;
  bytes: number;
  code?: string;
  error?: string;
}

export interface GeoipStatus {
  loaded: boolean;
  info: GeoipInfo | null;
  /** When the database in use was loaded. */
  loadedAt: string | null;
  /** Why the file on disk is not the one in use, when it is not. */
  fileError: { code: string; message: string } | null;
  lastDownload: LastDownload | null;
}

export function geoipDir(stateDir: string): string {
  return `${stateDir}/${GEOIP_DIR}`;
}

type FileError = { code: string; message: string };

export class GeoipStore {
  readonly dir: string;
  #db: GeoipDatabase | null = null;
  #loadedAt: string | null = null;
  /** inode:size:mtime of the file the database in use came from. */
  #fileKey = "";
  /** The same of a file that opened as no usable database: not read again until it changes. */
  #refusedKey = "";
  #fileError: FileError | null = null;
  #checkedAt = -Infinity;
  #loading: Promise<GeoipDatabase | null> | null = null;

  constructor(stateDir: string, private readonly log?: Logger) {
    this.dir = geoipDir(stateDir);
  }

  get path(): string {
    return `${this.dir}/${DATABASE_FILE}`;
  }

  /**
   * The database in use, or null. Only the first call waits for the file;
   * later ones answer at once and, when due, look at the file in the
   * background (the next call sees a changed one).
   */
  async current(): Promise<GeoipDatabase | null> {
    if (this.#checkedAt === -Infinity) return await this.reload();
    if (performance.now() - this.#checkedAt >= STAT_EVERY_MS) void this.reload();
    return this.#db;
  }

  /** Looks at the file now; loads it when it changed. Returns the database in use. */
  reload(): Promise<GeoipDatabase | null> {
    this.#checkedAt = performance.now();
    this.#loading ??= this.#load().finally(() => this.#loading = null);
    return this.#loading;
  }

  /** Puts a database opened from the file just installed in use (no second read). */
  async adopt(db: GeoipDatabase): Promise<void> {
    await this.#loading;
    this.#use(db, await this.#keyOf().catch(() => ""));
    this.#checkedAt = performance.now();
  }

  /** The position of a host when it is an IP literal the database holds. */
  async position(host: string): Promise<GeoPosition | null> {
    return (await this.current())?.lookup(host) ?? null;
  }

  async status(): Promise<GeoipStatus> {
    const db = await this.current();
    return {
      loaded: db !== null,
      info: db?.info ?? null,
      loadedAt: this.#loadedAt,
      fileError: this.#fileError,
      lastDownload: await readLastDownload(this.dir),
    };
  }

  async #load(): Promise<GeoipDatabase | null> {
    let key: string;
    try {
      key = await this.#keyOf();
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) return this.#unreadable(e);
      // Removed by the operator: no GeoIP positions from now on.
      this.#db = null;
      this.#loadedAt = null;
      this.#fileKey = this.#refusedKey = "";
      this.#fileError = null;
      return null;
    }
    if (key === this.#fileKey || key === this.#refusedKey) return this.#db;
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(this.path);
    } catch (e) {
      return this.#unreadable(e);
    }
    try {
      this.#use(GeoipDatabase.open(bytes, this.path), key);
    } catch (e) {
      this.#refusedKey = key;
      const code = e instanceof GeoipError ? e.code : "geoip-invalid";
      this.#refuse({ code, message: String((e as Error)?.message ?? e).slice(0, 300) });
    }
    return this.#db;
  }

  async #keyOf(): Promise<string> {
    const st = await Deno.stat(this.path);
    if (!st.isFile) {
      throw new GeoipError("geoip-unreadable", `${this.path} is not a file`);
    }
    return `${st.ino}:${st.size}:${st.mtime?.getTime()}`;
  }

  #use(db: GeoipDatabase, key: string): void {
    this.#db = db;
    this.#fileKey = key;
    this.#refusedKey = "";
    this.#loadedAt = new Date().toISOString();
    this.#fileError = null;
    this.log?.info("GeoIP database loaded", {
      type: db.info.databaseType,
      build: db.info.buildDate,
    });
  }

  /** A file system error: reported like a bad file, and tried again at the next look. */
  #unreadable(e: unknown): GeoipDatabase | null {
    const message = e instanceof GeoipError
      ? e.message
      : `cannot read ${this.path}: ${String((e as Error)?.message ?? e).slice(0, 200)}`;
    this.#refuse({
      code: "geoip-unreadable",
      message: `${message}; fix the file or its directory's permissions, or download a City ` +
        "database again (the one in use stays)",
    });
    return this.#db;
  }

  #refuse(error: FileError): void {
    // Logged once per distinct error, not at every look.
    if (this.#fileError?.message !== error.message) {
      this.log?.warn("GeoIP database not loaded; the previous one stays", {
        code: error.code,
        error: error.message,
      });
    }
    this.#fileError = error;
  }
}

export async function readLastDownload(dir: string): Promise<LastDownload | null> {
  try {
    const v = JSON.parse(await Deno.readTextFile(`${dir}/${LAST_DOWNLOAD_FILE}`));
    return v && typeof v === "object" && typeof v.at === "string" ? v as LastDownload : null;
  } catch {
    return null; // none yet, or unreadable: nothing to show
  }
}
