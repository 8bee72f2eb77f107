/** /api/auth/* and /api/csrf: setup, sign-in, second factor, sign-out, TOTP enrolment. */
import type { Context } from "hono";
import { deleteCookie, setCookie } from "hono/cookie";
import {
  type AccessOptions,
  csrfToken,
  type Env,
  isHttps,
  type Principal,
  SESSION_COOKIE,
  sourceOf,
} from "./access.ts";
import type { AdminAuth, SignedIn } from "./admin_auth.ts";
import { ApiError } from "./errors.ts";
import type { ApiMetrics } from "./metrics.ts";
import { userJson } from "./present.ts";
import type { Router } from "./router.ts";
import {
  CodeSchema,
  CsrfSchema,
  EnrollSchema,
  LoginSchema,
  MeSchema,
  OkSchema,
  SessionInfoSchema,
  SetupSchema,
  TotpDisableSchema,
  UserSchema,
} from "./schemas.ts";

export function authRoutes(
  r: Router,
  auth: AdminAuth,
  access: AccessOptions,
  metrics: ApiMetrics,
): void {
  const tag = "auth";
  const info = (c: Context<Env>) => c.env?.info;

  /** Sets the session cookie and answers with what the page needs. */
  const signedIn = (c: Context<Env>, s: SignedIn) => {
    const secret = s.cookie.slice(s.cookie.indexOf(".") + 1);
    setCookie(c, SESSION_COOKIE, s.cookie, {
      httpOnly: true,
      sameSite: "Strict",
      secure: isHttps(access, c.req.raw, info(c)),
      path: "/",
      // max-age, not expires: counted from the controller's clock, whatever the browser's says
      maxAge: Math.max(
        0,
        Math.floor((Date.parse(s.session.expiresAt) - auth.clock().getTime()) / 1000),
      ),
    });
    return c.json({
      totp_required: s.session.stage === "totp",
      ...(s.session.stage === "full" ? { user: userJson(s.user) } : {}),
      csrf_token: csrfToken(secret),
      expires_at: s.session.expiresAt,
    }, 200);
  };

  r.add({
    method: "post",
    path: "/api/auth/setup",
    access: "public",
    summary: "Create an admin from a one-time setup link",
    tag,
    body: SetupSchema,
    ok: { status: 201, schema: UserSchema },
  }, async (c, { body }) => {
    const user = await auth.setup(body.token, body.email, body.password);
    return c.json(userJson(user), 201);
  });

  r.add({
    method: "post",
    path: "/api/auth/login",
    access: "public",
    summary: "Sign in with e-mail and password",
    tag,
    body: LoginSchema,
    ok: { status: 200, schema: SessionInfoSchema },
  }, async (c, { body }) => {
    const s = await countedSignIn(
      metrics,
      auth.login(
        body.email,
        body.password,
        sourceOf(access, c.req.raw, info(c)),
        c.req.header("user-agent") ?? null,
      ),
    );
    return signedIn(c, s);
  });

  r.add({
    method: "post",
    path: "/api/auth/totp",
    access: "pending",
    summary: "Finish signing in with a TOTP or recovery code",
    tag,
    body: CodeSchema,
    ok: { status: 200, schema: SessionInfoSchema },
  }, async (c, { body }) => {
    const p = c.get("principal")!;
    const s = await countedSignIn(
      metrics,
      auth.secondFactor(p.session!, body.code, sourceOf(access, c.req.raw, info(c))),
    );
    return signedIn(c, s);
  });

  r.add({
    method: "post",
    path: "/api/auth/logout",
    access: "pending",
    summary: "Sign out this session",
    tag,
    ok: { status: 200, schema: OkSchema },
  }, (c) => {
    const p = c.get("principal")!;
    auth.revoke(p.actor, p.session!.id);
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.json({ ok: true }, 200);
  });

  r.add({
    method: "post",
    path: "/api/auth/logout-all",
    access: "session",
    summary: "Sign out every session of this admin",
    tag,
    ok: { status: 200, schema: OkSchema },
  }, (c) => {
    const p = c.get("principal")!;
    const revoked = auth.revokeAll(p.actor, p.user!.id);
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.json({ ok: true, revoked }, 200);
  });

  r.add({
    method: "get",
    path: "/api/auth/me",
    access: ["readonly", "monitor", "admin"],
    summary: "Who is calling",
    tag,
    ok: { status: 200, schema: MeSchema },
  }, (c) => c.json(me(auth, c.get("principal")!), 200));

  r.add({
    method: "get",
    path: "/api/csrf",
    access: "pending",
    summary: "The CSRF token of this cookie session (send it as X-CSRF-Token)",
    tag,
    ok: { status: 200, schema: CsrfSchema },
  }, (c) => c.json({ token: csrfToken(c.get("principal")!.secret!) }, 200));

  r.add({
    method: "post",
    path: "/api/auth/totp/enroll",
    access: "session",
    summary: "Start TOTP enrolment: secret URI, QR code and recovery codes (shown once)",
    tag,
    ok: { status: 200, schema: EnrollSchema },
  }, async (c) => {
    const e = await auth.enrollTotp(c.get("principal")!.user!);
    return c.json(
      { otpauth_uri: e.otpauthUri, qr_svg: e.qrSvg, recovery_codes: e.recoveryCodes },
      200,
    );
  });

  r.add({
    method: "post",
    path: "/api/auth/totp/confirm",
    access: "session",
    summary: "Turn TOTP on with a first code from the app",
    tag,
    body: CodeSchema,
    ok: { status: 200, schema: OkSchema },
  }, async (c, { body }) => {
    await auth.confirmTotp(c.get("principal")!.user!, body.code);
    return c.json({ ok: true }, 200);
  });

  r.add({
    method: "post",
    path: "/api/auth/totp/disable",
    access: "session",
    summary: "Turn TOTP off: needs the password and a code from the app or a recovery code",
    tag,
    body: TotpDisableSchema,
    ok: { status: 200, schema: OkSchema },
    errors: { 409: "Two-factor sign-in is not on" },
  }, async (c, { body }) => {
    await auth.disableTotp(
      c.get("principal")!.user!,
      body.password,
      body.code,
      sourceOf(access, c.req.raw, info(c)),
    );
    return c.json({ ok: true }, 200);
  });
}

/**
 * Counts a sign-in step's outcome on the login metric: `ok` for a full
 * session, `totp` when a second factor is still due, else the error's code.
 */
async function countedSignIn(metrics: ApiMetrics, step: Promise<SignedIn>): Promise<SignedIn> {
  try {
    const s = await step;
    metrics.logins.inc({ outcome: s.session.stage === "full" ? "ok" : "totp" });
    return s;
  } catch (e) {
    metrics.logins.inc({ outcome: e instanceof ApiError ? e.code : "error" });
    throw e;
  }
}

function me(auth: AdminAuth, p: Principal) {
  const user = p.user ?? null;
  return {
    kind: p.kind,
    scope: p.scope,
    user: user ? userJson(user) : null,
    token_id: p.token?.id ?? null,
    session: p.session
      ? {
        id: p.session.id,
        created_at: p.session.createdAt,
        expires_at: p.session.expiresAt,
        last_seen_at: p.session.lastSeenAt,
      }
      : null,
    totp_enabled: user ? auth.totpEnabled(user.id) : false,
    recovery_codes_left: user ? auth.recoveryCodesLeft(user.id) : 0,
  };
}
