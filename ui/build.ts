/**
 * Builds the dashboard's browser assets into ui/static/build/:
 * - islands.js: every island and the hydration/live-update bootstrap,
 *   bundled and minified by `deno bundle --platform browser`;
 * - world.svg: the land outline of Natural Earth 1:110m (npm world-atlas,
 *   ISC) converted from TopoJSON to an equirectangular SVG path, so the
 *   map needs nothing at run time;
 * - build.json: a hash of the sources the bundle came from and its sizes.
 *
 * `ensureBuilt()` rebuilds only when that hash changed, so a controller
 * start costs one directory walk when nothing changed (and one bundle,
 * about a second, after an upgrade). `deno task ui:build` runs it by hand.
 */
import { feature } from "topojson-client";
import land from "world-atlas/land-110m.json" with { type: "json" };
import { PharosError } from "../core/errors.ts";

const UI = new URL("./", import.meta.url);
const OUT = new URL("static/build/", UI);
/** Folders whose sources end up in the bundle. */
const SOURCES = ["islands", "components", "lib"];

export interface BuildInfo {
  hash: string;
  /** Bytes of islands.js, raw and gzipped. */
  jsBytes: number;
  jsGzipBytes: number;
  cssGzipBytes: number;
  worldGzipBytes: number;
}

/** Builds when the sources changed since the last build; returns what is on disk. */
export async function ensureBuilt(): Promise<BuildInfo> {
  const hash = await sourceHash();
  try {
    const info = JSON.parse(await Deno.readTextFile(new URL("build.json", OUT))) as BuildInfo;
    await Deno.stat(new URL("islands.js", OUT));
    await Deno.stat(new URL("world.svg", OUT));
    if (info.hash === hash) return info;
  } catch {
    // no previous build
  }
  return await build(hash);
}

/** Bundles the islands and draws the world outline, unconditionally. */
export async function build(hash?: string): Promise<BuildInfo> {
  hash ??= await sourceHash();
  await Deno.mkdir(OUT, { recursive: true });
  const tmp = new URL(`islands.${crypto.randomUUID()}.js`, OUT);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--minify",
      "-o",
      tmp.pathname,
      new URL("islands/main.tsx", UI).pathname,
    ],
    cwd: new URL("../", UI).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new PharosError(
      "ui-build-failed",
      `deno bundle of the dashboard islands failed: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  // Rename so a server reading the old file never sees a half-written one.
  await Deno.rename(tmp, new URL("islands.js", OUT));
  await writeAtomic(new URL("world.svg", OUT), worldSvg());
  const js = await Deno.readFile(new URL("islands.js", OUT));
  const info: BuildInfo = {
    hash,
    jsBytes: js.length,
    jsGzipBytes: await gzipSize(js),
    cssGzipBytes: await gzipSize(await Deno.readFile(new URL("static/app.css", UI))),
    worldGzipBytes: await gzipSize(await Deno.readFile(new URL("world.svg", OUT))),
  };
  await writeAtomic(new URL("build.json", OUT), JSON.stringify(info, null, 2) + "\n");
  return info;
}

async function writeAtomic(url: URL, text: string): Promise<void> {
  const tmp = new URL(`${url.pathname}.${crypto.randomUUID()}`, url);
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, url);
}

export async function gzipSize(bytes: Uint8Array): Promise<number> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return (await new Response(stream).arrayBuffer()).byteLength;
}

/** SHA-256 over the names and contents of every bundled source file, plus deno.lock. */
async function sourceHash(): Promise<string> {
  const files: URL[] = [];
  for (const dir of SOURCES) await walk(new URL(`${dir}/`, UI), files);
  files.push(new URL("build.ts", UI), new URL("../deno.lock", UI));
  files.sort((a, b) => a.pathname.localeCompare(b.pathname));
  const parts: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (const f of files) {
    parts.push(enc.encode(f.pathname + "\0"));
    parts.push(await Deno.readFile(f).catch(() => new Uint8Array()));
  }
  const digest = await crypto.subtle.digest(
    "SHA-256",
    await new Blob(parts as BlobPart[]).arrayBuffer(),
  );
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function walk(dir: URL, out: URL[]): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    const u = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
    if (e.isDirectory) await walk(u, out);
    else if (/\.(ts|tsx)$/.test(e.name)) out.push(u);
  }
}

type Ring = [number, number][];

/** The land outline as an SVG in a 360×180 equirectangular frame (x = lon+180, y = 90-lat). */
export function worldSvg(): string {
  // deno-lint-ignore no-explicit-any
  const topo = land as any;
  const fc = feature(topo, topo.objects.land) as unknown as {
    features: { geometry: { type: string; coordinates: Ring[][] | Ring[] } }[];
  };
  const d: string[] = [];
  for (const f of fc.features) {
    const polys = f.geometry.type === "Polygon"
      ? [f.geometry.coordinates as Ring[]]
      : f.geometry.coordinates as Ring[][];
    for (const poly of polys) for (const ring of poly) d.push(ringPath(ring));
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 360 180">` +
    `<path fill="#c9d3dc" stroke="#9aa8b5" stroke-width="0.15" d="${d.join("")}"/></svg>\n`;
}

function ringPath(ring: Ring): string {
  let s = "";
  let prevLon: number | null = null;
  for (const [lon, lat] of ring) {
    // A jump across the antimeridian starts a new sub-path instead of a line across the map.
    const cmd = prevLon === null || Math.abs(lon - prevLon) > 180 ? "M" : "L";
    s += `${cmd}${(lon + 180).toFixed(1)} ${(90 - lat).toFixed(1)}`;
    prevLon = lon;
  }
  return s + "Z";
}

if (import.meta.main) {
  try {
    const info = await build();
    console.log(
      `ui built: islands.js ${info.jsBytes} B (${info.jsGzipBytes} B gzipped), hash ${
        info.hash.slice(0, 12)
      }`,
    );
  } catch (e) {
    console.error(e instanceof PharosError ? `${e.code}: ${e.message}` : String(e));
    Deno.exit(1);
  }
}
