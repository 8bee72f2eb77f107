// GeoIP downloads from a loopback server: .mmdb, .mmdb.gz and .tar.gz land
// with progress; every refusal (too large, no .mmdb in the archive, bad or
// wrong file, HTTP error, timeout, a second download at once) is a typed
// error that leaves the database in use untouched.
import assert from "node:assert/strict";
import { formatBytes } from "../../controller/geoip/operation.ts";
import {
  checkDownloadUrl,
  downloadDatabase,
  type DownloadProgress,
  expandUrl,
  redactText,
  redactUrl,
} from "../../controller/geoip/download.ts";
import { GeoipError } from "../../controller/geoip/errors.ts";
import { GeoipStore, readLastDownload } from "../../controller/geoip/store.ts";
import { goCapability } from "../support/go_peer.ts";
import {
  type FileServer,
  gzip,
  PARIS,
  serveFiles,
  tarGz,
  TOKYO,
  writeCityDb,
} from "../support/geoip_fixture.ts";

const cap = goCapability("geoip download");

interface Fixture {
  store: GeoipStore;
  server: FileServer;
  /** Paris + Tokyo, as the database in use before each refused download. */
  old: Uint8Array;
  /** Paris only. */
  fresh: Uint8Array;
  /** What the server sends, by path. */
  files: Record<string, Uint8Array>;
}

async function withFixture(fn: (f: Fixture) => Promise<void>) {
  const state = await Deno.makeTempDir({ prefix: "pharos-geoip-dl-" });
  const store = new GeoipStore(state);
  await Deno.mkdir(store.dir);
  const old = await writeCityDb(store.path, [PARIS, TOKYO]);
  const fresh = await writeCityDb(`${state}/fresh.mmdb`, [PARIS]);
  const asn = await writeCityDb(`${state}/asn.mmdb`, [PARIS], "GeoLite2-ASN");
  const files = {
    "/city.mmdb": fresh,
    "/city.mmdb.gz": await gzip(fresh),
    "/city.tar.gz": await tarGz({ "COPYRIGHT.txt": new Uint8Array(10), "City.mmdb": fresh }),
    "/chunked.tar.gz": await tarGz({ "City.mmdb": fresh }),
    "/empty.tar.gz": await tarGz({ "README.txt": new TextEncoder().encode("no db here") }),
    "/garbage.mmdb": crypto.getRandomValues(new Uint8Array(5000)),
    "/garbage.gz": new Uint8Array([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    "/asn.mmdb": asn,
    "/db-2026-11.mmdb": fresh,
  };
  const server = serveFiles(files, ["/chunked.tar.gz"]);
  await store.reload();
  try {
    await fn({ store, server, old, fresh, files });
  } finally {
    await server.close();
    await Deno.remove(state, { recursive: true });
  }
}

async function assertKept(f: Fixture, code: string, run: () => Promise<unknown>) {
  await assert.rejects(run, (e) => {
    assert.ok(e instanceof GeoipError, String(e));
    assert.equal(e.code, code);
    return true;
  });
  assert.deepEqual(await Deno.readFile(f.store.path), f.old, "the old file stays");
  assert.equal((await f.store.reload())?.lookup("198.51.100.1")?.city, "Tokyo");
  const last = await readLastDownload(f.store.dir);
  assert.equal(last?.ok, false);
  assert.equal(last?.code, code);
  const left = [...Deno.readDirSync(f.store.dir)].map((e) => e.name).filter((n) =>
    n.endsWith(".tmp")
  );
  assert.deepEqual(left, [], "no temporary file left behind");
}

for (const path of ["/city.mmdb", "/city.mmdb.gz", "/city.tar.gz", "/chunked.tar.gz"]) {
  Deno.test({
    name: `geoip download: ${path} is installed with progress`,
    ...cap,
    fn: () =>
      withFixture(async (f) => {
        // Left by a download killed long ago, and one another process writes now.
        const old = `${f.store.dir}/city.mmdb.dead.tmp`;
        const fresh = `${f.store.dir}/city.mmdb.live.tmp`;
        await Deno.writeFile(old, new Uint8Array(10));
        await Deno.utime(old, new Date("2000-01-01Z"), new Date("2000-01-01Z"));
        await Deno.writeFile(fresh, new Uint8Array(10));
        const seen: DownloadProgress[] = [];
        const r = await downloadDatabase({
          url: f.server.url(path),
          dir: f.store.dir,
          onProgress: (p) => seen.push(p),
        });
        assert.equal(r.info.databaseType, "GeoLite2-City");
        assert.equal(r.bytes, f.fresh.length);
        assert.deepEqual(await Deno.readFile(f.store.path), f.fresh);
        assert.deepEqual([...new Set(seen.map((p) => p.phase))], [
          "download",
          "validate",
          "install",
        ]);
        const sent = f.files[path].length;
        const last = seen.findLast((p) => p.phase === "download")!;
        assert.equal(last.bytes, sent, "the last progress counts every byte received");
        assert.equal(last.total, path === "/chunked.tar.gz" ? null : sent);
        assert.equal(
          (await f.store.reload())?.lookup("198.51.100.1"),
          null,
          "the new database is in use",
        );
        assert.equal((await f.store.position("192.0.2.1"))?.city, "Paris");
        const tmps = [...Deno.readDirSync(f.store.dir)].map((e) => e.name).filter((n) =>
          n.endsWith(".tmp")
        );
        assert.deepEqual(tmps, ["city.mmdb.live.tmp"], "only the stale temporary is removed");
        await Deno.remove(fresh);
        const rec = await readLastDownload(f.store.dir);
        assert.equal(rec?.ok, true);
        assert.equal(rec?.bytes, f.fresh.length);
      }),
  });
}

Deno.test({
  name: "geoip download: refusals keep the database in use",
  ...cap,
  fn: () =>
    withFixture(async (f) => {
      const dl = (path: string, extra: { maxBytes?: number; timeoutMs?: number } = {}) => () =>
        downloadDatabase({ url: f.server.url(path), dir: f.store.dir, ...extra });
      await assertKept(f, "geoip-archive", dl("/empty.tar.gz"));
      await assertKept(f, "geoip-invalid", dl("/garbage.mmdb"));
      await assertKept(f, "geoip-invalid", dl("/garbage.gz"));
      await assertKept(f, "geoip-wrong-type", dl("/asn.mmdb"));
      await assertKept(f, "geoip-http", dl("/missing.mmdb"));
      // Refused on Content-Length, before reading...
      const hitsBefore = f.server.hits.get("/city.mmdb") ?? 0;
      await assertKept(f, "geoip-too-large", dl("/city.mmdb", { maxBytes: 1000 }));
      assert.equal(f.server.hits.get("/city.mmdb"), hitsBefore + 1);
      // ...and while reading when there is none, compressed or not.
      await assertKept(f, "geoip-too-large", dl("/endless", { maxBytes: 1 << 20 }));
      await assertKept(f, "geoip-too-large", dl("/chunked.tar.gz", { maxBytes: 2000 }));
      await assertKept(f, "geoip-timeout", dl("/hang", { timeoutMs: 300 }));
    }),
});

Deno.test({
  name: "geoip download: one at a time per state; monthly URLs fall back one month",
  ...cap,
  fn: () =>
    withFixture(async (f) => {
      const first = downloadDatabase({
        url: f.server.url("/hang"),
        dir: f.store.dir,
        timeoutMs: 2000,
      });
      await assert.rejects(
        downloadDatabase({ url: f.server.url("/city.mmdb"), dir: f.store.dir }),
        (e) => e instanceof GeoipError && e.code === "geoip-busy",
      );
      await assert.rejects(first, (e) => e instanceof GeoipError && e.code === "geoip-timeout");
      // December's file is not out yet: November's is taken.
      const r = await downloadDatabase({
        url: f.server.url("/db-{yyyy}-{mm}.mmdb"),
        dir: f.store.dir,
        now: () => new Date("2026-12-01T03:00:00Z"),
      });
      assert.equal(r.info.databaseType, "GeoLite2-City");
      assert.equal(f.server.hits.get("/db-2026-12.mmdb"), 1);
      assert.equal(f.server.hits.get("/db-2026-11.mmdb"), 1);
    }),
});

Deno.test("geoip download: byte counts for people", () => {
  assert.equal(formatBytes(512, null), "512 B");
  assert.equal(formatBytes(1536, 1048576 * 60), "1.5 KiB of 60.0 MiB");
});

Deno.test("geoip download: URLs are checked and shown without their secrets", () => {
  for (const bad of ["ftp://example.com/x.mmdb", "file:///etc/passwd", "not a url", ""]) {
    assert.throws(
      () => checkDownloadUrl(bad),
      (e) => e instanceof GeoipError && e.code === "geoip-url",
    );
  }
  assert.equal(
    redactUrl(
      "https://123:SECRETKEY@download.maxmind.com/geoip/databases/GeoLite2-City/download?suffix=tar.gz&license_key=SECRET2",
    ),
    "https://download.maxmind.com/geoip/databases/GeoLite2-City/download?suffix=…&license_key=…",
  );
  assert.equal(redactUrl("https://h/x.mmdb#SECRET3"), "https://h/x.mmdb#…");
  // An error text from the runtime: every URL in it redacted, the secrets gone wherever they are.
  const url = "http://u:PASSWORD9@127.0.0.1:9/x.mmdb?license_key=SECRET4&edition=City";
  const text = redactText(
    "error sending request for url (http://127.0.0.1:9/x.mmdb?license_key=SECRET4&edition=City): " +
      "refused; key SECRET4 user PASSWORD9",
    url,
  );
  assert.equal(
    text,
    "error sending request for url (http://127.0.0.1:9/x.mmdb?license_key=…&edition=…): " +
      "refused; key … user …",
  );
  assert.equal(
    expandUrl("https://x/db-{yyyy}-{mm}.mmdb.gz", new Date("2026-01-15Z"), 1),
    "https://x/db-2025-12.mmdb.gz",
  );
});
