/**
 * The node detail's live state (controller/fleet_view.ts) against
 * simulated nodes (real gRPC NodeControl servers over mTLS, certificates
 * from the controller's Fleet CA), through the real fleet driver and
 * reconcile loop: health from the driver's polls; agent version, data
 * plane, applied revision and peers with handshake and counters from each
 * observation; a bounded ring of traffic samples, one per observation; and
 * GET /api/nodes/{id} carrying it all (plus endpoints and obfuscation, no
 * key), matching the OpenAPI document. Without a FleetView, `observed` is
 * null.
 */
import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020.js";
import { createApp } from "../../controller/api/app.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { eventually } from "../support/agent_harness.ts";
import { adminSession, apiFixture, call } from "../support/api_fixture.ts";
import { fleetViewFixture } from "../support/fleet_view_fixture.ts";
import { simKey } from "../support/sim_nodes.ts";

const WAIT_MS = 60_000;
const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });

test("fleet view: health, observation, peers with counters, bounded samples; the API serves them", async () => {
  const fx = await fleetViewFixture(2, { samplesPerNode: 3 });
  try {
    const [a, b] = fx.nodes;
    assert.equal(fx.view.observed("no-such-node"), null, "never seen: null");
    const handshake = Math.floor(Date.now() / 1000) - 42;
    a.sim.nodes[0].traffic.set(simKey(0, 0), { rx: 1000, tx: 2500, handshake });

    assert.ok(
      await eventually(
        () => fx.nodes.every((n) => fx.driver.status(n.id)?.health === "healthy"),
        WAIT_MS,
      ),
      "the driver's polls reach both nodes",
    );
    await fx.observe();
    const o = fx.view.observed(a.id)!;
    assert.equal(o.health, "healthy");
    assert.equal(o.missed_polls, 0);
    assert.ok(o.last_seen && Date.parse(o.last_seen) > 0);
    assert.equal(o.last_error, null);
    assert.equal(o.agent_version, "sim");
    assert.deepEqual(o.dataplane, {
      running: true,
      kind: "amneziawg",
      peer_count: 2,
      detail: "awg0 up, 2 peers",
    });
    assert.equal(o.applied_revision, 1);
    const peers = new Map(o.peers.map((p) => [p.public_key, p]));
    assert.deepEqual(peers.get(simKey(0, 0)), {
      public_key: simKey(0, 0),
      last_handshake: new Date(handshake * 1000).toISOString(),
      rx_bytes: 1000,
      tx_bytes: 2500,
    });
    assert.deepEqual(peers.get(simKey(0, 1)), {
      public_key: simKey(0, 1),
      last_handshake: null,
      rx_bytes: 0,
      tx_bytes: 0,
    });
    assert.deepEqual(o.samples.map((s) => [s.rx, s.tx]), [[1000, 2500]]);
    assert.deepEqual(fx.view.observed(b.id)!.samples.map((s) => [s.rx, s.tx]), [[0, 0]]);

    // Each observation adds a sample; only the newest three are kept.
    for (let k = 2; k <= 5; k++) {
      a.sim.nodes[0].traffic.set(simKey(0, 1), { rx: k * 100, tx: k * 10, handshake });
      await fx.observe([a.id]);
    }
    const later = fx.view.observed(a.id)!;
    assert.deepEqual(later.samples.map((s) => [s.rx, s.tx]), [
      [1300, 2530],
      [1400, 2540],
      [1500, 2550],
    ]);
    assert.ok(later.samples.every((s, i, all) => i === 0 || s.t >= all[i - 1].t), "oldest first");
    assert.equal(fx.view.observed(b.id)!.samples.length, 1, "a node not observed keeps its ring");

    // The API: the node's detail with what the view holds, valid against the document.
    const api = createApp({
      state: fx.state,
      fleetView: fx.view,
      passwordCost: { memoryKiB: 1024, iterations: 1 },
    });
    try {
      const fxApi = { app: api } as Parameters<typeof adminSession>[0];
      const s = await adminSession(fxApi);
      const res = await call(api, "GET", `/api/nodes/${a.name}`, { cookie: s.cookie });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.id, a.id);
      assert.equal(body.observed.health, "healthy");
      assert.equal(body.observed.peers.length, 2);
      assert.equal(body.observed.samples.length, 3);
      assert.deepEqual(body.endpoints, []);
      for (const k of ["jc", "jmin", "jmax", "s1", "s2", "s3", "s4", "h1", "h2", "h3", "h4"]) {
        assert.equal(typeof body.obfuscation[k], "number", k);
      }
      assert.doesNotMatch(JSON.stringify(body), /private|psk|cert_pem|BEGIN/i, "no key material");
      const doc = await (await call(api, "GET", "/api/openapi.json")).json();
      const schema = doc.paths["/api/nodes/{id}"].get.responses["200"].content["application/json"]
        .schema;
      const validate = new Ajv2020({ strict: false, validateFormats: false }).compile({
        ...schema,
        components: doc.components,
      });
      assert.ok(validate(body), JSON.stringify(validate.errors));
    } finally {
      api.close();
    }
  } finally {
    await fx.close();
  }
});

test("fleet view: without one, a node's observed state is null", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    const n = new Nodes(fx.app.service).create("cli:test", { name: "lone", host: "192.0.2.9" });
    const res = await call(fx.app, "GET", `/api/nodes/${n.id}`, { cookie: s.cookie });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.observed, null);
    assert.equal(body.name, "lone");
    assert.ok(Array.isArray(body.endpoints));
    assert.equal(typeof body.obfuscation.h1, "number");
  } finally {
    await fx.close();
  }
});
