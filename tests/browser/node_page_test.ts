/**
 * The node page rendered on the server (no browser) from the real admin
 * API with a FleetView over the real fleet driver and reconcile loop, on
 * simulated nodes: health, data plane, obfuscation values, endpoints, the
 * peers table with handshake age and rx/tx, and the rx/tx sparkline as an
 * inline SVG (no inline script); no key material in the page. Before the
 * node is observed the page says so instead of showing placeholders.
 */
import assert from "node:assert/strict";
import { type App, createApp } from "../../controller/api/app.ts";
import { Service } from "../../controller/service/service.ts";
import { createLogger } from "../../core/log.ts";
import { withDashboard } from "../../ui/server.ts";
import { eventually } from "../support/agent_harness.ts";
import { ORIGIN, setupAdmin } from "../support/api_fixture.ts";
import { fleetViewFixture } from "../support/fleet_view_fixture.ts";
import { simKey } from "../support/sim_nodes.ts";

const WAIT_MS = 60_000;

/** One in-process request to the dashboard (as the listener would pass it). */
async function get(app: App, path: string, cookie: string): Promise<Response> {
  return await app(
    new Request(`${ORIGIN}${path}`, { headers: { host: "127.0.0.1:8443", cookie } }),
    { remoteAddr: "127.0.0.1" },
  );
}

Deno.test({
  name: "node page: status, data plane, obfuscation, endpoints, peers and the sparkline",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const fx = await fleetViewFixture(1);
    const log = createLogger("node-page-test", { level: "error" });
    const app = await withDashboard((ui) =>
      createApp({
        state: fx.state,
        ui,
        fleetView: fx.view,
        log,
        passwordCost: { memoryKiB: 1024, iterations: 1 },
      }), { log });
    try {
      const [node] = fx.nodes;
      new Service(fx.state.db).mutate(
        { actor: "cli:test", action: "node.endpoints", target: { type: "node", id: node.id } },
        (tx) =>
          tx.update({
            endpoints: JSON.stringify([{ ip: "203.0.113.9", portMin: 50000, portMax: 50100 }]),
          }),
      );
      await setupAdmin(app);
      const login = await app(
        new Request(`${ORIGIN}/api/auth/login`, {
          method: "POST",
          headers: { host: "127.0.0.1:8443", origin: ORIGIN, "content-type": "application/json" },
          body: JSON.stringify({
            email: "ops@example.com",
            password: "correct horse battery staple",
          }),
        }),
        { remoteAddr: "127.0.0.1" },
      );
      assert.equal(login.status, 200);
      await login.body?.cancel();
      const cookie = login.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");

      // Not observed yet: the page says so (the driver may already be polling).
      const before = await (await get(app, `/nodes/${node.name}`, cookie)).text();
      assert.match(before, /Not observed yet|No traffic samples yet/);
      assert.doesNotMatch(before, /<svg class="spark"/);

      const sim = node.sim.nodes[0];
      const handshake = Math.floor(Date.now() / 1000) - 30;
      assert.ok(await eventually(() => fx.driver.status(node.id)?.health === "healthy", WAIT_MS));
      for (const [rx, tx] of [[1000, 500], [5000, 1500], [7000, 4500]]) {
        sim.traffic.set(simKey(0, 0), { rx, tx, handshake });
        await fx.observe();
      }

      const res = await get(app, `/nodes/${node.name}`, cookie);
      assert.equal(res.status, 200);
      const html = await res.text();
      assert.match(html, /<h1>Node view-0/);
      // Status: health as a word, not only a colour.
      assert.match(html, /<dt>Health<\/dt><dd><span class="badge s-ok"[^>]*>healthy<\/span>/);
      // Data plane: agent version, running, reported revision.
      assert.match(html, /<dt>Agent version<\/dt><dd><code>sim<\/code>/);
      assert.match(html, /amneziawg <span class="badge s-ok"[^>]*>up<\/span>/);
      assert.match(html, /<dt>Node revision<\/dt><dd>1<\/dd>/);
      // Obfuscation values of the node row.
      const obf = fx.state.db.prepare("SELECT obfuscation FROM nodes WHERE id = ?").get(
        node.id,
      ) as {
        obfuscation: string;
      };
      const jc = JSON.parse(obf.obfuscation).jc;
      assert.match(html, new RegExp(`<dt>Junk packets \\(Jc\\)</dt><dd><code>${jc}</code>`));
      assert.match(html, /<dt>Transport header \(H4\)<\/dt>/);
      // Endpoints.
      assert.match(html, /<code>203\.0\.113\.9<\/code><\/td><td>50000–50100<\/td>/);
      // Peers: both, the one with traffic showing its handshake age and counters.
      const peers = /<caption[^>]*>Peers on this node[\s\S]*?<\/table>/.exec(html)?.[0] ?? "";
      assert.equal((peers.match(/<tr>/g) ?? []).length, 3, "header + two peers");
      const row0 = new RegExp(
        `<code title="${simKey(0, 0).replace(/[+/]/g, "\\$&")}">[^<]+</code></td>` +
          `<td><span title="[^"]+">(\\d+) s ago</span></td><td>6\\.8 KiB</td><td>4\\.4 KiB</td>`,
      ).exec(peers);
      assert.ok(row0, `peer row with handshake and rx/tx in ${peers.slice(0, 1500)}`);
      assert.ok(Number(row0[1]) >= 30, "the handshake age counts from the reported time");
      assert.match(peers, /<td>never<\/td><td>0 B<\/td><td>0 B<\/td>/);
      // Sparkline: an inline SVG with two lines of two steps each, labelled in words.
      const svg = /<svg class="spark"[\s\S]*?<\/svg>/.exec(html)?.[0];
      assert.ok(svg, "the sparkline is on the page");
      assert.match(svg, /role="img"/);
      assert.match(svg, /aria-label="Traffic over 2 intervals: rx \(solid\) up to 3\.9 KiB/);
      const lines = [...svg.matchAll(/<polyline class="(rx|tx)" points="([^"]+)"/g)];
      assert.deepEqual(lines.map((m) => m[1]), ["rx", "tx"]);
      for (const m of lines) assert.equal(m[2].split(" ").length, 2, `${m[1]}: one point a step`);
      assert.match(html, /rx \(solid\)<\/span> [\d.]+ (B|KiB)\/s/);
      // Scripts only from files (the CSP has no inline script), nothing secret.
      for (const s of html.matchAll(/<script\b[^>]*>/g)) assert.match(s[0], /\bsrc="/);
      assert.doesNotMatch(html, /PRIVATE KEY|BEGIN CERTIFICATE|private_key|psk/i);
    } finally {
      app.close();
      await fx.close();
    }
  },
});
