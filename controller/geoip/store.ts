/**
 * The controller's GeoIP database: `<state>/geoip/city.mmdb`, held in
 * memory and reloaded when the file changes (a download by this process
 * or by `cox geoip download` in another one renames a new file into
 * place). A file that does not open keeps the database in use and is
 * reported in `status()` with its error code.
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

export class GeoipStore {
  readonly dir: string;
  #db: GeoipDatabase | null = null;
  #loadedAt: string | null = null;
  #fileKey = "";
  #fileError: { code: string; message: string } | null = null;
  #checkedAt = -Infinity;

  constructor(stateDir: string, private readonly log?: Logger) {
    this.dir = geoipDir(stateDir);
  }

  get path(): string {
    return `${this.dir}/${DATABASE_FILE}`;
  }

  /** The database in use (reloaded first if the file changed), or null. */
  current(): GeoipDatabase | null {
    const now = performance.now();
    if (now - this.#checkedAt >= STAT_EVERY_MS) {
      this.#checkedAt = now;
      this.reload();
    }
    return this.#db;
  }

  /** Looks at the file now; loads it when it changed. Returns the database in use. */
  reload(): GeoipDatabase | null {
    let key: string;
    try {
      const st = Deno.statSync(this.path);
      key = `${st.ino}:${st.size}:${st.mtime?.getTime()}`;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      // Removed by the operator: no GeoIP positions from now on.
      this.#db = null;
      this.#loadedAt = null;
      this.#fileKey = "";
      this.#fileError = null;
      return null;
    }
    if (key === this.#fileKey) return this.#db;
    this.#fileKey = key;
    try {
      this.#db = GeoipDatabase.open(Deno.readFileSync(this.path), this.path);
      this.#loadedAt = new Date().toISOString();
      this.#fileError = null;
      this.log?.info("GeoIP database loaded", {
        type: this.#db.info.databaseType,
        build: this.#db.info.buildDate,
      });
    } catch (e) {
      if (!(e instanceof GeoipError)) throw e;
      this.#fileError = { code: e.code, message: e.message };
      this.log?.warn("GeoIP database not loaded; the previous one stays", {
        code: e.code,
        error: e.message,
      });
    }
    return this.#db;
  }

  /** The position of a host when it is an IP literal the database holds. */
  position(host: string): GeoPosition | null {
    return this.current()?.lookup(host) ?? null;
  }

  status(): GeoipStatus {
    const db = this.current();
    return {
      loaded: db !== null,
      info: db?.info ?? null,
      loadedAt: this.#loadedAt,
      fileError: this.#fileError,
      lastDownload: readLastDownload(this.dir),
    };
  }
}

export function readLastDownload(dir: string): LastDownload | null {
  try {
    const v = JSON.parse(Deno.readTextFileSync(`${dir}/${LAST_DOWNLOAD_FILE}`));
    return v && typeof v === "object" && typeof v.at === "string" ? v as LastDownload : null;
  } catch {
    return null; // none yet, or unreadable: nothing to show
  }
}
