/**
 * Turning two-factor sign-in off: by the admin over the API (password and a
 * TOTP or recovery code again, cookie session + CSRF, audited), and by the
 * operator with `cox admins reset-totp` for a lost device (audited, every
 * session of that admin ended).
 */
import assert from "node:assert/strict";
import * as OTPAuth from "otpauth";
import { runCli } from "../../controller/cli/run.ts";
import {
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  adminSession,
  type ApiFixture,
  apiFixture,
  call,
  login,
  type Session,
  sessionCookie,
} from "../support/api_fixture.ts";

/** Enrols and confirms TOTP for the signed-in admin; returns a code generator and the recovery codes. */
async function enableTotp(fx: ApiFixture, s: Session) {
  const en = await call(fx.app, "POST", "/api/auth/totp/enroll", { ...s });
  assert.equal(en.status, 200);
  const e = await en.json();
  const totp = OTPAuth.URI.parse(e.otpauth_uri) as OTPAuth.TOTP;
  const code = () => totp.generate({ timestamp: fx.clock.ms });
  const ok = await call(fx.app, "POST", "/api/auth/totp/confirm", { ...s, body: { code: code() } });
  assert.equal(ok.status, 200);
  // The confirming code's step is used up; the next code comes from the next step.
  fx.clock.advance(30_000);
  return { code, recovery: e.recovery_codes as string[] };
}

async function me(fx: ApiFixture, s: Session) {
  const res = await call(fx.app, "GET", "/api/auth/me", { cookie: s.cookie });
  assert.equal(res.status, 200);
  return await res.json();
}

function audited(fx: ApiFixture, action: string): { actor: string; target_id: string }[] {
  const rows = fx.state.db.prepare("SELECT actor, target_id FROM audit_log WHERE action = ?")
    .all(action) as { actor: string; target_id: string }[];
  return rows.map((r) => ({ ...r }));
}

function cox(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io = { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t) };
  return { run: () => runCli(args, io, () => undefined), out, err };
}

Deno.test("api totp off: password and a code are both needed; afterwards login needs no code", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    const userId = (await me(fx, s)).user.id;
    const { code } = await enableTotp(fx, s);
    const disable = (body: unknown, extra: Partial<Session> = {}) =>
      call(fx.app, "POST", "/api/auth/totp/disable", { ...s, ...extra, body });

    const noCsrf = await disable({ password: ADMIN_PASSWORD, code: code() }, { csrf: "x" });
    assert.equal(noCsrf.status, 403);
    assert.equal((await noCsrf.json()).error.code, "csrf");
    const foreign = await call(fx.app, "POST", "/api/auth/totp/disable", {
      ...s,
      origin: "https://evil.example",
      body: { password: ADMIN_PASSWORD, code: code() },
    });
    assert.equal(foreign.status, 403);
    const token = fx.app.tokens.create("cli:test", { name: "a", scope: "admin" });
    const viaToken = await call(fx.app, "POST", "/api/auth/totp/disable", {
      token: token.secret,
      origin: null,
      body: { password: ADMIN_PASSWORD, code: code() },
    });
    assert.equal(viaToken.status, 403, "an API token cannot turn a person's second factor off");

    const wrongPassword = await disable({ password: "not the password at all", code: code() });
    assert.equal(wrongPassword.status, 403);
    assert.deepEqual(
      { code: (await wrongPassword.json()).error.code },
      { code: "bad-password" },
    );
    const wrongCode = await disable({
      password: ADMIN_PASSWORD,
      code: code() === "123456" ? "654321" : "123456",
    });
    assert.equal(wrongCode.status, 403);
    const wrongBody = await wrongCode.json();
    assert.equal(wrongBody.error.code, "bad-code");
    assert.equal(wrongBody.error.field, "code");
    const missing = await disable({ password: ADMIN_PASSWORD });
    assert.equal(missing.status, 400);
    assert.equal((await missing.json()).error.field, "code");
    assert.equal((await me(fx, s)).totp_enabled, true, "refusals changed nothing");
    assert.equal(audited(fx, "admin_totp.disable").length, 0);

    // With the app's code: off, audited as this admin.
    const off = await disable({ password: ADMIN_PASSWORD, code: code() });
    assert.equal(off.status, 200, await off.clone().text());
    const after = await me(fx, s);
    assert.equal(after.totp_enabled, false);
    assert.equal(after.recovery_codes_left, 0, "the recovery codes went with it");
    assert.deepEqual(audited(fx, "admin_totp.disable"), [
      { actor: `api:user:${userId}`, target_id: userId },
    ]);
    const plain = await call(fx.app, "POST", "/api/auth/login", {
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    assert.equal(plain.status, 200);
    assert.equal((await plain.json()).totp_required, false, "password alone signs in again");
    const again = await disable({ password: ADMIN_PASSWORD, code: code() });
    assert.equal(again.status, 409);
    assert.equal((await again.json()).error.code, "totp-not-enabled");
    const codesLeft = fx.state.db.prepare("SELECT COUNT(*) AS n FROM admin_recovery_codes")
      .get() as { n: number };
    assert.equal(codesLeft.n, 0, "no recovery code is kept");

    // Enrolled again, a recovery code (any case, with its dash) also turns it off, once.
    const second = await enableTotp(fx, s);
    const rc = second.recovery[3].toUpperCase();
    const viaRc = await disable({ password: ADMIN_PASSWORD, code: rc });
    assert.equal(viaRc.status, 200);
    assert.equal((await me(fx, s)).totp_enabled, false);
    assert.equal(audited(fx, "admin_totp.disable").length, 2);
  } finally {
    await fx.close();
  }
});

Deno.test("api totp off: guessing the password through a session runs into the sign-in lockout", async () => {
  const fx = await apiFixture({ throttle: { accountFree: 2, baseMs: 60_000 } });
  try {
    const s = await adminSession(fx);
    const { code } = await enableTotp(fx, s);
    // Two failures are free, the third starts the back-off.
    for (let i = 0; i < 3; i++) {
      const r = await call(fx.app, "POST", "/api/auth/totp/disable", {
        ...s,
        body: { password: `guess number ${i} of many`, code: code() },
      });
      assert.equal(r.status, 403);
    }
    const locked = await call(fx.app, "POST", "/api/auth/totp/disable", {
      ...s,
      body: { password: ADMIN_PASSWORD, code: code() },
    });
    assert.equal(locked.status, 429, "even the right password waits out the back-off");
    assert.ok(Number(locked.headers.get("retry-after")) > 0);
    assert.equal((await me(fx, s)).totp_enabled, true);
  } finally {
    await fx.close();
  }
});

Deno.test("cox admins reset-totp: removes the second factor, ends the admin's sessions, audited", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    const userId = (await me(fx, s)).user.id;
    // A second browser, signed in before the phone was lost.
    const other = await login(fx.app);
    await enableTotp(fx, s);
    assert.equal((await me(fx, other)).totp_enabled, true);

    const reset = cox(["admins", "reset-totp", ADMIN_EMAIL.toUpperCase(), "--state", fx.dir]);
    assert.equal(await reset.run(), 0, reset.err.join(""));
    assert.equal(reset.err.length, 0);
    assert.equal(reset.out.length, 1, "one closing line");
    assert.match(
      reset.out[0],
      /^two-factor sign-in of ops@example\.com removed, 2 sessions ended; they sign in with the password alone/,
    );
    for (const ended of [s, other]) {
      assert.equal(
        (await call(fx.app, "GET", "/api/auth/me", { cookie: ended.cookie })).status,
        401,
        "the sessions ended",
      );
    }
    const rows = audited(fx, "admin_totp.reset");
    assert.equal(rows.length, 1);
    assert.match(rows[0].actor, /^cli:/);
    assert.equal(rows[0].target_id, userId);
    assert.ok(
      (fx.state.db.prepare(
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'admin_session.revoke' AND actor LIKE 'cli:%'",
      ).get() as { n: number }).n >= 1,
      "each ended session is audited",
    );
    const signIn = await call(fx.app, "POST", "/api/auth/login", {
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    assert.equal(signIn.status, 200);
    const body = await signIn.json();
    assert.equal(body.totp_required, false, "the password alone signs in");
    const fresh = { cookie: sessionCookie(signIn), csrf: body.csrf_token };
    const m = await me(fx, fresh);
    assert.equal(m.totp_enabled, false);
    assert.equal(m.recovery_codes_left, 0);

    // Again: nothing to remove, said so, still exit 0 (sessions are ended all the same).
    const twice = cox(["admins", "reset-totp", ADMIN_EMAIL, "--state", fx.dir]);
    assert.equal(await twice.run(), 0);
    assert.match(twice.out[0], /^ops@example\.com had no two-factor sign-in; 1 session ended\n$/);

    fx.app.auth.users.add("cli:test", { email: "user@example.com" });
    for (const who of ["nobody@example.com", "user@example.com"]) {
      const bad = cox(["admins", "reset-totp", who, "--state", fx.dir]);
      assert.equal(await bad.run(), 1, who);
      assert.equal(bad.err.length, 1);
      assert.match(bad.err[0], new RegExp(`^error: no admin ${who.replace(".", "\\.")};`));
    }
    const noArg = cox(["admins", "reset-totp", "--state", fx.dir]);
    assert.equal(await noArg.run(), 2);
    assert.match(noArg.err[0], /^error: "admins reset-totp" needs EMAIL/);
  } finally {
    await fx.close();
  }
});
