/**
 * Downloads a City database into `<state>/geoip/`: a plain `.mmdb`, a
 * gzip'd one (DB-IP's `.mmdb.gz`) or MaxMind's `.tar.gz` with the `.mmdb`
 * inside (told apart by their first bytes, not the URL). The body streams
 * to a temporary file with byte progress, bounded in size (before and
 * after decompression) and time; the file is opened as a database and
 * only then renamed over `city.mmdb`, so a failed or bad download leaves
 * the old database where it was. Every attempt is recorded in
 * `last_download.json` (URL without its secrets). The opened database is
 * handed back, so the file is read once (the store adopts it).
 */
import { createTarDecoder } from "modern-tar";
import { GeoipDatabase, type GeoipInfo } from "./database.ts";
import { GeoipError } from "./errors.ts";
import { DATABASE_FILE, LAST_DOWNLOAD_FILE, type LastDownload } from "./store.ts";

/** A City database is about 60 MiB (GeoLite2) to 130 MiB (DB-IP Lite); each is held in memory. */
export const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
export const DEFAULT_TIMEOUT_MS = 10 * 60_000;

export type DownloadPhase = "download" | "validate" | "install";

export interface DownloadProgress {
  phase: DownloadPhase;
  /** Bytes received so far (as sent, before decompression). */
  bytes: number;
  /** Content-Length, when the server gave one. */
  total: number | null;
}

export interface DownloadOptions {
  /** An http(s) URL; `{yyyy}` and `{mm}` become the current UTC year and month. */
  url: string;
  /** `<state>/geoip`. */
  dir: string;
  maxBytes?: number;
  timeoutMs?: number;
  onProgress?: (p: DownloadProgress) => void;
  now?: () => Date;
  /** Stops the download (the controller stopping): GeoipError `geoip-stopped`, nothing installed. */
  signal?: AbortSignal;
}

export interface DownloadResult {
  info: GeoipInfo;
  /** The installed database, opened (GeoipStore.adopt takes it). */
  database: GeoipDatabase;
  bytes: number;
  url: string;
}

const busy = new Set<string>();

/** True while this process downloads into `dir`. */
export function downloadRunning(dir: string): boolean {
  return busy.has(dir);
}

/**
 * The URL as shown to people: no user info, query values and fragment
 * hidden (MaxMind's licence key is a query value or the password).
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    for (const k of [...u.searchParams.keys()]) u.searchParams.set(k, "…");
    if (u.hash) u.hash = "…";
    return decodeURI(u.toString()).slice(0, 300);
  } catch {
    return "(not a URL)";
  }
}

/**
 * `text` (an error from the runtime) with every URL in it redacted and the
 * secrets of `url` (user info, query values, fragment) removed wherever
 * they still appear.
 */
export function redactText(text: string, url: string): string {
  let out = text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s()<>"']+/gi, (m) => redactUrl(m));
  for (const secret of secretsOf(url)) out = out.replaceAll(secret, "…");
  return out;
}

function secretsOf(url: string): string[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return [];
  }
  const raw = [u.username, u.password, u.hash.slice(1), ...u.searchParams.values()];
  const forms = raw.flatMap((v) => [v, encodeURIComponent(v), safeDecode(v)]);
  // Longest first, so a secret holding a shorter one goes whole; tiny values are no secret.
  return [...new Set(forms)].filter((v) => v.length >= 4).sort((a, b) => b.length - a.length);
}

function safeDecode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/** `{yyyy}`/`{mm}` filled in for `month` months before `now`. */
export function expandUrl(template: string, now: Date, monthsBack = 0): string {
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - monthsBack, 1));
  return template.replaceAll("{yyyy}", String(d.getUTCFullYear()))
    .replaceAll("{mm}", String(d.getUTCMonth() + 1).padStart(2, "0"));
}

/** Checks a download URL (or template): GeoipError `geoip-url` when unusable. */
export function checkDownloadUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(expandUrl(url, new Date()));
  } catch {
    throw new GeoipError("geoip-url", `"${url.slice(0, 80)}" is not a URL`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") {
    throw new GeoipError("geoip-url", `the GeoIP URL must be http or https, not ${u.protocol}`);
  }
  return u;
}

export async function downloadDatabase(opts: DownloadOptions): Promise<DownloadResult> {
  if (busy.has(opts.dir)) {
    throw new GeoipError("geoip-busy", "a GeoIP download is running already; wait for it");
  }
  busy.add(opts.dir);
  const now = opts.now ?? (() => new Date());
  const record = (r: Omit<LastDownload, "at">) =>
    writeRecord(opts.dir, { at: now().toISOString(), ...r });
  let url = opts.url;
  let bytes = 0;
  try {
    checkDownloadUrl(opts.url);
    await Deno.mkdir(opts.dir, { recursive: true, mode: 0o700 });
    await removeStaleTemporaries(opts.dir, now());
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
    const res = await fetchTemplate(opts.url, now(), signal);
    url = res.url || expandUrl(opts.url, now());
    const database = await install(res, opts, signal, (n) => bytes = n);
    const size = database.info.size;
    await record({ url: redactUrl(url), ok: true, bytes: size });
    return { info: database.info, database, bytes: size, url: redactUrl(url) };
  } catch (e) {
    const err = asGeoipError(e, opts, now());
    await record({
      url: redactUrl(expandUrl(url, now())),
      ok: false,
      bytes,
      code: err.code,
      error: err.message.slice(0, 300),
    }).catch(() => {});
    throw err;
  } finally {
    busy.delete(opts.dir);
  }
}

/** Fetches the URL; a monthly template whose month is not out yet falls back one month. */
async function fetchTemplate(template: string, now: Date, signal: AbortSignal): Promise<Response> {
  const monthly = /\{(yyyy|mm)\}/.test(template);
  for (let back = 0; back < (monthly ? 2 : 1); back++) {
    const url = expandUrl(template, now, back);
    const res = await fetch(url, { signal, redirect: "follow" });
    if (res.ok) return res;
    await res.body?.cancel();
    if (!(monthly && res.status === 404 && back === 0)) {
      throw new GeoipError(
        "geoip-http",
        `the GeoIP server answered HTTP ${res.status} for ${redactUrl(url)}; check the URL ` +
          `(setting geoip.url) and, for MaxMind, the account ID and licence key in it`,
      );
    }
  }
  throw new GeoipError("geoip-http", "unreachable"); // the loop returns or throws
}

async function install(
  res: Response,
  opts: DownloadOptions,
  signal: AbortSignal,
  seen: (bytes: number) => void,
): Promise<GeoipDatabase> {
  const max = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const length = Number(res.headers.get("content-length") ?? NaN);
  const total = Number.isSafeInteger(length) && length >= 0 ? length : null;
  if (total !== null && total > max) throw tooLarge(max, total);
  const progress = opts.onProgress ?? (() => {});
  progress({ phase: "download", bytes: 0, total });
  let received = 0;
  let reported = 0;
  const step = Math.max(64 * 1024, Math.floor((total ?? 20 * 1024 * 1024) / 20));
  const counted = res.body!.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        received += chunk.length;
        seen(received);
        if (received > max) throw tooLarge(max, received);
        if (received - reported >= step) {
          reported = received;
          progress({ phase: "download", bytes: received, total });
        }
        out.enqueue(chunk);
      },
    }),
    { signal },
  );
  const tmp = `${opts.dir}/${DATABASE_FILE}.${crypto.randomUUID()}.tmp`;
  try {
    await writeDatabase(await unpack(counted, max), tmp, max);
    progress({ phase: "download", bytes: received, total });
    progress({ phase: "validate", bytes: received, total });
    const db = GeoipDatabase.open(await Deno.readFile(tmp, { signal }), "the downloaded file");
    signal.throwIfAborted(); // stopped meanwhile: the old database stays
    progress({ phase: "install", bytes: received, total });
    await Deno.rename(tmp, `${opts.dir}/${DATABASE_FILE}`);
    return db;
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

/** The .mmdb's bytes as a stream, whatever wrapping (gzip, tar) they came in. */
async function unpack(
  body: ReadableStream<Uint8Array>,
  max: number,
): Promise<ReadableStream<Uint8Array>> {
  let [head, stream] = await peek(body, 2);
  if (head[0] === 0x1f && head[1] === 0x8b) {
    // Counted again after decompression: a small file may inflate without bound.
    const gunzip = new DecompressionStream("gzip") as unknown as TransformStream<
      Uint8Array,
      Uint8Array
    >;
    stream = stream.pipeThrough(gunzip).pipeThrough(limit(max));
    [head, stream] = await peek(stream, 262);
  } else {
    [head, stream] = await peek(stream, 262);
  }
  const isTar = new TextDecoder().decode(head.subarray(257, 262)) === "ustar";
  if (!isTar) return stream;
  const decoder = createTarDecoder({ strict: true });
  void stream.pipeTo(decoder.writable).catch(() => {});
  const entries = decoder.readable.getReader();
  for (;;) {
    const { value: entry, done } = await entries.read();
    if (done) break;
    const name = entry.header.name;
    if ((entry.header.type ?? "file") === "file" && /\.mmdb$/i.test(name)) {
      // The rest of the archive is never read: the download ends with this file.
      return entry.body.pipeThrough(
        new TransformStream({ flush: () => void entries.cancel().catch(() => {}) }),
      );
    }
    await entry.body.cancel();
  }
  throw new GeoipError(
    "geoip-archive",
    "the downloaded archive holds no .mmdb file; point geoip.url at a City database (.mmdb, " +
      ".mmdb.gz or MaxMind's .tar.gz)",
  );
}

async function writeDatabase(stream: ReadableStream<Uint8Array>, tmp: string, max: number) {
  const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  await stream.pipeThrough(limit(max)).pipeTo(file.writable);
}

function limit(max: number): TransformStream<Uint8Array, Uint8Array> {
  let n = 0;
  return new TransformStream({
    transform(chunk, out) {
      n += chunk.length;
      if (n > max) throw tooLarge(max, n);
      out.enqueue(chunk);
    },
  });
}

/** The first `n` bytes (fewer at the end of the stream) and the whole stream again. */
async function peek(
  stream: ReadableStream<Uint8Array>,
  n: number,
): Promise<[Uint8Array, ReadableStream<Uint8Array>]> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let have = 0;
  while (have < n) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
    have += value.length;
  }
  const head = new Uint8Array(have);
  let off = 0;
  for (const c of chunks) {
    head.set(c, off);
    off += c.length;
  }
  const again = new ReadableStream<Uint8Array>({
    start(c) {
      if (head.length > 0) c.enqueue(head);
    },
    async pull(c) {
      const { value, done } = await reader.read();
      if (done) c.close();
      else c.enqueue(value);
    },
    cancel: (why) => reader.cancel(why),
  });
  return [head.subarray(0, n), again];
}

function tooLarge(max: number, size: number): GeoipError {
  return new GeoipError(
    "geoip-too-large",
    `the GeoIP download is larger than ${max} bytes (${size} seen); a City database is ` +
      "well below that — check the URL",
  );
}

function asGeoipError(e: unknown, opts: DownloadOptions, now: Date): GeoipError {
  if (e instanceof GeoipError) return e;
  if (opts.signal?.aborted) {
    return new GeoipError(
      "geoip-stopped",
      "the GeoIP download was stopped (the controller shut down); the database in use stays",
    );
  }
  const name = (e as Error)?.name;
  if (name === "TimeoutError" || name === "AbortError") {
    return new GeoipError(
      "geoip-timeout",
      `the GeoIP download took longer than ${
        Math.round((opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000)
      } s; try again`,
    );
  }
  if (e instanceof TypeError && /gzip|decompress|corrupt/i.test(String(e.message))) {
    return new GeoipError("geoip-invalid", `the download is damaged gzip data: ${e.message}`);
  }
  // fetch says only "fetch failed"; why (refused, DNS, TLS) is in its cause, with the URL.
  // The raw error is not kept as the cause: its text holds the URL's secrets.
  const why = [e, (e as Error)?.cause].filter(Boolean).map((x) =>
    String((x as Error)?.message ?? x)
  ).join(": ");
  return new GeoipError(
    "geoip-fetch",
    `the GeoIP download failed: ${redactText(why, expandUrl(opts.url, now)).slice(0, 300)}` +
      "; check that the controller reaches the server (DNS, firewall, proxy)",
  );
}

/**
 * Temporary files of downloads that died with their process (killed CLI).
 * Only old ones: another process may be writing a fresh one right now.
 */
async function removeStaleTemporaries(dir: string, now: Date): Promise<void> {
  const stale = now.getTime() - 2 * DEFAULT_TIMEOUT_MS;
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.endsWith(".tmp")) continue;
    const path = `${dir}/${e.name}`;
    const st = await Deno.stat(path).catch(() => null);
    if (st?.mtime && st.mtime.getTime() < stale) await Deno.remove(path).catch(() => {});
  }
}

async function writeRecord(dir: string, r: LastDownload): Promise<void> {
  const tmp = `${dir}/${LAST_DOWNLOAD_FILE}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(r) + "\n", { mode: 0o600 });
  await Deno.rename(tmp, `${dir}/${LAST_DOWNLOAD_FILE}`);
}
