/**
 * GeoIP: the database's status, its download as a long operation
 * (GET /api/operations/{id} and the feed follow it), and the fleet's map
 * positions it gives. Without a store (a bare API in tests) they answer 501.
 */
import { z } from "@hono/zod-openapi";
import { GeoipError } from "../geoip/errors.ts";
import { checkDownloadUrl, downloadRunning, redactUrl } from "../geoip/download.ts";
import { type GeoipDownloadOptions, geoipDownloadRun } from "../geoip/operation.ts";
import { auditDownloadRequest } from "../geoip/request_audit.ts";
import { fleetPositions } from "../geoip/positions.ts";
import type { GeoipStore } from "../geoip/store.ts";
import { Nodes } from "../service/nodes.ts";
import { Relays } from "../service/relays.ts";
import type { Service } from "../service/service.ts";
import { Settings } from "../service/settings.ts";
import { ApiError, notImplemented } from "./errors.ts";
import type { Operations } from "./operations.ts";
import type { Router } from "./router.ts";
import { OperationStartedSchema } from "./schemas.ts";

const READ = ["readonly", "admin"] as const;
const WRITE = ["admin"] as const;

const GeoipStatusSchema = z.object({
  loaded: z.boolean(),
  database_type: z.string().nullable(),
  build_date: z.string().nullable(),
  size: z.number().int().nullable(),
  loaded_at: z.string().nullable(),
  credit: z.string().nullable(),
  file_error: z.object({ code: z.string(), message: z.string() }).nullable(),
  url: z.string().describe("The download URL (setting geoip.url) with its secrets hidden"),
  last_download: z.object({
    at: z.string(),
    url: z.string(),
    ok: z.boolean(),
    bytes: z.number().int(),
    code: z.string().optional(),
    error: z.string().optional(),
  }).nullable(),
}).openapi("GeoipStatus");

const GeoipDownloadSchema = z.object({
  url: z.string().max(2048).optional().describe(
    "A City database URL (.mmdb, .mmdb.gz or .tar.gz) for this download; default: geoip.url. " +
      "https only, unless it is geoip.url itself (an http mirror set deliberately)",
  ),
}).openapi("GeoipDownload");

const PositionsSchema = z.object({
  geoip: z.boolean(),
  credit: z.string().nullable(),
  items: z.array(z.object({
    kind: z.enum(["node", "relay"]),
    id: z.string(),
    lat: z.number(),
    lon: z.number(),
    country: z.string().nullable(),
    city: z.string().nullable(),
  })),
}).openapi("FleetPositions");

export function geoipRoutes(
  r: Router,
  service: Service,
  ops: Operations,
  store: GeoipStore | undefined,
  download: GeoipDownloadOptions = {},
): void {
  const tag = "geoip";
  const settings = new Settings(service);
  const need = () => {
    if (!store) throw notImplemented("GeoIP in this API (run the controller)");
    return store;
  };

  r.add({
    method: "get",
    path: "/api/geoip",
    access: READ,
    summary: "The GeoIP database in use and the last download",
    tag,
    ok: { status: 200, schema: GeoipStatusSchema },
  }, async (c) => {
    const s = await need().status();
    return c.json({
      loaded: s.loaded,
      database_type: s.info?.databaseType ?? null,
      build_date: s.info?.buildDate ?? null,
      size: s.info?.size ?? null,
      loaded_at: s.loadedAt,
      credit: s.info?.credit ?? null,
      file_error: s.fileError,
      url: redactUrl(settings.get("geoip.url")),
      last_download: s.lastDownload,
    }, 200);
  });

  r.add({
    method: "post",
    path: "/api/geoip/download",
    access: WRITE,
    summary:
      "Download a City database (setting geoip.url); audited; follow GET /api/operations/{id}",
    tag,
    body: GeoipDownloadSchema,
    ok: { status: 202, schema: OperationStartedSchema },
  }, (c, { body }) => {
    const s = need();
    const configured = settings.get("geoip.url");
    const url = body.url || configured;
    if (!url) {
      throw new ApiError(400, "invalid", "no GeoIP URL: set geoip.url or send url", "url");
    }
    let parsed: URL;
    try {
      parsed = checkDownloadUrl(url);
    } catch (e) {
      if (e instanceof GeoipError) throw new ApiError(400, "invalid", e.message, "url");
      throw e;
    }
    // Plain http only from the operator's own setting (a mirror on their network), never per request.
    if (parsed.protocol !== "https:" && url !== configured) {
      throw new ApiError(
        400,
        "invalid",
        "a GeoIP URL sent with the request must be https; to use an http mirror, set it as geoip.url",
        "url",
      );
    }
    if (downloadRunning(s.dir)) {
      throw new ApiError(503, "busy", "a GeoIP download is running already; follow its operation");
    }
    auditDownloadRequest(service, c.get("principal")!.actor, url);
    const op = ops.start("geoip.download", geoipDownloadRun(s, url, download));
    return c.json({ operation_id: op.id }, 202);
  });

  r.add({
    method: "get",
    path: "/api/geoip/positions",
    access: READ,
    summary: "Map positions of nodes and relays from the GeoIP database (IP hosts it holds)",
    tag,
    ok: { status: 200, schema: PositionsSchema },
  }, async (c) => {
    const hosts = [
      ...new Nodes(service).list().map((n) => ({ kind: "node" as const, id: n.id, host: n.host })),
      ...new Relays(service).list().map((x) => ({
        kind: "relay" as const,
        id: x.id,
        host: x.host,
      })),
    ];
    return c.json(await fleetPositions(store, hosts), 200);
  });
}
