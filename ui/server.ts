/**
 * The dashboard: a fetch-style handler for every non-/api path. Pages are
 * rendered on the server with Preact (ui/routes/*, one module per page)
 * from the admin API's answers; ui/islands/* are hydrated by the one
 * bundled script (ui/static/build/islands.js, see ui/build.ts).
 *
 * Mount it as the API app's `ui` handler; the API handler is passed in and
 * called in-process with the browser's own cookies, so the dashboard never
 * reads the database and sees exactly what the signed-in admin may see.
 */
import { h } from "preact";
import { renderToString } from "preact-render-to-string";
import { createLogger, type Logger } from "../core/log.ts";
import { PharosError } from "../core/errors.ts";
import { ApiClient, ApiError, type ApiHandler, NotLoggedIn } from "./lib/api.ts";
import { securityHeaders } from "./lib/security.ts";
import { Layout } from "./components/layout.tsx";
import { ErrorView } from "./components/error_view.tsx";
import { type Page, type PageContext, redirect } from "./routes/context.ts";
import { matchGet, matchPost } from "./routes/mod.ts";
import { ensureBuilt } from "./build.ts";
import { field, str } from "./lib/fields.ts";

/** Like the API's handler: `info` (the listener's connection facts) is passed on to the API. */
// deno-lint-ignore no-explicit-any
export type Handler = (req: Request, info?: any) => Promise<Response>;

export interface DashboardOptions {
  /** The admin API's fetch handler. */
  api: ApiHandler;
  log?: Logger;
  /** Build the browser assets first when their sources changed (default true). */
  build?: boolean;
}

const STATIC = new URL("./static/", import.meta.url);
const TYPES: Record<string, string> = {
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  svg: "image/svg+xml",
  json: "application/json",
};

/**
 * The API app with the dashboard mounted: the dashboard calls the API and
 * the API hands the dashboard every non-/api path, so one is bound late.
 * @example const app = await withDashboard((ui) => createApp({ state, ui, ... }));
 */
export async function withDashboard<A extends ApiHandler>(
  make: (ui: Handler) => A,
  opts: Omit<DashboardOptions, "api"> = {},
): Promise<A> {
  const late: { api?: A } = {};
  const ui = await createDashboard({ ...opts, api: (req, info) => late.api!(req, info) });
  return late.api = make(ui);
}

/** Creates the dashboard handler (building the island bundle first when its sources changed). */
export async function createDashboard(opts: DashboardOptions): Promise<Handler> {
  const log = opts.log ?? createLogger("dashboard");
  const assets = opts.build === false ? "dev" : await buildOrKeep(log);
  return async (req, info) => {
    const url = new URL(req.url);
    let res: Response;
    if (url.pathname.startsWith("/static/")) res = await serveStatic(url.pathname);
    else if (url.pathname === "/favicon.ico") res = new Response(null, { status: 204 });
    else {
      const api = new ApiClient(opts.api, req, info);
      try {
        res = await route(req, url, api, assets);
      } catch (e) {
        res = failure(e, req, url, assets, log);
      }
      // Cookies the API set while serving this page (login, CSRF) go to the browser.
      for (const c of api.setCookies) res.headers.append("set-cookie", c);
    }
    securityHeaders(res.headers);
    return res;
  };
}

/**
 * The build's hash for asset URLs. A failed build (no `deno` to bundle
 * with, say) is logged and the dashboard goes on: every page still works
 * without JavaScript, and a previous build is served if there is one.
 */
async function buildOrKeep(log: Logger): Promise<string> {
  try {
    return (await ensureBuilt()).hash.slice(0, 12);
  } catch (e) {
    log.error("dashboard scripts not built; pages work without them", {
      code: e instanceof PharosError ? e.code : "ui-build-failed",
      error: e,
    });
    return "unbuilt";
  }
}

async function route(req: Request, url: URL, api: ApiClient, assets: string): Promise<Response> {
  if (req.method === "POST") {
    const m = matchPost(url.pathname);
    if (!m) return text("not found", 404);
    if (!sameOrigin(req)) return text("cross-site form post refused", 403);
    const form = await readForm(req);
    if (!form) return text("bad form", 400);
    const r = await m.handler({ req, url, api, form, params: m.params });
    return r instanceof Response ? r : html(render(r, url, "", assets, undefined, req), r.status);
  }
  if (req.method !== "GET" && req.method !== "HEAD") return text("method not allowed", 405);
  const m = matchGet(url.pathname);
  if (!m) return text("not found", 404);
  const csrf = await csrfToken(api);
  let user: string | undefined;
  if (!m.public) {
    const me = await api.call("GET", "/api/auth/me");
    if (me.status === 401 || me.status === 403) return toLogin(url);
    if (!me.ok) throw new ApiError(me.status, me.body);
    const who = field(me.body, "user") ?? me.body;
    user = str(who, "email") || str(who, "name") || str(who, "id") || "admin";
  }
  const ctx: PageContext = { req, url, params: m.params, api, csrf, user, assets };
  const r = await m.handler(ctx);
  if (r instanceof Response) return r;
  return html(render(r, url, csrf, assets, user, req), r.status);
}

async function csrfToken(api: ApiClient): Promise<string> {
  const r = await api.call("GET", "/api/csrf");
  return r.ok ? str(r.body, "token") : "";
}

function toLogin(url: URL): Response {
  const next = url.pathname + url.search;
  return redirect(next === "/" ? "/login" : `/login?next=${encodeURIComponent(next)}`);
}

/** The whole document, or only <main>'s content when the live script asks for it. */
function render(
  page: Page,
  url: URL,
  csrf: string,
  assets: string,
  user: string | undefined,
  req: Request,
): string {
  if (req.headers.get("x-pharos-partial") === "1") return renderToString(page.body);
  return "<!doctype html>" + renderToString(
    h(Layout, { title: page.title, path: url.pathname, csrf, assets, user }, page.body),
  );
}

function failure(e: unknown, req: Request, url: URL, assets: string, log: Logger): Response {
  if (e instanceof NotLoggedIn) return toLogin(url);
  const status = e instanceof ApiError ? (e.status >= 400 ? e.status : 502) : 500;
  const message = e instanceof ApiError ? e.message : "internal error";
  const page: Page = { title: "Error", status, body: h(ErrorView, { status, message }) };
  if (!(e instanceof ApiError)) {
    log.error("page failed", { code: "ui-page-failed", path: url.pathname, error: e });
  }
  return html(render(page, url, "", assets, undefined, req), page.status);
}

/** Browsers send Origin on form posts; one from elsewhere is a cross-site forgery. */
function sameOrigin(req: Request): boolean {
  const origin = req.headers.get("origin");
  if (origin === null) return true; // the API's CSRF token check still applies
  return origin === new URL(req.url).origin;
}

async function readForm(req: Request): Promise<Record<string, string> | null> {
  const type = req.headers.get("content-type") ?? "";
  if (!type.startsWith("application/x-www-form-urlencoded")) return null;
  const body = await req.text();
  if (body.length > 64 * 1024) return null;
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(body)) out[k] = v;
  return out;
}

function html(body: string, status = 200): Response {
  return new Response(body, {
    status,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "vary": "x-pharos-partial",
    },
  });
}

function text(body: string, status: number): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

async function serveStatic(path: string): Promise<Response> {
  const rel = path.slice("/static/".length);
  if (!/^(build\/)?[a-z0-9_-]+\.(css|js|svg|json)$/.test(rel)) return text("not found", 404);
  try {
    const bytes = await Deno.readFile(new URL(rel, STATIC));
    return new Response(bytes, {
      headers: {
        "content-type": TYPES[rel.split(".").pop()!],
        // URLs carry ?v=<build hash>, so a browser may keep them.
        "cache-control": "public, max-age=86400",
      },
    });
  } catch {
    return text("not found", 404);
  }
}
