// The GeoIP reader against databases written by MaxMind's Go writer: hits,
// misses, IPv6, and every kind of bad file as a typed error that keeps the
// database in use.
import assert from "node:assert/strict";
import { GeoipDatabase } from "../../controller/geoip/database.ts";
import { GeoipError } from "../../controller/geoip/errors.ts";
import { fleetPositions } from "../../controller/geoip/positions.ts";
import { GeoipStore } from "../../controller/geoip/store.ts";
import { goCapability } from "../support/go_peer.ts";
import { PARIS, SYDNEY_V6, TOKYO, writeCityDb } from "../support/geoip_fixture.ts";

const cap = goCapability("geoip database");

const isCode = (code: string) => (e: unknown) => {
  assert.ok(e instanceof GeoipError, `expected a GeoipError, got ${e}`);
  assert.equal(e.code, code);
  assert.match(e.message, /City|download|MaxMind/);
  return true;
};

async function withTmp(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "pharos-geoip-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "geoip: lookups of IPv4 and IPv6 literals hit; names and unknown addresses miss",
  ...cap,
  fn: () =>
    withTmp(async (dir) => {
      const db = GeoipDatabase.open(await writeCityDb(`${dir}/c.mmdb`), "test");
      assert.equal(db.info.databaseType, "GeoLite2-City");
      assert.equal(db.info.credit, null);
      assert.match(db.info.buildDate, /^\d{4}-\d\d-\d\dT/);
      assert.deepEqual(db.lookup("192.0.2.77"), {
        lat: PARIS.lat,
        lon: PARIS.lon,
        country: "FR",
        city: "Paris",
      });
      assert.equal(db.lookup("198.51.100.1")?.city, TOKYO.city);
      assert.equal(db.lookup("2001:db8:5::9")?.lat, SYDNEY_V6.lat);
      assert.equal(db.lookup("[2001:db8:5::9]")?.city, "Sydney");
      assert.equal(db.lookup("::ffff:192.0.2.1")?.city, "Paris");
      for (const miss of ["203.0.113.5", "2001:db8:6::1", "node1.example.com", "", "192.0.2"]) {
        assert.equal(db.lookup(miss), null, miss);
      }
    }),
});

Deno.test({
  name: "geoip: DB-IP databases carry their credit",
  ...cap,
  fn: () =>
    withTmp(async (dir) => {
      const db = GeoipDatabase.open(
        await writeCityDb(`${dir}/c.mmdb`, [PARIS], "DBIP-City-Lite"),
        "t",
      );
      assert.equal(db.info.credit, "IP Geolocation by DB-IP");
    }),
});

Deno.test({
  name: "geoip: garbage, truncated, empty and non-City files are typed errors",
  ...cap,
  fn: () =>
    withTmp(async (dir) => {
      const good = await writeCityDb(`${dir}/c.mmdb`);
      const garbage = crypto.getRandomValues(new Uint8Array(4096));
      assert.throws(() => GeoipDatabase.open(garbage, "g"), isCode("geoip-invalid"));
      assert.throws(() => GeoipDatabase.open(new Uint8Array(0), "e"), isCode("geoip-invalid"));
      assert.throws(
        () => GeoipDatabase.open(good.subarray(0, good.length >> 1), "t"),
        isCode("geoip-invalid"),
      );
      // The metadata survives at the end but the tree before it is cut away.
      const marker = [0xab, 0xcd, 0xef, ...new TextEncoder().encode("MaxMind.com")];
      const metaAt = indexOf(good, new Uint8Array(marker));
      assert.ok(metaAt > 0);
      assert.throws(
        () => GeoipDatabase.open(good.subarray(metaAt - 20), "cut"),
        isCode("geoip-invalid"),
      );
      const asn = await writeCityDb(`${dir}/a.mmdb`, [PARIS], "GeoLite2-ASN");
      assert.throws(() => GeoipDatabase.open(asn, "asn"), isCode("geoip-wrong-type"));
    }),
});

Deno.test({
  name: "geoip store: loads the file, keeps the old database when the new file is bad",
  ...cap,
  fn: () =>
    withTmp(async (state) => {
      const store = new GeoipStore(state);
      assert.equal(await store.reload(), null);
      assert.equal((await store.status()).loaded, false);
      await Deno.mkdir(store.dir);
      await writeCityDb(store.path);
      assert.ok(await store.reload());
      assert.equal((await store.position("198.51.100.20"))?.city, "Tokyo");

      await Deno.writeFile(store.path, new TextEncoder().encode("not a database at all"));
      await store.reload();
      const s = await store.status();
      assert.equal(s.loaded, true, "the previous database stays in use");
      assert.equal(s.fileError?.code, "geoip-invalid");
      assert.equal((await store.position("198.51.100.20"))?.city, "Tokyo");

      await writeCityDb(store.path, [PARIS]);
      await store.reload();
      assert.equal((await store.status()).fileError, null);
      assert.equal(await store.position("198.51.100.20"), null, "the new file is in use");

      const placed = await fleetPositions(store, [
        { kind: "node", id: "n1", host: "192.0.2.10" },
        { kind: "node", id: "n2", host: "node2.example.net" },
        { kind: "relay", id: "r1", host: "192.0.2.11" },
      ]);
      assert.equal(placed.geoip, true);
      assert.deepEqual(placed.items.map((p) => `${p.kind}:${p.id}:${p.city}`), [
        "node:n1:Paris",
        "relay:r1:Paris",
      ]);

      await Deno.remove(store.path);
      assert.equal(await store.reload(), null);
      assert.deepEqual(
        await fleetPositions(store, [{ kind: "node", id: "n1", host: "192.0.2.10" }]),
        {
          geoip: false,
          credit: null,
          items: [],
        },
      );
    }),
});

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = hay.length - needle.length; i >= 0; i--) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
