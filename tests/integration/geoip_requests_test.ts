/**
 * GeoIP downloads asked for over the API, the ways they can go wrong:
 * a connection that fails says why without the licence key (operation,
 * log, last_download); a URL sent with the request must be https unless it
 * is the configured geoip.url, and every accepted request is an audit
 * entry naming the admin and the URL without its secrets; the controller
 * stopping aborts a download mid-body (no temporary file, the database
 * kept); an unreadable GeoIP file is reported and the fleet page still
 * answers, placing hosts by region.
 */
import assert from "node:assert/strict";
import type { App } from "../../controller/api/app.ts";
import { GeoipStore } from "../../controller/geoip/store.ts";
import { DOWNLOAD_REQUEST_KEY } from "../../controller/geoip/request_audit.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { createApp } from "../../controller/api/app.ts";
import { openState } from "../../controller/state.ts";
import { createLogger } from "../../core/log.ts";
import { withDashboard } from "../../ui/server.ts";
import { apiFixture, call, login, type Session, setupAdmin } from "../support/api_fixture.ts";
import { goCapability } from "../support/go_peer.ts";
import { PARIS, serveFiles, writeCityDb } from "../support/geoip_fixture.ts";
import { eventually } from "../support/agent_harness.ts";
import { until } from "../support/wait.ts";

const cap = goCapability("geoip requests");
const KEY = "SEKRIT-licence-42";

type Op = {
  status: string;
  error: string | null;
  events: { status: string; code?: string; message: string }[];
};

async function ended(app: App, s: Session, id: string): Promise<Op> {
  let op: Op = { status: "running", error: null, events: [] };
  const done = await eventually(
    async () => {
      op = await (await call(app, "GET", `/api/operations/${id}`, { cookie: s.cookie })).json();
      return op.status !== "running";
    },
    30_000,
    20,
  );
  assert.ok(done, `operation ${id} ended: ${JSON.stringify(op)}`);
  return op;
}

async function setUrl(app: App, s: Session, value: string): Promise<void> {
  const cur = await (await call(app, "GET", "/api/settings", { cookie: s.cookie })).json();
  const version = (cur.items as { key: string; version: number }[])
    .find((x) => x.key === "geoip.url")!.version;
  const res = await call(app, "PATCH", "/api/settings", {
    ...s,
    body: { key: "geoip.url", value, version },
  });
  assert.equal(res.status, 200, await res.text());
}

/**
 * A loopback server that accepts each connection and closes it at once, so
 * every request to it fails (fetch names the URL in its cause). It keeps
 * its port for the whole test: nothing else can take it meanwhile.
 */
function droppingServer(): { port: number; close(): void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of l) conn.close();
  })().catch(() => {/* closed by the test */});
  return { port: l.addr.port, close: () => l.close() };
}

Deno.test({
  name: "geoip requests: a dropped connection says why, never the licence key",
  async fn() {
    const geoDir = await Deno.makeTempDir({ prefix: "pharos-geoip-req-" });
    const store = new GeoipStore(geoDir);
    const fx = await apiFixture({ geoip: store });
    const { app, logs } = fx;
    const dropping = droppingServer();
    try {
      await setupAdmin(app);
      const s = await login(app);
      const url = `http://127.0.0.1:${dropping.port}/city.mmdb?license_key=${KEY}#${KEY}`;
      await setUrl(app, s, url);
      const res = await call(app, "POST", "/api/geoip/download", { ...s, body: {} });
      assert.equal(res.status, 202, "an http URL that is the configured geoip.url is taken");
      const op = await ended(app, s, (await res.json()).operation_id);
      assert.equal(op.status, "failed");
      assert.match(op.error ?? "", /^the GeoIP download failed: .*connection closed/);
      assert.match(op.error ?? "", /license_key=…/, "the URL is named, its key hidden");
      assert.ok(op.events.some((e) => e.code === "geoip-fetch"));
      const status = await (await call(app, "GET", "/api/geoip", { cookie: s.cookie })).json();
      assert.equal(status.last_download.code, "geoip-fetch");
      assert.match(status.last_download.error, /connection closed/);
      const everything = [
        JSON.stringify(op),
        JSON.stringify(status),
        await Deno.readTextFile(`${store.dir}/last_download.json`),
        ...logs,
      ].join("\n");
      assert.ok(logs.some((l) => /operation failed/.test(l) && /connection closed/.test(l)));
      assert.ok(!everything.includes(KEY), "the licence key appears nowhere");
    } finally {
      dropping.close();
      await fx.close();
      await Deno.remove(geoDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "geoip requests: https unless it is geoip.url; each request audited without secrets",
  async fn() {
    const geoDir = await Deno.makeTempDir({ prefix: "pharos-geoip-req-" });
    const fx = await apiFixture({ geoip: new GeoipStore(geoDir) });
    const { app } = fx;
    const dropping = droppingServer();
    try {
      await setupAdmin(app);
      const s = await login(app);
      const port = dropping.port;
      const audited = () =>
        fx.state.db.prepare(
          "SELECT actor, target_type, target_id FROM audit_log WHERE action = 'geoip.download' ORDER BY seq",
        ).all() as { actor: string; target_type: string; target_id: string }[];

      // An http URL in the request (not the setting) starts nothing and writes nothing.
      const plain = await call(app, "POST", "/api/geoip/download", {
        ...s,
        body: { url: `http://127.0.0.1:${port}/city.mmdb` },
      });
      assert.equal(plain.status, 400);
      const err = (await plain.json()).error;
      assert.equal(err.code, "invalid");
      assert.match(err.message, /must be https/);
      assert.deepEqual(audited(), []);

      // An https one is taken (it fails: the server drops the connection) and audited.
      const https = await call(app, "POST", "/api/geoip/download", {
        ...s,
        body: { url: `https://127.0.0.1:${port}/city.mmdb?license_key=${KEY}` },
      });
      assert.equal(https.status, 202, await https.clone().text());
      assert.equal((await ended(app, s, (await https.json()).operation_id)).status, "failed");
      // So is the configured http mirror, asked for by its URL or by default.
      const mirror = `http://127.0.0.1:${port}/mirror/city.mmdb?token=${KEY}`;
      await setUrl(app, s, mirror);
      for (const body of [{ url: mirror }, {}]) {
        const r = await call(app, "POST", "/api/geoip/download", { ...s, body });
        assert.equal(r.status, 202);
        await ended(app, s, (await r.json()).operation_id);
      }
      const rows = audited();
      assert.equal(rows.length, 3, "one audit entry per download request");
      for (const r of rows) {
        assert.match(r.actor, /^api:user:/, "the admin who asked");
        assert.deepEqual([r.target_type, r.target_id], ["setting", DOWNLOAD_REQUEST_KEY]);
      }
      const row = fx.state.db.prepare("SELECT value FROM settings WHERE key = ?")
        .get(DOWNLOAD_REQUEST_KEY) as { value: string };
      assert.equal(
        JSON.parse(row.value).url,
        `http://127.0.0.1:${port}/mirror/city.mmdb?token=…`,
      );
      assert.ok(!row.value.includes(KEY));
      // Not a setting: the settings list leaves the row out.
      const listed = await (await call(app, "GET", "/api/settings", { cookie: s.cookie })).text();
      assert.ok(!listed.includes(DOWNLOAD_REQUEST_KEY));
    } finally {
      dropping.close();
      await fx.close();
      await Deno.remove(geoDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "geoip requests: stopping the operations aborts a download mid-body, database kept",
  ...cap,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pharos-geoip-stop-" });
    let release = () => {};
    const hold = { path: "/city.mmdb", release: new Promise<void>((r) => release = r) };
    const big = await writeCityDb(`${dir}/src.mmdb`);
    const server = serveFiles({ "/city.mmdb": big }, [], hold);
    const store = new GeoipStore(`${dir}/geo-state`);
    await Deno.mkdir(store.dir, { recursive: true });
    const old = await writeCityDb(store.path, [PARIS]);
    const fx = await apiFixture({ geoip: store });
    const { app } = fx;
    try {
      await setupAdmin(app);
      const s = await login(app);
      await setUrl(app, s, server.url("/city.mmdb"));
      const res = await call(app, "POST", "/api/geoip/download", { ...s, body: {} });
      assert.equal(res.status, 202);
      const id = (await res.json()).operation_id;
      const temporaries = () =>
        [...Deno.readDirSync(store.dir)].filter((e) => e.name.endsWith(".tmp"));
      await until(() => temporaries().length > 0, 20_000, "the download to be writing");

      await app.operations.close();
      const op = app.operations.get(id)!;
      assert.equal(op.status, "failed", "the run ended before close() returned");
      assert.ok(op.events.some((e) => (e as { code?: string }).code === "geoip-stopped"));
      assert.deepEqual(temporaries(), [], "its temporary file is gone");
      assert.deepEqual(await Deno.readFile(store.path), old, "the database in use stays");
      const last = JSON.parse(await Deno.readTextFile(`${store.dir}/last_download.json`));
      assert.equal(last.code, "geoip-stopped");
      // Started after the stop: refused at once.
      const late = await call(app, "POST", "/api/geoip/download", { ...s, body: {} });
      const lateOp = app.operations.get((await late.json()).operation_id)!;
      assert.equal(lateOp.status, "failed");
    } finally {
      release();
      await server.close();
      await fx.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "geoip requests: an unreadable GeoIP file is reported; the fleet page still answers",
  ...cap,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pharos-geoip-unreadable-" });
    const state = await openState(dir, { create: true });
    // Root reads any file: a file where the geoip directory belongs fails for root too.
    const store = new GeoipStore(dir);
    await Deno.writeTextFile(store.dir, "not a directory");
    const app = await withDashboard((ui) =>
      createApp({
        state,
        ui,
        geoip: store,
        passwordCost: { memoryKiB: 4096, iterations: 1 },
        log: createLogger("api", { level: "error", sink: () => {} }),
      }), { log: createLogger("dashboard", { level: "error", sink: () => {} }) });
    try {
      new Nodes(app.service).create("cli:test", {
        name: "fra-node",
        host: "192.0.2.10",
        region: "fra1",
      });
      await setupAdmin(app);
      const s = await login(app);
      const status = await call(app, "GET", "/api/geoip", { cookie: s.cookie });
      assert.equal(status.status, 200);
      const body = await status.json();
      assert.equal(body.loaded, false);
      assert.equal(body.file_error.code, "geoip-unreadable");
      assert.match(body.file_error.message, /cannot read .*city\.mmdb/);
      const positions = await call(app, "GET", "/api/geoip/positions", { cookie: s.cookie });
      assert.equal(positions.status, 200);
      assert.deepEqual((await positions.json()).items, []);
      const page = await call(app, "GET", "/", { cookie: s.cookie });
      assert.equal(page.status, 200);
      assert.match(await page.text(), /fra-node/, "the fleet page lists the node");

      // Fixed: the next look loads it (an unreadable file is tried again).
      await Deno.remove(store.dir);
      await Deno.mkdir(store.dir);
      await writeCityDb(store.path, [PARIS]);
      await store.reload();
      const fixed = await (await call(app, "GET", "/api/geoip", { cookie: s.cookie })).json();
      assert.equal(fixed.loaded, true);
      assert.equal(fixed.file_error, null);
    } finally {
      app.close();
      state.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "geoip requests: the fleet page answers when the positions cannot be had at all",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pharos-geoip-broken-" });
    const state = await openState(dir, { create: true });
    // Whatever else may fail in the positions route (fault injected here): the map falls back.
    class BrokenStore extends GeoipStore {
      override current(): never {
        throw new Error("the positions are not to be had");
      }
    }
    const app = await withDashboard((ui) =>
      createApp({
        state,
        ui,
        geoip: new BrokenStore(dir),
        passwordCost: { memoryKiB: 4096, iterations: 1 },
        log: createLogger("api", { level: "error", sink: () => {} }),
      }), { log: createLogger("dashboard", { level: "error", sink: () => {} }) });
    try {
      new Nodes(app.service).create("cli:test", {
        name: "fra-node",
        host: "192.0.2.10",
        region: "fra1",
      });
      await setupAdmin(app);
      const s = await login(app);
      const positions = await call(app, "GET", "/api/geoip/positions", { cookie: s.cookie });
      assert.equal(positions.status, 500);
      await positions.body?.cancel();
      const page = await call(app, "GET", "/", { cookie: s.cookie });
      assert.equal(page.status, 200);
      const html = await page.text();
      assert.match(html, /fra-node/, "the fleet page lists the node");
      assert.match(html, /<svg/, "and draws the map");
    } finally {
      app.close();
      state.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
