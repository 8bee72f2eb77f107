/**
 * The scope matrix: every route of the API called with no credentials, with
 * a token of each scope, and with an admin session; each answer must be the
 * refusal (401/403) the route's rule demands, or not a refusal at all. Every
 * request made with a token is in the audit log.
 */
import assert from "node:assert/strict";
import type { RouteInfo } from "../../controller/api/router.ts";
import type { Scope } from "../../controller/api/tokens.ts";
import { adminSession, apiFixture, call, login } from "../support/api_fixture.ts";

function concrete(path: string): string {
  return path.replace(/\{[^}]+\}/g, "missing-id");
}

function allowed(route: RouteInfo, scope: Scope): boolean {
  if (route.access === "public") return true;
  if (route.access === "pending" || route.access === "session") return false;
  return route.access.includes(scope);
}

Deno.test("api access: every route x every scope and none", async () => {
  const fx = await apiFixture();
  try {
    await adminSession(fx);
    const tokens = Object.fromEntries(
      (["readonly", "monitor", "admin"] as const).map((scope) => [
        scope,
        fx.app.tokens.create("cli:test", { name: scope, scope }),
      ]),
    ) as unknown as Record<Scope, { token: { id: string }; secret: string }>;
    assert.ok(fx.app.routes.length >= 40, `${fx.app.routes.length} routes`);
    const used: Record<Scope, number> = { readonly: 0, monitor: 0, admin: 0 };
    for (const route of fx.app.routes) {
      const method = route.method.toUpperCase();
      const path = concrete(route.path);
      const body = method === "GET" || method === "DELETE" ? undefined : {};
      const label = `${method} ${route.path}`;

      const none = await call(fx.app, method, path, { body });
      if (route.access === "public") {
        assert.ok(
          ![401, 403].includes(none.status),
          `${label} without credentials: ${none.status}`,
        );
      } else {
        assert.equal(none.status, 401, `${label} without credentials`);
        assert.equal((await none.json()).error.code, "unauthenticated");
      }

      for (const scope of ["readonly", "monitor", "admin"] as const) {
        const res = await call(fx.app, method, path, {
          body,
          token: tokens[scope].secret,
          origin: null,
        });
        if (route.access === "public") continue;
        if (allowed(route, scope)) {
          assert.ok(![401, 403].includes(res.status), `${label} as ${scope}: ${res.status}`);
          used[scope]++;
        } else {
          assert.equal(res.status, 403, `${label} as ${scope}`);
        }
        await res.body?.cancel();
      }

      // An admin session (fresh for each route: logout routes end it) passes every rule.
      const s = await login(fx.app);
      const res = await call(fx.app, method, path, { body, cookie: s.cookie, csrf: s.csrf });
      assert.ok(![401, 403].includes(res.status), `${label} as admin session: ${res.status}`);
      await res.body?.cancel();
    }
    // Each allowed token request is one audited write of its token's row.
    for (const scope of ["readonly", "monitor", "admin"] as const) {
      const n = fx.state.db.prepare(
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'api_token.use' AND target_id = ?",
      ).get(tokens[scope].token.id) as { n: number };
      assert.equal(n.n, used[scope], `audited requests of the ${scope} token`);
      assert.ok(used[scope] > 0);
    }
    const ro = fx.app.tokens.get(tokens.readonly.token.id)!;
    assert.equal(ro.lastUsedFrom, "127.0.0.1");
    assert.match(ro.lastUsedRoute!, /^(GET|POST) \/api\//);
  } finally {
    await fx.close();
  }
});

Deno.test("api access: revoked, expired and forged tokens are refused", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    const created = await call(fx.app, "POST", "/api/tokens", {
      ...s,
      body: {
        name: "ci",
        scope: "readonly",
        expires_at: new Date(fx.clock.ms + 60_000).toISOString(),
      },
    });
    assert.equal(created.status, 201);
    const { token, secret } = await created.json();
    const list = await (await call(fx.app, "GET", "/api/tokens", { cookie: s.cookie })).json();
    assert.ok(
      !JSON.stringify(list).includes(secret.split("_")[2]),
      "the list never shows a secret",
    );
    assert.equal((await call(fx.app, "GET", "/api/nodes", { token: secret })).status, 200);
    const forged = secret.slice(0, -4) + (secret.endsWith("AAAA") ? "BBBB" : "AAAA");
    assert.equal((await call(fx.app, "GET", "/api/nodes", { token: forged })).status, 401);
    assert.equal((await call(fx.app, "GET", "/api/nodes", { token: "pht_nonsense" })).status, 401);
    fx.clock.advance(61_000);
    assert.equal(
      (await call(fx.app, "GET", "/api/nodes", { token: secret })).status,
      401,
      "expired",
    );
    const other = fx.app.tokens.create("cli:test", { name: "other", scope: "readonly" });
    const del = await call(fx.app, "DELETE", `/api/tokens/${other.token.id}`, { ...s });
    assert.equal(del.status, 200);
    assert.ok((await del.json()).revoked_at);
    assert.equal((await call(fx.app, "GET", "/api/nodes", { token: other.secret })).status, 401);
    void token;
  } finally {
    await fx.close();
  }
});

Deno.test("api access: /metrics needs monitor, or nothing from loopback when configured", async () => {
  const open = await apiFixture({ metricsOnLoopback: true });
  const closed = await apiFixture();
  try {
    const loop = await call(open.app, "GET", "/metrics", { info: { remoteAddr: "127.0.0.1" } });
    assert.equal(loop.status, 200);
    assert.match(await loop.text(), /pharos_nodes\{/);
    const remote = await call(open.app, "GET", "/metrics", { info: { remoteAddr: "192.0.2.1" } });
    assert.equal(remote.status, 401);
    assert.equal((await call(closed.app, "GET", "/metrics")).status, 401);
    const mon = closed.app.tokens.create("cli:test", { name: "prom", scope: "monitor" });
    const ok = await call(closed.app, "GET", "/metrics", { token: mon.secret });
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get("content-type")!, /^text\/plain/);
    const text = await ok.text();
    assert.match(text, /pharos_api_request_duration_seconds_bucket/);
    for (
      const name of ["pharos_nodes", "pharos_node_peers", "pharos_alerts_open", "pharos_enrolments"]
    ) {
      assert.match(text, new RegExp(`# TYPE ${name} gauge`), name);
    }
    assert.match(text, /pharos_nodes\{[^}]*state="active"[^}]*\} 0/);
  } finally {
    await open.close();
    await closed.close();
  }
});

Deno.test("api access: malformed, mistyped and oversized bodies get typed 4xx errors", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    const post = (body: BodyInit, type: string) =>
      fx.app(
        new Request("http://127.0.0.1:8443/api/users", {
          method: "POST",
          headers: {
            host: "127.0.0.1:8443",
            origin: "http://127.0.0.1:8443",
            cookie: s.cookie,
            "x-csrf-token": s.csrf,
            "content-type": type,
          },
          body,
        }),
        { remoteAddr: "127.0.0.1" },
      );
    const malformed = await post("{bad", "application/json");
    assert.equal(malformed.status, 400);
    assert.equal((await malformed.json()).error.code, "invalid");
    const mistyped = await post("{}", "text/plain");
    assert.equal(mistyped.status, 415);
    const huge = await post(JSON.stringify({ email: "x".repeat(300 * 1024) }), "application/json");
    assert.equal(huge.status, 413);
    assert.equal((await huge.json()).error.code, "too-large");
    const wrongType = await call(fx.app, "POST", "/api/users", {
      ...s,
      body: { email: "a@example.com", role: "root" },
    });
    assert.equal(wrongType.status, 400);
    assert.equal((await wrongType.json()).error.field, "role");
    const badEmail = await call(fx.app, "POST", "/api/users", { ...s, body: { email: "nope" } });
    assert.equal(badEmail.status, 400);
    assert.equal(fx.app.auth.users.list().length, 1, "nothing was written by refused requests");
  } finally {
    await fx.close();
  }
});
