/**
 * The dashboard's server side without a browser, against the real admin
 * API: sign-in redirects, security headers on every answer, the partial
 * render the live script fetches, static files (no path escapes), the
 * /_form bridge refusing foreign origins, non-API targets and off-site
 * returns, and nothing secret in generic tables.
 */
import assert from "node:assert/strict";
import { renderToString } from "preact-render-to-string";
import { h } from "preact";
import { formBody } from "../../ui/routes/form_action.tsx";
import { safeApiPath, safeBack } from "../../ui/lib/security.ts";
import { regionPosition } from "../../ui/lib/regions.ts";
import { AutoTable } from "../../ui/components/auto_table.tsx";
import { ValueList } from "../../ui/components/value_list.tsx";
import { worldSvg } from "../../ui/build.ts";
import { ADMIN_EMAIL, ADMIN_PASSWORD, startTestController } from "./harness.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "dashboard server: sign-in, headers, partial render, static files, form bridge",
  ...opts,
  fn: async (t) => {
    const ctl = await startTestController();
    try {
      const get = (path: string, headers: Record<string, string> = {}) =>
        fetch(`${ctl.url}${path}`, { headers, redirect: "manual" });

      await t.step("a page without a session redirects to /login?next=…", async () => {
        const r = await get("/nodes/abc?x=1");
        await r.body?.cancel();
        assert.equal(r.status, 303);
        assert.equal(r.headers.get("location"), "/login?next=%2Fnodes%2Fabc%3Fx%3D1");
        assert.match(r.headers.get("content-security-policy")!, /frame-ancestors 'none'/);
        assert.equal(r.headers.get("x-frame-options"), "DENY");
      });

      await ctl.createAdmin();
      const login = await fetch(`${ctl.url}/login`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", origin: ctl.url },
        body: new URLSearchParams({ email: ADMIN_EMAIL, password: ADMIN_PASSWORD, next: "/users" }),
        redirect: "manual",
      });
      await login.body?.cancel();
      assert.equal(login.status, 303);
      assert.equal(login.headers.get("location"), "/users");
      const cookie = login.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
      assert.match(cookie, /pharos_session=/);

      await t.step("a wrong password shows the API's message, no session", async () => {
        const r = await fetch(`${ctl.url}/login`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", origin: ctl.url },
          body: new URLSearchParams({ email: ADMIN_EMAIL, password: "wrong password here" }),
          redirect: "manual",
        });
        assert.equal(r.status, 401);
        assert.match(await r.text(), /password is wrong/);
        assert.equal(r.headers.getSetCookie().some((c) => c.startsWith("pharos_session=")), false);
      });

      await t.step("full page and the live script's partial render", async () => {
        const full = await get("/users", { cookie });
        const html = await full.text();
        assert.equal(full.status, 200);
        assert.match(html, /^<!doctype html>/);
        assert.match(html, /<meta name="csrf-token" content="[^"]{20,}"/);
        assert.match(html, /<script type="module" src="\/static\/build\/islands\.js\?v=/);
        const part = await get("/users", { cookie, "x-pharos-partial": "1" });
        const body = await part.text();
        assert.doesNotMatch(body, /<html|<nav/);
        assert.match(body, /<h1>Users<\/h1>/);
        assert.match(body, /admin@example\.net/);
      });

      await t.step("static files: served with a type, no path escapes", async () => {
        const css = await get("/static/app.css");
        assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
        assert.match(await css.text(), /--accent/);
        const js = await get("/static/build/islands.js");
        assert.equal(js.status, 200);
        assert.match(await js.text(), /pharos:refresh/);
        for (
          const bad of ["/static/../server.ts", "/static/%2e%2e/server.ts", "/static/build/x.ts"]
        ) {
          const r = await get(bad);
          await r.body?.cancel();
          assert.equal(r.status, 404, bad);
        }
      });

      await t.step(
        "form bridge: foreign origin, non-API target and off-site return refused",
        async () => {
          const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(
            await (await get("/users", { cookie })).text(),
          )![1];
          const post = (fields: Record<string, string>, origin = ctl.url) =>
            fetch(`${ctl.url}/_form`, {
              method: "POST",
              headers: { "content-type": "application/x-www-form-urlencoded", origin, cookie },
              body: new URLSearchParams({ _csrf: csrf, ...fields }),
              redirect: "manual",
            });
          const foreign = await post(
            { _api: "/api/users", email: "x@example.net", _back: "/users" },
            "https://evil.example",
          );
          await foreign.body?.cancel();
          assert.equal(foreign.status, 403);
          const notApi = await post({ _api: "/login", _back: "/" });
          assert.equal(notApi.status, 400);
          await notApi.body?.cancel();
          const escape = await post({ _api: "/api/../healthz", _back: "/" });
          assert.equal(escape.status, 400);
          await escape.body?.cancel();
          const ok = await post({
            _api: "/api/users",
            email: "bob@example.net",
            _back: "//evil.example/",
          });
          await ok.body?.cancel();
          assert.equal(ok.status, 303);
          assert.equal(ok.headers.get("location"), "/", "an off-site return becomes /");
          const users = await (await get("/users", { cookie })).text();
          assert.match(users, /bob@example\.net/);
          const bad = await post({ _api: "/api/users", email: "", _back: "/users" });
          assert.equal(bad.status, 400);
          assert.match(await bad.text(), /email|e-mail/i);
        },
      );

      await t.step("an unknown node is a 404 page, not a crash", async () => {
        const r = await get("/nodes/nope", { cookie });
        assert.equal(r.status, 404);
        assert.match(await r.text(), /Something went wrong/);
      });
    } finally {
      await ctl.close();
    }
  },
});

Deno.test("form bodies: booleans, numbers, hidden control fields dropped", () => {
  assert.deepEqual(
    formBody({
      _csrf: "t",
      _api: "/api/x",
      _bool: "forwarding,masquerade,isolation",
      _num: "version",
      forwarding: "true",
      isolation: "on",
      version: "7",
      name: "n",
    }),
    { forwarding: true, masquerade: false, isolation: true, version: 7, name: "n" },
  );
});

Deno.test("same-site returns and API targets only", () => {
  for (const bad of ["//evil.example", "https://evil.example/", "/\\evil", "", "javascript:x"]) {
    assert.equal(safeBack(bad), "/", bad);
  }
  assert.equal(safeBack("/nodes/a?b=c"), "/nodes/a?b=c");
  for (const bad of ["/api/../x", "/apix", "https://x/api/a", "/api/a/./b", "/api/a b"]) {
    assert.equal(safeApiPath(bad), null, bad);
  }
  assert.equal(safeApiPath("/api/devices/abc/revoke"), "/api/devices/abc/revoke");
});

Deno.test("generic tables and value lists never show secret-looking fields", () => {
  const row = {
    id: "t1",
    token_hash: "HASHVALUE",
    secret: "SECRETVALUE",
    password_hash: "PWVALUE",
    name: "visible-name",
  };
  const html = renderToString(h(AutoTable, { caption: "c", rows: [row] })) +
    renderToString(h(ValueList, { value: row }));
  assert.match(html, /visible-name/);
  for (const s of ["HASHVALUE", "SECRETVALUE", "PWVALUE"]) assert.equal(html.includes(s), false, s);
});

Deno.test("region codes place hosts; unknown ones are not placed", () => {
  assert.deepEqual(regionPosition("eu-central-1"), [50.1, 8.7]);
  assert.deepEqual(regionPosition("FRA1"), [50.1, 8.7]);
  assert.deepEqual(regionPosition("nyc2"), regionPosition("nyc"));
  assert.equal(regionPosition("atlantis-9"), null);
  assert.equal(regionPosition(null), null);
});

Deno.test("the bundled world outline is a closed-path SVG in the 360×180 frame", () => {
  const svg = worldSvg();
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" viewBox="0 0 360 180">/);
  const coords = [...svg.matchAll(/[ML](-?[\d.]+) (-?[\d.]+)/g)].map((m) => [+m[1], +m[2]]);
  assert.ok(coords.length > 5000, `${coords.length} points`);
  assert.ok(coords.every(([x, y]) => x >= 0 && x <= 360 && y >= 0 && y <= 180));
});
