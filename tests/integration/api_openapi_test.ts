/**
 * /api/openapi.json is a valid OpenAPI 3.1 document (checked by
 * @seriousme/openapi-schema-validator), and every route, called for real
 * (with the accounts service behind it), answers with a status the document
 * lists and a JSON body its schema accepts (Ajv, JSON Schema 2020-12).
 */
import assert from "node:assert/strict";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020 } from "ajv/dist/2020.js";
import * as OTPAuth from "otpauth";
import { createApp } from "../../controller/api/app.ts";
import { GeoipStore } from "../../controller/geoip/store.ts";
import { accountsFixture } from "../support/accounts_fixture.ts";
import { call, sessionCookie } from "../support/api_fixture.ts";

type Doc = {
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>
  >;
  components: Record<string, unknown>;
};

Deno.test("api openapi: the document is valid OpenAPI 3.1 and every route's answers match it", async () => {
  const fx = await accountsFixture();
  const app = createApp({
    state: fx.state,
    accounts: fx.accounts,
    passwordCost: { memoryKiB: 1024, iterations: 1 },
    geoip: new GeoipStore(`${fx.dir}/state`),
  });
  try {
    const res = await call(app, "GET", "/api/openapi.json");
    assert.equal(res.status, 200);
    const doc = await res.json() as Doc;
    const verdict = await new Validator().validate(doc as never);
    assert.equal(verdict.valid, true, JSON.stringify(verdict.errors)?.slice(0, 2000));
    assert.equal((doc as unknown as { openapi: string }).openapi, "3.1.0");

    const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
    const covered = new Set<string>();
    const check = async (method: string, template: string, r: Response, expect?: number) => {
      const op = doc.paths[template]?.[method.toLowerCase()];
      assert.ok(op, `${method} ${template} is in the document`);
      const documented = op.responses[String(r.status)];
      assert.ok(documented, `${method} ${template} answered ${r.status}, which is not documented`);
      if (expect !== undefined) assert.equal(r.status, expect, `${method} ${template}`);
      const type = r.headers.get("content-type") ?? "";
      if (type.startsWith("application/json")) {
        const schema = documented.content?.["application/json"]?.schema;
        assert.ok(schema, `${method} ${template} ${r.status} has a JSON schema`);
        const validate = ajv.compile({ ...(schema as object), components: doc.components });
        const body = await r.json();
        assert.ok(
          validate(body),
          `${method} ${template} ${r.status}: ${JSON.stringify(validate.errors)} in ${
            JSON.stringify(body).slice(0, 300)
          }`,
        );
      } else {
        assert.ok(
          documented.content?.[type.split(";")[0]],
          `${method} ${template}: ${type} documented`,
        );
        await r.body?.cancel();
      }
      covered.add(`${method.toLowerCase()} ${template}`);
    };

    // First admin and session.
    const setupToken = app.auth.createSetupToken("cli:test").token;
    const email = "root@example.com";
    const password = "a long enough password";
    await check(
      "POST",
      "/api/auth/setup",
      await call(app, "POST", "/api/auth/setup", {
        body: { token: setupToken, email, password },
      }),
      201,
    );
    const li = await call(app, "POST", "/api/auth/login", { body: { email, password } });
    const cookie = sessionCookie(li);
    await check("POST", "/api/auth/login", li, 200);
    const csrf = (await (await call(app, "GET", "/api/csrf", { cookie })).json()).token;
    const s = { cookie, csrf };
    await check("GET", "/api/csrf", await call(app, "GET", "/api/csrf", { cookie }), 200);
    await check("GET", "/api/auth/me", await call(app, "GET", "/api/auth/me", { cookie }), 200);
    await check(
      "POST",
      "/api/auth/totp",
      await call(app, "POST", "/api/auth/totp", {
        ...s,
        body: { code: "123456" },
      }),
      409,
    );

    // Users, tickets, devices, profiles.
    const u = await call(app, "POST", "/api/users", { ...s, body: { email: "user@example.com" } });
    const user = await u.clone().json();
    await check("POST", "/api/users", u, 201);
    await check(
      "POST",
      "/api/users",
      await call(app, "POST", "/api/users", { ...s, body: {} }),
      400,
    );
    await check("GET", "/api/users", await call(app, "GET", "/api/users", { cookie }), 200);
    await check(
      "GET",
      "/api/users/{id}",
      await call(app, "GET", `/api/users/${user.id}`, { cookie }),
      200,
    );
    await check(
      "GET",
      "/api/users/{id}",
      await call(app, "GET", "/api/users/nobody", { cookie }),
      404,
    );
    await check(
      "PATCH",
      "/api/users/{id}",
      await call(app, "PATCH", `/api/users/${user.id}`, {
        ...s,
        body: { status: "active", version: user.version },
      }),
      200,
    );
    const t = await call(app, "POST", "/api/tickets", {
      ...s,
      body: { email: "user@example.com" },
    });
    const ticket = await t.clone().json();
    await check("POST", "/api/tickets", t, 201);
    assert.match(ticket.url, /^pharosvpn:\/\/enroll\?/);
    // Bound to its link by default (claim MAC secret `bind`); unbound on request, for the original app.
    assert.match(ticket.url, /[?&]bind=/);
    const legacy = await call(app, "POST", "/api/tickets", {
      ...s,
      body: { email: "user@example.com", unbound: true },
    });
    await check("POST", "/api/tickets", legacy.clone(), 201);
    assert.doesNotMatch((await legacy.json()).url, /bind=/);
    await check("GET", "/api/tickets", await call(app, "GET", "/api/tickets", { cookie }), 200);
    await check(
      "GET",
      "/api/tickets/{id}/qr.svg",
      await call(app, "GET", `/api/tickets/${ticket.id}/qr.svg`, { cookie }),
      200,
    );
    const png = await call(app, "GET", `/api/tickets/${ticket.id}/qr.png`, { cookie });
    assert.deepEqual([...new Uint8Array(await png.clone().arrayBuffer()).slice(0, 4)], [
      0x89,
      0x50,
      0x4e,
      0x47,
    ]);
    await check("GET", "/api/tickets/{id}/qr.png", png, 200);
    await check(
      "GET",
      "/api/devices",
      await call(app, "GET", `/api/devices?user_id=${user.id}`, { cookie }),
      200,
    );
    await check(
      "POST",
      "/api/devices/{id}/revoke",
      await call(app, "POST", "/api/devices/none/revoke", s),
      404,
    );
    await check(
      "GET",
      "/api/profiles/{userId}",
      await call(app, "GET", `/api/profiles/${user.id}`, { cookie }),
      200,
    );
    await check(
      "POST",
      "/api/profiles/{userId}/reseal",
      await call(app, "POST", `/api/profiles/${user.id}/reseal`, s),
      200,
    );
    await check(
      "POST",
      "/api/profiles/reseal",
      await call(app, "POST", "/api/profiles/reseal", { ...s, body: { user_id: user.id } }),
      202,
    );

    // Fleet.
    const nodeId = fx.addNode("fra-1");
    await check(
      "GET",
      "/api/nodes",
      await call(app, "GET", "/api/nodes?limit=10&q=fra", { cookie }),
      200,
    );
    await check("GET", "/api/nodes", await call(app, "GET", "/api/nodes?limit=0", { cookie }), 400);
    const n = await call(app, "GET", `/api/nodes/${nodeId}`, { cookie });
    const node = await n.clone().json();
    await check("GET", "/api/nodes/{id}", n, 200);
    const edited = await call(app, "PATCH", `/api/nodes/${nodeId}`, {
      ...s,
      body: { region: "test-region", version: node.version },
    });
    const editedVersion = (await edited.clone().json()).version;
    await check("PATCH", "/api/nodes/{id}", edited, 200);
    await check(
      "PATCH",
      "/api/nodes/{id}/policy",
      await call(app, "PATCH", `/api/nodes/${nodeId}/policy`, {
        ...s,
        body: { masquerade: false, version: editedVersion },
      }),
      200,
    );
    await check(
      "PATCH",
      "/api/nodes/{id}/policy",
      await call(app, "PATCH", `/api/nodes/${nodeId}/policy`, {
        ...s,
        body: { masquerade: true, version: 1 },
      }),
      409,
    );
    const { version } = await (await call(app, "GET", `/api/nodes/${nodeId}`, { cookie })).json();
    for (const [endpoints, status] of [[["203.0.113.7:443"], 200], [["host:443"], 400]] as const) {
      await check(
        "PATCH",
        "/api/nodes/{id}/endpoints",
        await call(app, "PATCH", `/api/nodes/${nodeId}/endpoints`, {
          ...s,
          body: { endpoints, version },
        }),
        status,
      );
    }
    await check(
      "GET",
      "/api/nodes/{id}/policy/preview",
      await call(
        app,
        "GET",
        `/api/nodes/${nodeId}/policy/preview?forwarding=true&masquerade=true`,
        { cookie },
      ),
      200,
    );
    await check(
      "GET",
      "/api/nodes/{id}/policy/preview",
      await call(
        app,
        "GET",
        `/api/nodes/${nodeId}/policy/preview?forwarding=false&masquerade=true`,
        { cookie },
      ),
      400,
    );
    await check(
      "POST",
      "/api/nodes",
      await call(app, "POST", "/api/nodes", { ...s, body: { host: "203.0.113.9" } }),
      501,
    );
    await check(
      "GET",
      "/api/operations/{id}",
      await call(app, "GET", "/api/operations/none", { cookie }),
      404,
    );
    await check("GET", "/api/relays", await call(app, "GET", "/api/relays", { cookie }), 200);
    const exitA = fx.addNode("ams-1");
    const exitB = fx.addNode("waw-1");
    const created = await call(app, "POST", "/api/paths", {
      ...s,
      body: { entry_node_id: "fra-1", exit_node_id: exitA, mtu: 1400 },
    });
    const path = await created.clone().json();
    await check("POST", "/api/paths", created, 201);
    await check(
      "POST",
      "/api/paths",
      await call(app, "POST", "/api/paths", {
        ...s,
        body: { entry_node_id: nodeId, exit_node_id: nodeId },
      }),
      400,
    );
    const pathList = await call(app, "GET", "/api/paths", { cookie });
    assert.equal((await pathList.clone().json()).items[0].exit_node_name, "ams-1");
    await check("GET", "/api/paths", pathList, 200);
    const switched = await call(app, "PATCH", `/api/paths/${path.id}`, {
      ...s,
      body: { exit_node_id: exitB, version: path.version },
    });
    const switchedPath = await switched.clone().json();
    assert.equal(switchedPath.exit_node_name, "waw-1");
    await check("PATCH", "/api/paths/{id}", switched, 200);
    const stale = await call(app, "PATCH", `/api/paths/${path.id}`, {
      ...s,
      body: { exit_node_id: exitA, version: path.version },
    });
    assert.equal((await stale.clone().json()).current.exit_node_id, exitB);
    await check("PATCH", "/api/paths/{id}", stale, 409);
    await check(
      "DELETE",
      "/api/paths/{id}",
      await call(app, "DELETE", `/api/paths/${path.id}`, {
        ...s,
        headers: { "if-match": `"${switchedPath.version}"` },
      }),
      200,
    );
    await check("GET", "/api/sessions", await call(app, "GET", "/api/sessions", { cookie }), 200);
    await check("GET", "/api/alerts", await call(app, "GET", "/api/alerts", { cookie }), 200);
    // GeoIP without a database: status, positions, and a download refused before it starts.
    await check("GET", "/api/geoip", await call(app, "GET", "/api/geoip", { cookie }), 200);
    await check(
      "GET",
      "/api/geoip/positions",
      await call(app, "GET", "/api/geoip/positions", { cookie }),
      200,
    );
    await check(
      "POST",
      "/api/geoip/download",
      await call(app, "POST", "/api/geoip/download", {
        ...s,
        body: { url: "ftp://example.com/x" },
      }),
      400,
    );
    const current = await (await call(app, "GET", `/api/nodes/${nodeId}`, { cookie })).json();
    await check(
      "DELETE",
      "/api/nodes/{id}",
      await call(app, "DELETE", `/api/nodes/${nodeId}`, {
        ...s,
        headers: { "if-match": `"${current.version}"` },
      }),
      200,
    );

    // Audit, tokens, settings, feed, metrics.
    await check(
      "GET",
      "/api/audit",
      await call(app, "GET", "/api/audit?after_seq=0&limit=5", { cookie }),
      200,
    );
    await check("POST", "/api/audit/verify", await call(app, "POST", "/api/audit/verify", s), 200);
    const tk = await call(app, "POST", "/api/tokens", {
      ...s,
      body: { name: "prom", scope: "monitor" },
    });
    const token = await tk.clone().json();
    await check("POST", "/api/tokens", tk, 201);
    await check("GET", "/api/tokens", await call(app, "GET", "/api/tokens", { cookie }), 200);
    await check(
      "GET",
      "/metrics",
      await call(app, "GET", "/metrics", { token: token.secret }),
      200,
    );
    await check(
      "GET",
      "/api/events",
      await call(app, "GET", "/api/events", { token: token.secret }),
      426,
    );
    await check(
      "DELETE",
      "/api/tokens/{id}",
      await call(app, "DELETE", `/api/tokens/${token.token.id}`, s),
      200,
    );
    await check("GET", "/api/settings", await call(app, "GET", "/api/settings", { cookie }), 200);
    await check(
      "PATCH",
      "/api/settings",
      await call(app, "PATCH", "/api/settings", {
        ...s,
        body: { key: "metrics.retention_days", value: 14, version: 0 },
      }),
      200,
    );

    // TOTP enrolment, then sign-out.
    const en = await call(app, "POST", "/api/auth/totp/enroll", s);
    const enrolment = await en.clone().json();
    await check("POST", "/api/auth/totp/enroll", en, 200);
    const code = (OTPAuth.URI.parse(enrolment.otpauth_uri) as OTPAuth.TOTP).generate();
    await check(
      "POST",
      "/api/auth/totp/confirm",
      await call(app, "POST", "/api/auth/totp/confirm", {
        ...s,
        body: { code },
      }),
      200,
    );
    const disable = (body: unknown) => call(app, "POST", "/api/auth/totp/disable", { ...s, body });
    await check(
      "POST",
      "/api/auth/totp/disable",
      await disable({ password: "not the password", code: enrolment.recovery_codes[0] }),
      403,
    );
    await check(
      "POST",
      "/api/auth/totp/disable",
      await disable({ password, code: enrolment.recovery_codes[0] }),
      200,
    );
    await check(
      "POST",
      "/api/auth/totp/disable",
      await disable({ password, code: enrolment.recovery_codes[1] }),
      409,
    );
    await check(
      "POST",
      "/api/auth/logout-all",
      await call(app, "POST", "/api/auth/logout-all", s),
      200,
    );
    await check("POST", "/api/auth/logout", await call(app, "POST", "/api/auth/logout", s), 401);
    const l2 = await call(app, "POST", "/api/auth/login", { body: { email, password } });
    const c2 = sessionCookie(l2);
    const csrf2 = (await l2.json()).csrf_token;
    await check(
      "POST",
      "/api/auth/logout",
      await call(app, "POST", "/api/auth/logout", { cookie: c2, csrf: csrf2 }),
      200,
    );

    const missing = app.routes.map((r) => `${r.method} ${r.path}`).filter((k) => !covered.has(k));
    assert.deepEqual(missing, [], "every route was called and checked");
  } finally {
    app.close();
    await fx.close();
  }
});
