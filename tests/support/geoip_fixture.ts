/**
 * GeoIP test data: City databases written by MaxMind's own Go writer
 * (tests/support/go/mmdbwriter, github.com/maxmind/mmdbwriter), wrapped the
 * ways servers ship them (.mmdb.gz, .tar.gz via the system tar), and a
 * loopback HTTP server that serves them.
 */
import { buildGoPeer } from "./go_peer.ts";

export interface TestNetwork {
  cidr: string;
  lat: number;
  lon: number;
  country: string;
  city: string;
}

export const PARIS: TestNetwork = {
  cidr: "192.0.2.0/24",
  lat: 48.8566,
  lon: 2.3522,
  country: "FR",
  city: "Paris",
};
export const TOKYO: TestNetwork = {
  cidr: "198.51.100.0/24",
  lat: 35.6762,
  lon: 139.6503,
  country: "JP",
  city: "Tokyo",
};
export const SYDNEY_V6: TestNetwork = {
  cidr: "2001:db8:5::/48",
  lat: -33.8688,
  lon: 151.2093,
  country: "AU",
  city: "Sydney",
};
export const NETWORKS = [PARIS, TOKYO, SYDNEY_V6];

/** Writes a City-layout database with `networks` to `path` (database_type `type`). */
export async function writeCityDb(
  path: string,
  networks: TestNetwork[] = NETWORKS,
  type = "GeoLite2-City",
): Promise<Uint8Array> {
  const bin = await buildGoPeer("mmdbwriter");
  const child = new Deno.Command(bin, {
    args: ["-out", path, "-type", type],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(networks)));
  await w.close();
  const out = await child.output();
  if (out.code !== 0) {
    throw new Error(`mmdbwriter failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return await Deno.readFile(path);
}

/** `.gz` of `bytes` (what DB-IP serves). */
export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** A .tar.gz made by the system tar of `files` (name → bytes) inside `dir/` (MaxMind's layout). */
export async function tarGz(files: Record<string, Uint8Array>): Promise<Uint8Array> {
  const tmp = await Deno.makeTempDir({ prefix: "pharos-geoip-tar-" });
  try {
    const top = "GeoLite2-City_20261201";
    await Deno.mkdir(`${tmp}/${top}`);
    for (const [name, bytes] of Object.entries(files)) {
      await Deno.writeFile(`${tmp}/${top}/${name}`, bytes);
    }
    const out = await new Deno.Command("tar", {
      args: ["-czf", `${tmp}/db.tar.gz`, "-C", tmp, top],
      stderr: "piped",
    }).output();
    if (out.code !== 0) throw new Error(`tar: ${new TextDecoder().decode(out.stderr)}`);
    return await Deno.readFile(`${tmp}/db.tar.gz`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

export interface FileServer {
  url(path: string): string;
  /** Requests seen, by path. */
  hits: Map<string, number>;
  close(): Promise<void>;
}

/**
 * Serves `files` on 127.0.0.1 (port 0). A path in `unsized` is sent chunked
 * without Content-Length; `/endless` streams zeros until the client stops;
 * `/hang` sends headers and then nothing. With `hold`, that file's first
 * half is sent at once and the rest when `hold.release` settles.
 */
export function serveFiles(
  files: Record<string, Uint8Array>,
  unsized: string[] = [],
  hold?: { path: string; release: Promise<void> },
): FileServer {
  const hits = new Map<string, number>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (path === "/endless") {
      const chunk = new Uint8Array(64 * 1024);
      return new Response(new ReadableStream({ pull: (c) => c.enqueue(chunk) }));
    }
    if (path === "/hang") return new Response(new ReadableStream({ start() {} }));
    const body = files[path];
    if (!body) return new Response("no such file", { status: 404 });
    if (hold?.path === path) {
      const half = body.length >> 1;
      const stream = new ReadableStream<Uint8Array>({
        async start(c) {
          c.enqueue(body.slice(0, half));
          await hold.release;
          c.enqueue(body.slice(half));
          c.close();
        },
      });
      return new Response(stream, { headers: { "content-length": String(body.length) } });
    }
    if (unsized.includes(path)) {
      return new Response(new Blob([body as Uint8Array<ArrayBuffer>]).stream());
    }
    return new Response(body as Uint8Array<ArrayBuffer>, {
      headers: { "content-length": String(body.length) },
    });
  });
  const port = server.addr.port;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    hits,
    close: () => server.shutdown(),
  };
}
