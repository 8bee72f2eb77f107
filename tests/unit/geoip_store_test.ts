// The GeoIP store under file system trouble and after a download: an
// unreadable file (a directory where the file belongs, which fails for root
// too) is reported, keeps the database in use and is tried again; a bad
// file is logged once, not at every look; a downloaded database is adopted
// as opened, without reading the file a second time.
import assert from "node:assert/strict";
import { downloadDatabase } from "../../controller/geoip/download.ts";
import { GeoipStore } from "../../controller/geoip/store.ts";
import { createLogger } from "../../core/log.ts";
import { goCapability } from "../support/go_peer.ts";
import { PARIS, serveFiles, TOKYO, writeCityDb } from "../support/geoip_fixture.ts";

const cap = goCapability("geoip store");

async function withStore(fn: (store: GeoipStore, logs: () => string[]) => Promise<void>) {
  const state = await Deno.makeTempDir({ prefix: "pharos-geoip-store-" });
  const lines: string[] = [];
  const store = new GeoipStore(state, createLogger("geoip", { sink: (l) => lines.push(l) }));
  try {
    await Deno.mkdir(store.dir);
    await fn(store, () => lines.map((l) => JSON.parse(l).msg));
  } finally {
    await Deno.remove(state, { recursive: true });
  }
}

Deno.test({
  name: "geoip store: an unreadable file keeps the database, is reported and tried again",
  ...cap,
  fn: () =>
    withStore(async (store) => {
      await writeCityDb(store.path, [TOKYO]);
      assert.ok(await store.reload());
      // The file turns into a directory (EISDIR for root as for anyone).
      await Deno.remove(store.path);
      await Deno.mkdir(store.path);
      await store.reload();
      let s = await store.status();
      assert.equal(s.loaded, true, "the database in use stays");
      assert.equal(s.fileError?.code, "geoip-unreadable");
      assert.match(s.fileError?.message ?? "", /city\.mmdb is not a file/);
      assert.equal((await store.position("198.51.100.20"))?.city, "Tokyo");

      // The state's geoip path a file, not a directory (ENOTDIR).
      await Deno.remove(store.dir, { recursive: true });
      await Deno.writeTextFile(store.dir, "x");
      await store.reload();
      s = await store.status();
      assert.equal(s.fileError?.code, "geoip-unreadable");
      assert.match(s.fileError?.message ?? "", /cannot read /);
      assert.equal(s.loaded, true);

      // Repaired: the next look loads the file.
      await Deno.remove(store.dir);
      await Deno.mkdir(store.dir);
      await writeCityDb(store.path, [PARIS]);
      await store.reload();
      s = await store.status();
      assert.equal(s.fileError, null);
      assert.equal((await store.position("192.0.2.1"))?.city, "Paris");
    }),
});

Deno.test({
  name: "geoip store: a bad file is refused once, not read again at every look",
  ...cap,
  fn: () =>
    withStore(async (store, logs) => {
      await Deno.writeTextFile(store.path, "not a database");
      for (let i = 0; i < 3; i++) await store.reload();
      assert.equal((await store.status()).fileError?.code, "geoip-invalid");
      assert.equal(
        logs().filter((m) => /not loaded/.test(m)).length,
        1,
        "one warning for one bad file",
      );
    }),
});

Deno.test({
  name: "geoip store: a downloaded database is adopted without reading the file again",
  ...cap,
  fn: () =>
    withStore(async (store, logs) => {
      const db = await writeCityDb(`${store.dir}/../src.mmdb`, [PARIS]);
      const server = serveFiles({ "/city.mmdb": db });
      try {
        const r = await downloadDatabase({ url: server.url("/city.mmdb"), dir: store.dir });
        await store.adopt(r.database);
        assert.equal((await store.position("192.0.2.1"))?.city, "Paris");
        await store.reload();
        await store.reload();
        assert.equal(
          logs().filter((m) => m === "GeoIP database loaded").length,
          1,
          "loaded once: adopted, the file not read again",
        );
        assert.equal((await store.status()).info?.size, db.length);
      } finally {
        await server.close();
      }
    }),
});
