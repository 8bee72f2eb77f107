/**
 * Who is calling and may they: resolves the principal of a request (an API
 * token in `Authorization: Bearer`, else the session cookie), checks the
 * route's access rule, and for cookie sessions on state-changing methods
 * checks the CSRF token and the Origin. A request with a token is recorded
 * (audited) on the token's row.
 *
 * Trust of forwarded headers: X-Forwarded-Proto / -Host / -For are read only
 * when the peer is a configured trusted proxy; otherwise they are ignored,
 * so a direct client cannot flip cookie security or fake its address.
 */
import type { Context, MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import type { Actor } from "../service/service.ts";
import type { User } from "../service/users.ts";
import type { AdminAuth, AdminSession } from "./admin_auth.ts";
import { ApiError, forbidden, unauthorized } from "./errors.ts";
import { digest, sameSecret } from "./secrets.ts";
import type { ApiToken, ApiTokens, Scope } from "./tokens.ts";

export const SESSION_COOKIE = "pharos_session";
export const CSRF_HEADER = "x-csrf-token";

/** What a connection tells the handler besides the request. */
export interface ConnInfo {
  /** The peer's address as the socket saw it. */
  remoteAddr?: string;
  /** True when the request arrived over TLS at this process. */
  tls?: boolean;
}

/**
 * Route access rules: `public` (anyone; state-changing ones still need a
 * same-origin Origin when one is sent), `pending` (any cookie session, even
 * one waiting for its second factor), `session` (a full admin session, not a
 * token), or the token scopes allowed (a full admin session counts as admin).
 */
export type Access = "public" | "pending" | "session" | readonly Scope[];

export interface Principal {
  kind: "session" | "token";
  actor: Actor;
  scope: Scope;
  user?: User;
  session?: AdminSession;
  /** The session cookie's secret part (CSRF token derivation). */
  secret?: string;
  token?: ApiToken;
}

export type Env = {
  Bindings: { info?: ConnInfo };
  Variables: { principal?: Principal; route: string };
};

export interface AccessOptions {
  auth: AdminAuth;
  tokens: ApiTokens;
  /** True for a peer whose X-Forwarded-* headers are believed (proxies.ts proxyMatcher). */
  trustedProxy: (peer: string | undefined) => boolean;
  /** Extra origins allowed besides the request's own. */
  allowedOrigins: readonly string[];
}

/** The CSRF token of a session: a digest of its secret, so nothing extra is stored. */
export function csrfToken(secret: string): string {
  return digest(`pharos-csrf/1:${secret}`);
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export function isTrustedPeer(opts: AccessOptions, info: ConnInfo | undefined): boolean {
  return opts.trustedProxy(info?.remoteAddr);
}

/** The client's address: the peer, or the last X-Forwarded-For hop from a trusted proxy. */
export function sourceOf(opts: AccessOptions, req: Request, info: ConnInfo | undefined): string {
  const peer = (info?.remoteAddr ?? "unknown").replace(/^::ffff:/, "");
  if (!isTrustedPeer(opts, info)) return peer;
  const hops = (req.headers.get("x-forwarded-for") ?? "").split(",").map((s) => s.trim())
    .filter(Boolean);
  return hops.at(-1)?.slice(0, 64) ?? peer;
}

/** True when the client reached us over HTTPS (directly, or via a trusted TLS proxy). */
export function isHttps(opts: AccessOptions, req: Request, info: ConnInfo | undefined): boolean {
  if (info?.tls || new URL(req.url).protocol === "https:") return true;
  return isTrustedPeer(opts, info) &&
    req.headers.get("x-forwarded-proto")?.split(",")[0].trim().toLowerCase() === "https";
}

/** The origin this request was sent to, as a browser on the same page would name it. */
export function ownOrigin(opts: AccessOptions, req: Request, info: ConnInfo | undefined): string {
  const url = new URL(req.url);
  const fwdHost = isTrustedPeer(opts, info) ? req.headers.get("x-forwarded-host") : null;
  const host = fwdHost?.split(",")[0].trim() || req.headers.get("host") || url.host;
  return `${isHttps(opts, req, info) ? "https" : "http"}://${host}`;
}

/** Refuses a request whose Origin (or Referer) names another site. */
export function checkOrigin(
  opts: AccessOptions,
  req: Request,
  info: ConnInfo | undefined,
  required: boolean,
): void {
  let origin = req.headers.get("origin");
  if (!origin) {
    const referer = req.headers.get("referer");
    try {
      origin = referer ? new URL(referer).origin : null;
    } catch {
      origin = "null";
    }
  }
  if (origin === null) {
    if (required) throw forbidden("a state-changing request from a browser must carry Origin");
    return;
  }
  if (origin !== ownOrigin(opts, req, info) && !opts.allowedOrigins.includes(origin)) {
    throw forbidden(`requests from origin ${origin.slice(0, 100)} are refused (cross-site)`);
  }
}

/** Resolves the caller (token first, then cookie); undefined when there is none. */
export function principalOf(opts: AccessOptions, c: Context<Env>): Principal | undefined {
  const authz = c.req.header("authorization");
  if (authz !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(authz);
    const token = m ? opts.tokens.verify(m[1]) : undefined;
    if (!token) throw unauthorized("the API token is unknown, revoked or expired");
    return { kind: "token", actor: `api:token:${token.id}`, scope: token.scope, token };
  }
  const cookie = getCookie(c, SESSION_COOKIE);
  if (!cookie) return undefined;
  const found = opts.auth.resolve(cookie);
  if (!found) return undefined;
  return {
    kind: "session",
    actor: `api:user:${found.user.id}`,
    scope: "admin",
    user: found.user,
    session: found.session,
    secret: cookie.slice(cookie.indexOf(".") + 1),
  };
}

/** Middleware enforcing one route's access rule (runs before body validation). */
export function guard(opts: AccessOptions, access: Access, route: string): MiddlewareHandler<Env> {
  return async (c, next) => {
    const info = c.env?.info;
    const req = c.req.raw;
    const unsafe = !SAFE.has(req.method);
    c.set("route", route);
    if (access === "public") {
      if (unsafe) checkOrigin(opts, req, info, false);
      return await next();
    }
    const p = principalOf(opts, c);
    if (!p) throw unauthorized();
    if (p.kind === "session") {
      const pendingOk = access === "pending";
      if (p.session!.stage !== "full" && !pendingOk) {
        throw unauthorized("finish signing in with your second factor first (POST /api/auth/totp)");
      }
      if (unsafe) {
        checkOrigin(opts, req, info, true);
        let sent = c.req.header(CSRF_HEADER);
        if (sent === undefined && /form/.test(c.req.header("content-type") ?? "")) {
          const form = await c.req.parseBody();
          sent = typeof form._csrf === "string" ? form._csrf : undefined;
        }
        if (sent === undefined || !sameSecret(sent, csrfToken(p.secret!))) {
          throw new ApiError(
            403,
            "csrf",
            "missing or wrong CSRF token: send X-CSRF-Token (GET /api/csrf gives it)",
          );
        }
      }
    } else {
      if (access === "pending" || access === "session") {
        throw forbidden("this route is for signed-in admins (cookie session), not API tokens");
      }
      if (!access.includes(p.scope)) {
        throw forbidden(`an API token with scope ${p.scope} may not call ${route}`);
      }
      opts.tokens.used(p.token!, sourceOf(opts, req, info), route);
    }
    c.set("principal", p);
    await next();
  };
}
