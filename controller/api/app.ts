/**
 * The controller's HTTP surface as a fetch-style handler, so tests call it
 * without sockets: the admin API under /api (OpenAPI 3.1 at
 * /api/openapi.json), /metrics, /healthz, the live feed /api/events
 * (WebSocket; node:http hands upgrades to `upgrade`), and everything else to
 * the dashboard handler (`ui`).
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { Logger } from "../../core/log.ts";
import type { Keystore } from "../keystore.ts";
import type { Db } from "../db/sqlite.ts";
import { type CommittedChange, Service } from "../service/service.ts";
import { type AccessOptions, checkOrigin, type ConnInfo, type Env } from "./access.ts";
import { AdminAuth, type SessionTimes } from "./admin_auth.ts";
import { ApiError, errorResponse, jsonResponse } from "./errors.ts";
import { EventFeed, FEED_CAPACITY, type FeedEvent, observedEvent } from "./feed.ts";
import { type ApiMetrics, createMetrics } from "./metrics.ts";
import { Operations } from "./operations.ts";
import { proxyMatcher } from "./proxies.ts";
import type { PasswordCost } from "./secrets.ts";
import { accountRoutes, type AccountsPort } from "./routes_accounts.ts";
import { adminRoutes } from "./routes_admin.ts";
import { authRoutes } from "./routes_auth.ts";
import { fleetRoutes } from "./routes_fleet.ts";
import { pathRoutes } from "./routes_paths.ts";
import { geoipRoutes } from "./routes_geoip.ts";
import type { GeoipStore } from "../geoip/store.ts";
import type { GeoipDownloadOptions } from "../geoip/operation.ts";
import type { OnboardStarter } from "./onboard.ts";
import type { FleetView } from "./fleet_view.ts";
import { type RouteInfo, Router } from "./router.ts";
import type { ThrottlePolicy } from "./throttle.ts";
import { ApiTokens } from "./tokens.ts";
import { z } from "@hono/zod-openapi";

export type { ConnInfo } from "./access.ts";
export type Handler = (req: Request, info?: ConnInfo) => Promise<Response>;

/** One WebSocket as the feed sees it (node:http + ws adapts to it). */
export interface FeedSocket {
  send(text: string): void;
  close(code: number, reason: string): void;
  readonly bufferedAmount: number;
  onClose(fn: () => void): void;
}

export type UpgradeResult = { open: (ws: FeedSocket) => void } | { response: Response };

export interface AppDeps {
  state: { db: Db; keystore: Keystore; pki: { rootFingerprint: string } };
  /** Share the controller's Service; one is made otherwise. */
  service?: Service;
  log?: Logger;
  clock?: () => Date;
  /** The dashboard: every path outside /api, /metrics and /healthz. */
  ui?: Handler;
  /** Peers (IPs or CIDRs) whose X-Forwarded-Proto/-Host/-For are believed (a TLS reverse proxy). */
  trustedProxies?: string[];
  /** Origins besides the request's own that may send state-changing requests. */
  allowedOrigins?: string[];
  /** Serve /metrics without a token to loopback peers (never to a trusted proxy). */
  metricsOnLoopback?: boolean;
  sessionTimes?: Partial<SessionTimes>;
  throttle?: Partial<ThrottlePolicy>;
  passwordCost?: PasswordCost;
  feedCapacity?: number;
  /** controller/accounts (tickets, device revocation, resealing); routes answer 501 without. */
  accounts?: AccountsPort;
  /** Node onboarding from the API (POST /api/nodes); 501 without. */
  onboard?: OnboardStarter;
  /** Nodes' live state for GET /api/nodes/{id} (controller/fleet_view.ts); `observed` is null without. */
  fleetView?: FleetView;
  /** The GeoIP database (controller/geoip); /api/geoip answers 501 without. */
  geoip?: GeoipStore;
  /** Size and time bounds of GeoIP downloads (tests make them small). */
  geoipDownload?: GeoipDownloadOptions;
}

export interface App extends Handler {
  /** For node:http upgrades of /api/events: authorise, then `open` the socket. */
  upgrade(req: Request, info?: ConnInfo): Promise<UpgradeResult>;
  /** Publishes a fleet event (node up/down, peer connected, alert) on the feed. */
  publish(type: string, data: unknown): FeedEvent;
  readonly feed: EventFeed;
  readonly auth: AdminAuth;
  readonly tokens: ApiTokens;
  readonly metrics: ApiMetrics;
  readonly service: Service;
  /** Long operations (reseals, downloads); `close()` stops them when the controller stops. */
  readonly operations: Operations;
  /** Every API route with its access rule (the scope-matrix test walks it). */
  readonly routes: readonly RouteInfo[];
  /** The OpenAPI 3.1 document. */
  openapi(): Record<string, unknown>;
  /** Detaches from the service's commit hook. */
  close(): void;
}

/** Changes kept off the feed: sign-in bookkeeping (noise, and who signs in when is not for every subscriber). */
const QUIET_TARGETS = new Set([
  "admin_session",
  "login_throttle",
  "setup_token",
  "admin_totp",
  "recovery_code",
  "login_attempt",
  "session",
]);
/** Largest request body the API reads. */
const MAX_BODY = 256 * 1024;
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;
/** A subscriber this far behind is dropped (it reconnects with ?after=). */
const MAX_BUFFERED = 8 * 1024 * 1024;
const UPGRADES = new WeakMap<Request, (ws: FeedSocket) => void>();
/** Each event is serialised once, however many subscribers get it. */
const TEXT = new WeakMap<FeedEvent, string>();

function textOf(e: FeedEvent): string {
  let t = TEXT.get(e);
  if (t === undefined) TEXT.set(e, t = JSON.stringify(e));
  return t;
}

export function createApp(deps: AppDeps): App {
  const clock = deps.clock ?? (() => new Date());
  const service = deps.service ?? new Service(deps.state.db, { clock });
  const auth = new AdminAuth({
    service,
    keystore: deps.state.keystore,
    clock,
    times: deps.sessionTimes,
    throttle: deps.throttle,
    passwordCost: deps.passwordCost,
  });
  const tokens = new ApiTokens(service, clock);
  const feed = new EventFeed(deps.feedCapacity ?? FEED_CAPACITY, clock);
  const metrics = createMetrics(service.db, () => feed.subscribers);
  const publish = (type: string, data: unknown) => {
    metrics.feedEvents.inc({ type });
    return feed.publish(type, data);
  };
  const detach = service.onCommit((changes: readonly CommittedChange[]) => {
    for (const ch of changes) {
      if (QUIET_TARGETS.has(ch.target.type) || ch.action === "api_token.use") continue;
      publish("change", ch);
    }
  });
  // Observed node state (handshakes, rx/tx, data plane) changes: one batched event a second at most.
  const detachObserved = deps.fleetView?.onChange?.((ids) =>
    publish("observed", observedEvent(ids))
  );
  const access: AccessOptions = {
    auth,
    tokens,
    trustedProxy: proxyMatcher(deps.trustedProxies ?? []),
    allowedOrigins: deps.allowedOrigins ?? [],
  };
  const ops = new Operations(
    (e) => publish(e.kind === "node" || e.kind === "relay" ? "onboarding" : "operation", e),
    deps.log,
  );

  const app = new OpenAPIHono<Env>({
    defaultHook: (result) => {
      if (!result.success) {
        const issue = result.error.issues[0];
        throw new ApiError(
          400,
          "invalid",
          `${issue.path.join(".") || "body"}: ${issue.message}`,
          issue.path.join(".") || undefined,
        );
      }
    },
  });
  app.onError((e) => {
    if (e instanceof HTTPException) {
      // Hono's own refusals: malformed JSON, a body of the wrong content type
      const code = e.status === 413 ? "too-large" : "invalid";
      return errorResponse(new ApiError(e.status, code, e.message || "bad request", "body"));
    }
    if (!(e instanceof ApiError) && !(e as { code?: string }).code) {
      deps.log?.error("request failed", { code: "api-internal", error: e });
    }
    return errorResponse(e);
  });
  app.notFound(() => jsonResponse({ error: { code: "not-found", message: "no such route" } }, 404));
  app.use(
    "*",
    bodyLimit({
      maxSize: MAX_BODY,
      onError: () => {
        throw new ApiError(413, "too-large", `request bodies are limited to ${MAX_BODY} bytes`);
      },
    }),
  );
  app.use("*", async (c, next) => {
    const start = performance.now();
    await next();
    c.res.headers.set("cache-control", "no-store");
    metrics.requests.observe(
      { method: c.req.method, route: c.get("route") ?? "unmatched", status: String(c.res.status) },
      (performance.now() - start) / 1000,
    );
  });

  const router = new Router(app, access);
  authRoutes(router, auth, access, metrics);
  fleetRoutes(router, service, ops, deps.onboard, deps.fleetView, deps.accounts);
  accountRoutes(router, service, deps.accounts, clock, ops);
  pathRoutes(router, service);
  geoipRoutes(router, service, ops, deps.geoip, deps.geoipDownload);
  adminRoutes(router, service, tokens);

  router.add({
    method: "get",
    path: "/api/events",
    access: ["readonly", "monitor", "admin"],
    summary: "Live change feed (WebSocket). ?after=SEQ&epoch=E resumes; a plain GET answers 426",
    tag: "events",
    query: z.object({
      after: z.coerce.number().int().min(0).optional(),
      epoch: z.string().max(64).optional(),
    }),
    ok: { status: 200, schema: z.object({ upgrading: z.boolean() }) },
    errors: { 426: "Not a WebSocket request" },
  }, (c, { query }) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      throw new ApiError(426, "upgrade-required", "connect with a WebSocket");
    }
    const p = c.get("principal")!;
    // A page on another site must not ride the admin's cookie into the feed.
    if (p.kind === "session") checkOrigin(access, c.req.raw, c.env?.info, true);
    UPGRADES.set(c.req.raw, (ws) => openFeed(ws, query.after, query.epoch));
    return c.json({ upgrading: true }, 200);
  });

  router.add({
    method: "get",
    path: "/metrics",
    access: ["monitor", "admin"],
    summary: "Prometheus metrics (text format)",
    tag: "monitoring",
    ok: { status: 200, contentType: "text/plain" },
  }, () => metricsResponse());

  const metricsResponse = async () =>
    new Response(await metrics.registry.metrics(), {
      headers: { "content-type": metrics.registry.contentType },
    });

  const openFeed = (ws: FeedSocket, after?: number, epoch?: string) => {
    // Set once subscribed (the replay inside subscribe already goes through sink).
    const held: { sub?: { close(): void } } = {};
    const sink = (e: FeedEvent) => {
      if (ws.bufferedAmount > MAX_BUFFERED) {
        held.sub?.close();
        ws.close(1013, "too far behind: reconnect with ?after=");
        return;
      }
      ws.send(textOf(e));
    };
    ws.send(JSON.stringify({ type: "hello", seq: feed.seq, epoch: feed.epoch }));
    held.sub = feed.subscribe(sink, after, epoch);
    ws.onClose(() => held.sub?.close());
  };

  const doc = () =>
    app.getOpenAPI31Document({
      openapi: "3.1.0",
      info: {
        title: "PharosVPN controller admin API",
        version: "1",
        description:
          "Sign in (cookie session + X-CSRF-Token) or send an API token as Authorization: Bearer.",
      },
    });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "API token pht_<id>_<secret>; scopes readonly, monitor, admin",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "cookie", {
    type: "apiKey",
    in: "cookie",
    name: "pharos_session",
  });
  let cachedDoc: Record<string, unknown> | undefined;
  const openapi = () => cachedDoc ??= doc() as unknown as Record<string, unknown>;

  const handler = async (req: Request, info?: ConnInfo): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (path === "/healthz" && req.method === "GET") {
      return jsonResponse({ status: "ok", root_ca_fingerprint: deps.state.pki.rootFingerprint });
    }
    if (path === "/api/openapi.json" && req.method === "GET") return jsonResponse(openapi());
    if (
      path === "/metrics" && deps.metricsOnLoopback && !req.headers.has("authorization") &&
      // A proxy on this host brings other hosts' requests from loopback: not for them.
      LOOPBACK.test(info?.remoteAddr ?? "") && !access.trustedProxy(info?.remoteAddr)
    ) return await metricsResponse();
    if (path === "/api" || path.startsWith("/api/") || path === "/metrics") {
      return await app.fetch(req, { info });
    }
    if (deps.ui) return await deps.ui(req, info);
    return jsonResponse({ error: { code: "not-found", message: "no such page" } }, 404);
  };

  const upgrade = async (req: Request, info?: ConnInfo): Promise<UpgradeResult> => {
    if (new URL(req.url).pathname !== "/api/events") {
      return { response: errorResponse(new ApiError(404, "not-found", "no WebSocket here")) };
    }
    const response = await app.fetch(req, { info });
    const open = UPGRADES.get(req);
    return open ? { open } : { response };
  };

  return Object.assign(handler, {
    upgrade,
    publish,
    feed,
    auth,
    tokens,
    metrics,
    service,
    operations: ops,
    routes: router.routes,
    openapi,
    close: () => {
      detach();
      detachObserved?.();
    },
  });
}
