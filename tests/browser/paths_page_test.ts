/**
 * The paths page rendered on the server (no browser) from the real admin
 * API: the create form (entry/exit selects of the fleet's nodes, MTU) and
 * each path's exit switch post through /_form with the session's CSRF
 * token; a switch based on a stale version shows the 409 page with the
 * current values and a re-apply button, and changes nothing.
 */
import assert from "node:assert/strict";
import { type App, createApp } from "../../controller/api/app.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Paths } from "../../controller/service/paths.ts";
import { Service } from "../../controller/service/service.ts";
import { openState } from "../../controller/state.ts";
import { createLogger } from "../../core/log.ts";
import { withDashboard } from "../../ui/server.ts";
import { login, ORIGIN, setupAdmin } from "../support/api_fixture.ts";

async function send(app: App, path: string, cookie: string, form?: Record<string, string>) {
  const headers: Record<string, string> = { host: "127.0.0.1:8443", cookie };
  if (form) {
    headers.origin = ORIGIN;
    headers["content-type"] = "application/x-www-form-urlencoded";
  }
  return await app(
    new Request(`${ORIGIN}${path}`, {
      method: form ? "POST" : "GET",
      headers,
      body: form ? new URLSearchParams(form) : undefined,
      redirect: "manual",
    }),
    { remoteAddr: "127.0.0.1" },
  );
}

/** The hidden fields of the form labelled `label`, as the page rendered them. */
function hiddenFields(html: string, label: string): Record<string, string> {
  const start = html.indexOf(`aria-label="${label}"`);
  assert.ok(start > 0, `form "${label}" on the page`);
  const form = html.slice(start, html.indexOf("</form>", start));
  const out: Record<string, string> = {};
  for (const m of form.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
    out[m[1]] = m[2].replaceAll("&amp;", "&");
  }
  return out;
}

Deno.test({
  name: "paths page: create a path, switch its exit, a stale switch shows the 409 page",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pharos-paths-page-" });
    const state = await openState(dir, { create: true });
    const log = createLogger("paths-page-test", { level: "error" });
    const app = await withDashboard(
      (ui) => createApp({ state, ui, log, passwordCost: { memoryKiB: 1024, iterations: 1 } }),
      { log },
    );
    try {
      const nodes = new Nodes(new Service(state.db));
      const [fra, ams, waw] = ["fra-1", "ams-1", "waw-1"].map((name, i) =>
        nodes.create("cli:test", { name, host: `203.0.113.${i + 10}` })
      );
      await setupAdmin(app);
      const { cookie } = await login(app);

      const empty = await send(app, "/paths", cookie);
      assert.equal(empty.status, 200);
      const emptyHtml = await empty.text();
      assert.match(emptyHtml, /No cascades defined\./);
      assert.match(emptyHtml, /<select name="entry_node_id" required>/);
      for (const n of [fra, ams, waw]) {
        assert.match(emptyHtml, new RegExp(`<option value="${n.id}">${n.name}</option>`));
      }
      const create = hiddenFields(emptyHtml, "Create a path");
      assert.equal(create._api, "/api/paths");
      assert.ok(create._csrf.length >= 20, "the form carries the CSRF token");

      const noCsrf = await send(app, "/_form", cookie, {
        ...create,
        _csrf: "",
        entry_node_id: fra.id,
        exit_node_id: ams.id,
      });
      await noCsrf.body?.cancel();
      assert.equal(noCsrf.status, 403, "refused without the CSRF token");
      assert.deepEqual(new Paths(new Service(state.db)).list(), []);

      const created = await send(app, "/_form", cookie, {
        ...create,
        entry_node_id: fra.id,
        exit_node_id: ams.id,
        mtu: "1400",
      });
      await created.body?.cancel();
      assert.equal(created.status, 303);
      assert.equal(created.headers.get("location"), "/paths");
      const [path] = new Paths(new Service(state.db)).list();
      assert.deepEqual([path.entryNodeId, path.exitNodeId, path.mtu], [fra.id, ams.id, 1400]);

      const page = await (await send(app, "/paths", cookie)).text();
      assert.match(page, /entry <b>fra-1<\/b>/);
      assert.match(page, /exit <b>ams-1<\/b>/);
      assert.match(page, /MTU 1400/);
      const switchLabel = "Switch the exit of the path from fra-1";
      const switchForm = hiddenFields(page, switchLabel);
      assert.deepEqual(
        [switchForm._api, switchForm._method, switchForm.version],
        [`/api/paths/${path.id}`, "PATCH", "1"],
      );
      const formHtml = page.slice(
        page.indexOf(switchLabel),
        page.indexOf("</form>", page.indexOf(switchLabel)),
      );
      assert.match(formHtml, new RegExp(`<option value="${ams.id}" selected>ams-1</option>`));
      assert.doesNotMatch(formHtml, new RegExp(`value="${fra.id}"`), "the entry is no exit choice");

      const switched = await send(app, "/_form", cookie, { ...switchForm, exit_node_id: waw.id });
      await switched.body?.cancel();
      assert.equal(switched.status, 303);
      assert.equal(new Paths(new Service(state.db)).require(path.id).exitNodeId, waw.id);
      assert.match(await (await send(app, "/paths", cookie)).text(), /exit <b>waw-1<\/b>/);

      // The same (now stale) form again: 409 page, current values, nothing changed.
      const stale = await send(app, "/_form", cookie, { ...switchForm, exit_node_id: ams.id });
      assert.equal(stale.status, 409);
      const staleHtml = await stale.text();
      assert.match(staleHtml, /Someone changed this meanwhile/);
      assert.match(staleHtml, /Current values \(version 2\)/);
      assert.match(staleHtml, /waw-1/);
      assert.match(staleHtml, /Re-apply my change/);
      assert.match(staleHtml, /<input type="hidden" name="version" value="2"/);
      assert.equal(new Paths(new Service(state.db)).require(path.id).exitNodeId, waw.id);
    } finally {
      app.close();
      state.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
