/**
 * The Settings page's GeoIP card tells the operator, next to the "URL for
 * this download only" field, what the API will take there: https only, a
 * plain-http mirror only as the geoip.url setting. The hint is tied to the
 * field (aria-describedby) so that a screen reader reads it with the field.
 */
import assert from "node:assert/strict";
import { createApp } from "../../controller/api/app.ts";
import { GeoipStore } from "../../controller/geoip/store.ts";
import { openState } from "../../controller/state.ts";
import { createLogger } from "../../core/log.ts";
import { withDashboard } from "../../ui/server.ts";
import { call, login, setupAdmin } from "../support/api_fixture.ts";

Deno.test({
  name: "geoip settings page: the one-off URL field says it must be https",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pharos-geoip-page-" });
    const state = await openState(dir, { create: true });
    const app = await withDashboard((ui) =>
      createApp({
        state,
        ui,
        geoip: new GeoipStore(dir),
        passwordCost: { memoryKiB: 4096, iterations: 1 },
        log: createLogger("api", { level: "error", sink: () => {} }),
      }), { log: createLogger("dashboard", { level: "error", sink: () => {} }) });
    try {
      await setupAdmin(app);
      const s = await login(app);
      const page = await call(app, "GET", "/settings", { cookie: s.cookie });
      assert.equal(page.status, 200);
      const html = await page.text();
      const input = html.match(/<input[^>]*name="url"[^>]*>/)?.[0];
      assert.ok(input, "the one-off URL field is on the page");
      const hintId = input.match(/aria-describedby="([^"]+)"/)?.[1];
      assert.ok(hintId, "the field names its hint");
      const hint = html.match(new RegExp(`<[a-z]+ id="${hintId}"[^>]*>([^<]*)<`))?.[1] ?? "";
      assert.match(hint, /must be https/i);
      assert.match(hint, /http mirror is taken only as the geoip\.url setting/);
    } finally {
      app.close();
      state.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
