/**
 * GeoIP over the admin API: the URL is a setting, POST /api/geoip/download
 * runs as an operation whose phases show on GET /api/operations/{id} and on
 * the feed, GET /api/geoip tells what is in use, and the fleet's positions
 * come from the database (names and unknown addresses stay with their
 * region). A bad archive fails the operation and keeps the database.
 */
import assert from "node:assert/strict";
import { GeoipStore } from "../../controller/geoip/store.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Relays } from "../../controller/service/relays.ts";
import {
  adminSession,
  type ApiFixture,
  apiFixture,
  call,
  type Session,
} from "../support/api_fixture.ts";
import { goCapability } from "../support/go_peer.ts";
import {
  type FileServer,
  PARIS,
  serveFiles,
  tarGz,
  TOKYO,
  writeCityDb,
} from "../support/geoip_fixture.ts";
import { until } from "../support/wait.ts";

const cap = goCapability("geoip API");

type Op = {
  status: string;
  error: string | null;
  kind: string;
  events: { step: string; status: string; code?: string; message: string }[];
};

async function finished(fx: ApiFixture, s: Session, id: string): Promise<Op> {
  const read = async () =>
    await (await call(fx.app, "GET", `/api/operations/${id}`, { cookie: s.cookie })).json() as Op;
  let op = await read();
  const deadline = Date.now() + 30_000;
  while (op.status === "running") {
    if (Date.now() > deadline) {
      throw new Error(`operation ${id} still running: ${JSON.stringify(op)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
    op = await read();
  }
  return op;
}

Deno.test({
  name: "geoip api: download as an operation, status, and fleet positions from GeoIP",
  ...cap,
  async fn() {
    const geoState = await Deno.makeTempDir({ prefix: "pharos-geoip-api-" });
    const store = new GeoipStore(geoState);
    const db = await writeCityDb(`${geoState}/src.mmdb`, [PARIS, TOKYO]);
    const server: FileServer = serveFiles({
      "/GeoLite2-City.tar.gz": await tarGz({ "GeoLite2-City.mmdb": db }),
      "/nothing.tar.gz": await tarGz({ "LICENSE.txt": new TextEncoder().encode("x") }),
    });
    const fx = await apiFixture({ geoip: store, geoipDownload: { timeoutMs: 3000 } });
    try {
      const s = await adminSession(fx);
      const get = async (path: string) =>
        await (await call(fx.app, "GET", path, { cookie: s.cookie })).json();
      const nodes = new Nodes(fx.app.service);
      const paris = nodes.create("cli:test", {
        name: "paris-1",
        host: "192.0.2.10",
        region: "us-east-1",
      });
      const named = nodes.create("cli:test", {
        name: "named",
        host: "node.example.net",
        region: "fra1",
      });
      const relay = new Relays(fx.app.service).beginOnboarding("cli:test", {
        host: "198.51.100.5",
        sshPort: 22,
        sshUser: "root",
      });

      let status = await get("/api/geoip");
      assert.equal(status.loaded, false);
      assert.match(status.url, /db-ip\.com/, "DB-IP City Lite is the default source");
      assert.deepEqual(await get("/api/geoip/positions"), {
        geoip: false,
        credit: null,
        items: [],
      });

      // The URL is a setting: checked, and shown without secrets.
      const bad = await call(fx.app, "PATCH", "/api/settings", {
        ...s,
        body: { key: "geoip.url", value: "ftp://example.com/x", version: 0 },
      });
      assert.equal(bad.status, 400);
      const set = await call(fx.app, "PATCH", "/api/settings", {
        ...s,
        body: {
          key: "geoip.url",
          value: server.url("/GeoLite2-City.tar.gz?license_key=SEKRIT"),
          version: 0,
        },
      });
      assert.equal(set.status, 200, await set.clone().text());
      // The licence key is never read back: not in the PATCH answer, not in the settings list.
      assert.doesNotMatch(await set.text(), /SEKRIT/);
      const listed = await call(fx.app, "GET", "/api/settings", { cookie: s.cookie });
      const listedText = await listed.text();
      assert.equal(listed.status, 200);
      assert.doesNotMatch(listedText, /SEKRIT/);
      assert.match(listedText, /GeoLite2-City\.tar\.gz\?license_key=…/);

      // A write without the CSRF token starts nothing.
      const forged = await call(fx.app, "POST", "/api/geoip/download", {
        cookie: s.cookie,
        body: {},
      });
      assert.equal(forged.status, 403);

      const feed: { type: string; data: { kind?: string; step?: string; status?: string } }[] = [];
      fx.app.feed.subscribe((e) => feed.push(e as never));
      const started = await call(fx.app, "POST", "/api/geoip/download", { ...s, body: {} });
      assert.equal(started.status, 202);
      const op = await finished(fx, s, (await started.json()).operation_id);
      assert.equal(op.status, "done", JSON.stringify(op));
      assert.equal(op.kind, "geoip.download");
      const steps = op.events.map((e) => `${e.step}:${e.status}`);
      for (
        const want of ["download:started", "download:done", "validate:done", "install:finished"]
      ) {
        assert.ok(steps.includes(want), `${want} in ${steps.join(", ")}`);
      }
      await until(
        () => feed.some((e) => e.data?.kind === "geoip" && e.data.status === "finished"),
        10_000,
        "the download's end on the feed",
      );

      status = await get("/api/geoip");
      assert.equal(status.loaded, true);
      assert.equal(status.database_type, "GeoLite2-City");
      assert.equal(status.size, db.length);
      assert.equal(status.last_download.ok, true);
      assert.ok(!JSON.stringify(status).includes("SEKRIT"), "the licence key is never shown");

      const pos = await get("/api/geoip/positions");
      assert.equal(pos.geoip, true);
      const byId = new Map(pos.items.map((p: { id: string }) => [p.id, p]));
      assert.deepEqual(byId.get(paris.id), {
        kind: "node",
        id: paris.id,
        lat: PARIS.lat,
        lon: PARIS.lon,
        country: "FR",
        city: "Paris",
      });
      assert.equal((byId.get(relay.id) as { city: string }).city, "Tokyo");
      assert.equal(byId.has(named.id), false, "a host name is left to its region");

      // A URL in the request must be https unless it is the configured geoip.url (this
      // loopback server is http): it is set first, as an operator's own mirror would be.
      const configure = async (url: string) => {
        const version = (await get("/api/settings")).items.find((x: { key: string }) =>
          x.key === "geoip.url"
        ).version;
        const r = await call(fx.app, "PATCH", "/api/settings", {
          ...s,
          body: { key: "geoip.url", value: url, version },
        });
        assert.equal(r.status, 200, await r.text());
      };
      // An archive without a database: the operation fails, the database stays.
      await configure(server.url("/nothing.tar.gz"));
      const again = await call(fx.app, "POST", "/api/geoip/download", {
        ...s,
        body: { url: server.url("/nothing.tar.gz") },
      });
      const failed = await finished(fx, s, (await again.json()).operation_id);
      assert.equal(failed.status, "failed");
      assert.match(failed.error ?? "", /no \.mmdb/);
      assert.ok(failed.events.some((e) => e.status === "failed" && e.code === "geoip-archive"));
      status = await get("/api/geoip");
      assert.equal(status.loaded, true);
      assert.equal(status.last_download.ok, false);
      assert.equal(status.last_download.code, "geoip-archive");
      assert.equal((await get("/api/geoip/positions")).items.length, 2);

      const badUrl = await call(fx.app, "POST", "/api/geoip/download", {
        ...s,
        body: { url: "file:///etc/passwd" },
      });
      assert.equal(badUrl.status, 400);

      // One download at a time: a second start is refused while one runs (this one times out).
      await configure(server.url("/hang"));
      const slow = await call(fx.app, "POST", "/api/geoip/download", { ...s, body: {} });
      assert.equal(slow.status, 202);
      const busy = await call(fx.app, "POST", "/api/geoip/download", { ...s, body: {} });
      assert.equal(busy.status, 503);
      assert.equal((await busy.json()).error.code, "busy");
      const timedOut = await finished(fx, s, (await slow.json()).operation_id);
      assert.equal(timedOut.status, "failed");
      assert.ok(timedOut.events.some((e) => e.code === "geoip-timeout"));
      assert.equal((await get("/api/geoip")).loaded, true);
    } finally {
      await fx.close();
      await server.close();
      await Deno.remove(geoState, { recursive: true });
    }
  },
});

Deno.test("geoip api: without a store the routes say so", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    assert.equal((await call(fx.app, "GET", "/api/geoip", { cookie: s.cookie })).status, 501);
    const pos = await (await call(fx.app, "GET", "/api/geoip/positions", { cookie: s.cookie }))
      .json();
    assert.equal(pos.geoip, false);
  } finally {
    await fx.close();
  }
});
