/**
 * Admin sign-in over the API handler: setup link, password login, lockout
 * and back-off (per account and per source), TOTP enrolment and login with
 * replay refused and recovery codes, CSRF and Origin checks, idle and
 * absolute session expiry (injected clock), logout everywhere, and the
 * Secure cookie flag only over TLS or from a trusted proxy.
 */
import assert from "node:assert/strict";
import * as OTPAuth from "otpauth";
import { announceSetupLink } from "../../controller/api/setup_link.ts";
import { runCli } from "../../controller/cli/run.ts";
import { Settings } from "../../controller/service/settings.ts";
import { createLogger } from "../../core/log.ts";
import {
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  adminSession,
  apiFixture,
  call,
  login,
  sessionCookie,
  setupAdmin,
} from "../support/api_fixture.ts";

Deno.test("api auth: a setup token creates one admin, once", async () => {
  const fx = await apiFixture();
  try {
    const { token } = fx.app.auth.createSetupToken("cli:test");
    const body = { token, email: ADMIN_EMAIL, password: ADMIN_PASSWORD };
    const short = await call(fx.app, "POST", "/api/auth/setup", {
      body: { ...body, password: "short" },
    });
    assert.equal(short.status, 400);
    assert.equal((await short.json()).error.field, "password");
    const ok = await call(fx.app, "POST", "/api/auth/setup", { body });
    assert.equal(ok.status, 201);
    assert.equal((await ok.json()).role, "admin");
    const again = await call(fx.app, "POST", "/api/auth/setup", {
      body: { ...body, email: "other@example.com" },
    });
    assert.equal(again.status, 401);
    assert.equal((await again.json()).error.code, "bad-setup-token");
    const forged = await call(fx.app, "POST", "/api/auth/setup", {
      body: { ...body, token: "x".repeat(32) },
    });
    assert.equal(forged.status, 401);
    const expired = fx.app.auth.createSetupToken("cli:test", 1000);
    fx.clock.advance(2000);
    const late = await call(fx.app, "POST", "/api/auth/setup", {
      body: { ...body, token: expired.token, email: "late@example.com" },
    });
    assert.equal(late.status, 401);
  } finally {
    await fx.close();
  }
});

Deno.test("api auth: wrong passwords lock the account out with doubling back-off", async () => {
  const fx = await apiFixture();
  try {
    await setupAdmin(fx.app);
    const attempt = (password: string, addr = "192.0.2.10") =>
      call(fx.app, "POST", "/api/auth/login", {
        body: { email: ADMIN_EMAIL, password },
        info: { remoteAddr: addr },
      });
    for (let i = 0; i < 5; i++) {
      const r = await attempt("wrong password!!");
      assert.equal(r.status, 401, `failure ${i + 1} is a plain refusal`);
      assert.equal((await r.json()).error.code, "bad-credentials");
    }
    const sixth = await attempt("wrong password!!");
    assert.equal(sixth.status, 401);
    // Now blocked for 1 s: even the right password (from anywhere) is not checked.
    const blocked = await attempt(ADMIN_PASSWORD, "198.51.100.1");
    assert.equal(blocked.status, 429);
    assert.equal(blocked.headers.get("retry-after"), "1");
    fx.clock.advance(1001);
    const seventh = await attempt("wrong password!!");
    assert.equal(seventh.status, 401);
    const blocked2 = await attempt(ADMIN_PASSWORD);
    assert.equal(blocked2.status, 429);
    assert.equal(blocked2.headers.get("retry-after"), "2", "the back-off doubled");
    fx.clock.advance(2001);
    const good = await attempt(ADMIN_PASSWORD);
    assert.equal(good.status, 200);
    // A success clears the account's count.
    assert.equal((await attempt("wrong password!!")).status, 401);
    assert.equal((await attempt(ADMIN_PASSWORD)).status, 200);
    // Unknown accounts are refused the same way and counted too.
    const unknown = await call(fx.app, "POST", "/api/auth/login", {
      body: { email: "nobody@example.com", password: ADMIN_PASSWORD },
    });
    assert.equal(unknown.status, 401);
    assert.equal((await unknown.json()).error.code, "bad-credentials");
  } finally {
    await fx.close();
  }
});

Deno.test("api auth: one source guessing many accounts is blocked, others are not", async () => {
  const fx = await apiFixture();
  try {
    await setupAdmin(fx.app);
    for (let i = 0; i < 20; i++) {
      const r = await call(fx.app, "POST", "/api/auth/login", {
        body: { email: `guess${i}@example.com`, password: "nope nope nope" },
        info: { remoteAddr: "203.0.113.9" },
      });
      assert.equal(r.status, 401);
    }
    const last = await call(fx.app, "POST", "/api/auth/login", {
      body: { email: "guess-last@example.com", password: "nope nope nope" },
      info: { remoteAddr: "203.0.113.9" },
    });
    assert.equal(last.status, 401);
    const fromThere = await call(fx.app, "POST", "/api/auth/login", {
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
      info: { remoteAddr: "203.0.113.9" },
    });
    assert.equal(fromThere.status, 429, "the guessing address is blocked");
    await login(fx.app, ADMIN_EMAIL, ADMIN_PASSWORD, { remoteAddr: "203.0.113.10" });
  } finally {
    await fx.close();
  }
});

Deno.test("api auth: TOTP enrolment, then login needs a code; replays and used recovery codes fail", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    const en = await call(fx.app, "POST", "/api/auth/totp/enroll", {
      cookie: s.cookie,
      csrf: s.csrf,
    });
    assert.equal(en.status, 200);
    const e = await en.json();
    assert.match(e.otpauth_uri, /^otpauth:\/\/totp\/PharosVPN:ops%40example\.com\?/);
    assert.match(e.qr_svg, /^<svg/);
    assert.equal(e.recovery_codes.length, 10);
    const totp = OTPAuth.URI.parse(e.otpauth_uri) as OTPAuth.TOTP;
    const code = () => totp.generate({ timestamp: fx.clock.ms });
    const bad = await call(fx.app, "POST", "/api/auth/totp/confirm", {
      cookie: s.cookie,
      csrf: s.csrf,
      body: { code: "000000" === code() ? "111111" : "000000" },
    });
    assert.equal(bad.status, 400);
    const ok = await call(fx.app, "POST", "/api/auth/totp/confirm", {
      cookie: s.cookie,
      csrf: s.csrf,
      body: { code: code() },
    });
    assert.equal(ok.status, 200);
    const me = await (await call(fx.app, "GET", "/api/auth/me", { cookie: s.cookie })).json();
    assert.equal(me.totp_enabled, true);
    assert.equal(me.recovery_codes_left, 10);

    // Password alone now gives a pending session that can do nothing else.
    fx.clock.advance(30_000);
    const first = await call(fx.app, "POST", "/api/auth/login", {
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    const pendingBody = await first.json();
    assert.equal(pendingBody.totp_required, true);
    assert.equal(pendingBody.user, undefined);
    const pending = { cookie: sessionCookie(first), csrf: pendingBody.csrf_token };
    assert.equal((await call(fx.app, "GET", "/api/nodes", { cookie: pending.cookie })).status, 401);
    const wrong = await call(fx.app, "POST", "/api/auth/totp", {
      ...pending,
      body: { code: code() === "123456" ? "654321" : "123456" },
    });
    assert.equal(wrong.status, 401);
    const used = code();
    const second = await call(fx.app, "POST", "/api/auth/totp", {
      ...pending,
      body: { code: used },
    });
    assert.equal(second.status, 200);
    const full = await second.json();
    assert.equal(full.totp_required, false);
    const fullCookie = sessionCookie(second);
    assert.notEqual(fullCookie, pending.cookie, "a new session id after the second factor");
    assert.equal((await call(fx.app, "GET", "/api/nodes", { cookie: fullCookie })).status, 200);
    assert.equal(
      (await call(fx.app, "GET", "/api/nodes", { cookie: pending.cookie })).status,
      401,
      "the pending session ended",
    );

    // The same code again (same 30 s step) is refused: one use per step.
    const again = await call(fx.app, "POST", "/api/auth/login", {
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    const p2 = { cookie: sessionCookie(again), csrf: (await again.json()).csrf_token };
    const replay = await call(fx.app, "POST", "/api/auth/totp", { ...p2, body: { code: used } });
    assert.equal(replay.status, 401);
    // A recovery code works once.
    const rc = e.recovery_codes[0];
    const viaRc = await call(fx.app, "POST", "/api/auth/totp", {
      ...p2,
      body: { code: rc.toUpperCase() },
    });
    assert.equal(viaRc.status, 200);
    const again2 = await call(fx.app, "POST", "/api/auth/login", {
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    const p3 = { cookie: sessionCookie(again2), csrf: (await again2.json()).csrf_token };
    const rcAgain = await call(fx.app, "POST", "/api/auth/totp", { ...p3, body: { code: rc } });
    assert.equal(rcAgain.status, 401);
    // Enrolling again while on is refused (the secret is not replaced behind the admin's back).
    const re = await call(fx.app, "POST", "/api/auth/totp/enroll", {
      cookie: fullCookie,
      csrf: full.csrf_token,
    });
    assert.equal(re.status, 409);
  } finally {
    await fx.close();
  }
});

Deno.test("api auth: CSRF token and same Origin are required for cookie writes, not for tokens", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    const body = { email: "u1@example.com" };
    const noToken = await call(fx.app, "POST", "/api/users", { cookie: s.cookie, body });
    assert.equal(noToken.status, 403);
    assert.equal((await noToken.json()).error.code, "csrf");
    const wrongToken = await call(fx.app, "POST", "/api/users", {
      cookie: s.cookie,
      csrf: "a".repeat(64),
      body,
    });
    assert.equal(wrongToken.status, 403);
    const foreign = await call(fx.app, "POST", "/api/users", {
      cookie: s.cookie,
      csrf: s.csrf,
      origin: "http://evil.example",
      body,
    });
    assert.equal(foreign.status, 403);
    assert.match((await foreign.json()).error.message, /cross-site/);
    const noOrigin = await call(fx.app, "POST", "/api/users", {
      cookie: s.cookie,
      csrf: s.csrf,
      origin: null,
      body,
    });
    assert.equal(noOrigin.status, 403);
    const csrf = await (await call(fx.app, "GET", "/api/csrf", { cookie: s.cookie })).json();
    assert.equal(csrf.token, s.csrf);
    const ok = await call(fx.app, "POST", "/api/users", { cookie: s.cookie, csrf: s.csrf, body });
    assert.equal(ok.status, 201);
    assert.equal(
      (await call(fx.app, "GET", "/api/users", { cookie: s.cookie })).status,
      200,
      "reads need no CSRF token",
    );
    // Another session's CSRF token does not fit this session.
    const other = await login(fx.app);
    const mixed = await call(fx.app, "POST", "/api/users", {
      cookie: s.cookie,
      csrf: other.csrf,
      body: { email: "u2@example.com" },
    });
    assert.equal(mixed.status, 403);
    // API tokens carry no cookie: no CSRF token, no Origin needed.
    const { secret } = fx.app.tokens.create("cli:test", { name: "script", scope: "admin" });
    const byToken = await call(fx.app, "POST", "/api/users", {
      token: secret,
      origin: null,
      body: { email: "u3@example.com" },
    });
    assert.equal(byToken.status, 201);
    // A foreign Origin on login is refused too (login CSRF).
    const loginCsrf = await call(fx.app, "POST", "/api/auth/login", {
      origin: "http://evil.example",
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    assert.equal(loginCsrf.status, 403);
  } finally {
    await fx.close();
  }
});

Deno.test("api auth: sessions end after idle time, at their absolute limit, and on logout everywhere", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    const get = (cookie: string) => call(fx.app, "GET", "/api/auth/me", { cookie });
    fx.clock.advance(29 * 60_000);
    assert.equal((await get(s.cookie)).status, 200, "used within the idle limit");
    fx.clock.advance(29 * 60_000);
    assert.equal((await get(s.cookie)).status, 200, "each use moves the idle limit");
    fx.clock.advance(31 * 60_000);
    assert.equal((await get(s.cookie)).status, 401, "idle for 31 min: ended");

    const busy = await login(fx.app);
    for (let i = 0; i < 35; i++) {
      fx.clock.advance(20 * 60_000);
      assert.equal((await get(busy.cookie)).status, 200, `in use after ${(i + 1) * 20} min`);
    }
    fx.clock.advance(20 * 60_000);
    assert.equal((await get(busy.cookie)).status, 401, "12 h after sign-in: ended however busy");

    const a = await login(fx.app);
    const b = await login(fx.app);
    const all = await call(fx.app, "POST", "/api/auth/logout-all", {
      cookie: a.cookie,
      csrf: a.csrf,
    });
    assert.equal(all.status, 200);
    assert.equal((await all.json()).revoked, 2);
    assert.equal((await get(a.cookie)).status, 401);
    assert.equal((await get(b.cookie)).status, 401);
    const c = await login(fx.app);
    const out = await call(fx.app, "POST", "/api/auth/logout", { cookie: c.cookie, csrf: c.csrf });
    assert.equal(out.status, 200);
    assert.equal((await get(c.cookie)).status, 401);
    // A forged cookie for a real session id is refused.
    const d = await login(fx.app);
    const forged = d.cookie.replace(/\.[^.]+$/, ".AAAA");
    assert.equal((await get(forged)).status, 401);
  } finally {
    await fx.close();
  }
});

Deno.test("api auth: the cookie is Secure only over TLS or from a trusted proxy saying https", async () => {
  const fx = await apiFixture({ trustedProxies: ["10.0.0.2"] });
  try {
    await setupAdmin(fx.app);
    const signIn = async (headers: Record<string, string>, addr: string, origin: string) => {
      const r = await call(fx.app, "POST", "/api/auth/login", {
        body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
        headers,
        origin,
        info: { remoteAddr: addr },
      });
      assert.equal(r.status, 200, await r.clone().text());
      return r.headers.getSetCookie().find((c) => c.startsWith("pharos_session="))!;
    };
    const direct = await signIn({}, "127.0.0.1", "http://127.0.0.1:8443");
    assert.match(direct, /HttpOnly/);
    assert.match(direct, /SameSite=Strict/);
    assert.doesNotMatch(direct, /Secure/);
    const spoofed = await signIn(
      { "x-forwarded-proto": "https" },
      "127.0.0.1",
      "http://127.0.0.1:8443",
    );
    assert.doesNotMatch(spoofed, /Secure/, "an untrusted X-Forwarded-Proto is ignored");
    const proxied = await signIn(
      { "x-forwarded-proto": "https", "x-forwarded-host": "vpn.example.net" },
      "10.0.0.2",
      "https://vpn.example.net",
    );
    assert.match(proxied, /Secure/);
  } finally {
    await fx.close();
  }
});

Deno.test("api auth: the first start prints a setup link (never into the log); cox admins add makes one too", async () => {
  const fx = await apiFixture();
  try {
    const printed: string[] = [];
    const logged: string[] = [];
    const log = createLogger("t", { sink: (l) => logged.push(l) });
    const url = announceSetupLink(
      fx.app.auth,
      "http://127.0.0.1:8443",
      log,
      (l) => printed.push(l),
    );
    assert.ok(url);
    const token = new URL(url).hash.replace("#token=", "");
    assert.ok(printed[0].includes(url));
    assert.ok(!logged.join("").includes(token), "the token is not in the JSON log");
    const made = await call(fx.app, "POST", "/api/auth/setup", {
      body: { token, email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    assert.equal(made.status, 201);
    assert.equal(
      announceSetupLink(fx.app.auth, "http://x", log, (l) => printed.push(l)),
      undefined,
      "no link once an admin exists",
    );

    const out: string[] = [];
    const io = { out: (s: string) => void out.push(s), err: (s: string) => void out.push(s) };
    const code = await runCli(["admins", "add", "--state", fx.dir], io, () => undefined);
    assert.equal(code, 0, out.join(""));
    const link = out.join("").match(/#token=([A-Za-z0-9_-]+)/)![1];
    // The CLI's link expires by the wall clock; this app's clock is moved to it.
    fx.clock.ms = Date.now();
    new Settings(fx.app.service).set("cli:test", "admins.multiple", true);
    const second = await call(fx.app, "POST", "/api/auth/setup", {
      body: { token: link, email: "second@example.com", password: ADMIN_PASSWORD },
    });
    assert.equal(second.status, 201);
  } finally {
    await fx.close();
  }
});
