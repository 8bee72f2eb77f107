/**
 * The paths page rendered on the server (no browser) from the real admin
 * API: the create form (entry/exit selects of the fleet's nodes, MTU) and
 * each path's exit switch, MTU change and remove button post through
 * /_form with the session's CSRF token; a switch or remove based on a
 * stale version shows the 409 page with the current values and a re-apply
 * button, and changes nothing. Then the same page in a real Chromium: the
 * MTU changed and the path removed from the keyboard, checked on the page
 * and through the API.
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
import { ADMIN } from "../support/accounts_fixture.ts";
import { chromiumCap, launch } from "./browser.ts";
import { ADMIN_EMAIL, ADMIN_PASSWORD, startTestController } from "./harness.ts";

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
  name:
    "paths page: create, switch the exit, change the MTU, remove; stale forms show the 409 page",
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

      // Change the MTU from the path's own form (labelled, prefilled, version along).
      const now = await (await send(app, "/paths", cookie)).text();
      const mtuLabel = "Change the MTU of the path from fra-1";
      const mtuForm = hiddenFields(now, mtuLabel);
      assert.deepEqual(
        [mtuForm._api, mtuForm._method, mtuForm.version, mtuForm._num],
        [`/api/paths/${path.id}`, "PATCH", "2", "version,mtu"],
      );
      const mtuHtml = now.slice(
        now.indexOf(mtuLabel),
        now.indexOf("</form>", now.indexOf(mtuLabel)),
      );
      assert.match(mtuHtml, /<label>MTU <input type="number" name="mtu"[^>]*value="1400"/);
      const removeLabel = "Remove the path from fra-1 to waw-1";
      const staleRemove = hiddenFields(now, removeLabel);
      assert.deepEqual(
        [staleRemove._api, staleRemove._method, staleRemove.version],
        [`/api/paths/${path.id}`, "DELETE", "2"],
      );
      assert.match(now, /Remove path fra-1 → waw-1<\/button>/);

      const resized = await send(app, "/_form", cookie, { ...mtuForm, mtu: "1380" });
      await resized.body?.cancel();
      assert.equal(resized.status, 303);
      assert.equal(new Paths(new Service(state.db)).require(path.id).mtu, 1380);
      const resizedPage = await (await send(app, "/paths", cookie)).text();
      assert.match(resizedPage, /MTU 1380/);
      assert.doesNotMatch(resizedPage, /MTU 1400/);

      // An MTU out of range is refused with the API's message; nothing changes.
      const tooSmall = await send(app, "/_form", cookie, {
        ...hiddenFields(resizedPage, mtuLabel),
        mtu: "500",
      });
      assert.equal(tooSmall.status, 400);
      assert.match(await tooSmall.text(), /Not done/);
      assert.equal(new Paths(new Service(state.db)).require(path.id).mtu, 1380);

      // The remove button of the page loaded before the MTU change: 409, the path stays.
      const staleDelete = await send(app, "/_form", cookie, staleRemove);
      assert.equal(staleDelete.status, 409);
      const staleDeleteHtml = await staleDelete.text();
      assert.match(staleDeleteHtml, /Current values \(version 3\)/);
      assert.match(staleDeleteHtml, /1380/);
      assert.match(staleDeleteHtml, /<input type="hidden" name="_method" value="DELETE"/);
      assert.equal(new Paths(new Service(state.db)).list().length, 1);

      // A DELETE body holds nothing but a whole-number version.
      for (const body of ['{"version":"3"}', '{"version":3,"force":true}', "not json"]) {
        const bad = await app(
          new Request(`${ORIGIN}/api/paths/${path.id}`, {
            method: "DELETE",
            headers: {
              host: "127.0.0.1:8443",
              cookie,
              origin: ORIGIN,
              "x-csrf-token": staleRemove._csrf,
              "content-type": "application/json",
            },
            body,
          }),
          { remoteAddr: "127.0.0.1" },
        );
        assert.equal(bad.status, 400, body);
        assert.equal((await bad.json()).error.code, "invalid");
      }
      assert.equal(new Paths(new Service(state.db)).list().length, 1);

      // The current remove button: the path is gone from the page and from the API.
      const removed = await send(app, "/_form", cookie, hiddenFields(resizedPage, removeLabel));
      await removed.body?.cancel();
      assert.equal(removed.status, 303);
      assert.equal(removed.headers.get("location"), "/paths");
      const apiAfter = await send(app, "/api/paths", cookie);
      assert.equal(apiAfter.status, 200);
      assert.deepEqual(await apiAfter.json(), { items: [] });
      const afterHtml = await (await send(app, "/paths", cookie)).text();
      assert.match(afterHtml, /No cascades defined\./);
      assert.doesNotMatch(afterHtml, /Remove path/);
    } finally {
      app.close();
      state.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "paths page in Chromium: change a path's MTU and remove it with the keyboard",
  ignore: chromiumCap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const T = 15_000;
    const ctl = await startTestController();
    const browser = await launch().catch(async (e) => {
      await ctl.close();
      throw e;
    });
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    try {
      await ctl.createAdmin();
      const fra = ctl.fx.addNode("fra-1");
      const ams = ctl.fx.addNode("ams-1");
      const paths = new Paths(new Service(ctl.fx.state.db));
      const path = paths.create(ADMIN, { entry: fra, exit: ams, mtu: null });
      const page = await ctx.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${ctl.url}/login`);
      await page.getByLabel("E-mail").fill(ADMIN_EMAIL);
      await page.getByLabel("Password").fill(ADMIN_PASSWORD);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { name: "Fleet" }).waitFor({ timeout: T });

      await page.goto(`${ctl.url}/paths`);
      await page.waitForSelector("html[data-live=on]", { timeout: T });
      assert.match(await page.locator(".path-graph").innerText(), /MTU default \(1340\)/);
      const mtuForm = page.getByRole("form", { name: "Change the MTU of the path from fra-1" });
      const mtu = mtuForm.getByLabel("MTU");
      assert.equal(await mtu.inputValue(), "1340");
      await mtu.fill("1380");
      await mtu.press("Enter"); // the keyboard submits it, as any form
      await page.locator(".path-graph", { hasText: "MTU 1380" }).waitFor({ timeout: T });
      assert.equal(paths.require(path.id).mtu, 1380);

      const remove = page.getByRole("button", { name: "Remove path fra-1 → ams-1" });
      await remove.focus();
      await page.keyboard.press("Enter");
      await page.getByText("No cascades defined.").waitFor({ timeout: T });
      assert.equal(await page.locator(".path-graph").count(), 0);
      const api = await page.request.get(`${ctl.url}/api/paths`);
      assert.equal(api.status(), 200);
      assert.deepEqual(await api.json(), { items: [] });
      assert.deepEqual(paths.list(), []);
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
      await browser.close();
      await ctl.close();
    }
  },
});
