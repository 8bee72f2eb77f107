/**
 * Fleet routes: nodes (list, edit, remove, policy with rule preview,
 * endpoints, onboarding), relays, paths.
 */
import { z } from "@hono/zod-openapi";
import { renderNetworkPolicy } from "../../core/dataplane/netpolicy.ts";
import { DataplaneError } from "../../core/dataplane/errors.ts";
import { ConflictError, ServiceError } from "../service/errors.ts";
import {
  MAX_ENDPOINTS,
  MAX_RANGE_PORTS,
  type Node,
  type NodePolicy,
  Nodes,
  parseNodeEndpoint,
  RANGE_PORT_FLOOR,
} from "../service/nodes.ts";
import { Relays } from "../service/relays.ts";
import type { Service } from "../service/service.ts";
import { ApiError, errorResponse, notImplemented } from "./errors.ts";
import type { OnboardStarter } from "./onboard.ts";
import type { Operations } from "./operations.ts";
import { nodeDetailJson, nodeJson, relayJson } from "./present.ts";
import { confirmationOf } from "../reconcile/endpoint_confirmations.ts";
import type { FleetView } from "./fleet_view.ts";
import type { Router } from "./router.ts";
import { type AccountsPort, startReseal } from "./routes_accounts.ts";
import {
  IdParam,
  NodeDetailSchema,
  NodeListQuery,
  NodeListSchema,
  NodePatchSchema,
  NodePolicyResultSchema,
  NodeSchema,
  OkSchema,
  OnboardSchema,
  OperationSchema,
  OperationStartedSchema,
  PolicyPatchSchema,
  PreviewQuery,
  RelayListSchema,
  RulePreviewSchema,
} from "./schemas.ts";
import { etag, expectedVersion } from "./versions.ts";

const READ = ["readonly", "admin"] as const;
const WRITE = ["admin"] as const;
const NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const REGION = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** One endpoint as the service reads it; a bad one is a 400 naming the reason. */
const EndpointText = z.string().max(64).superRefine((text, ctx) => {
  try {
    parseNodeEndpoint(text);
  } catch (e) {
    if (!(e instanceof ServiceError)) throw e;
    ctx.addIssue({ code: "custom", message: e.message });
  }
}).openapi({ example: "203.0.113.7:40000-40100" });

const NodeEndpointsPatchSchema = z.object({
  endpoints: z.array(EndpointText).max(MAX_ENDPOINTS).openapi({
    description:
      `Public IP and UDP port (or FIRST-LAST range) pairs of the node's AmneziaWG listener, IPv6 as [IP]:PORT; at most ${MAX_ENDPOINTS}; no two sharing a port on one IP; a range at most ${MAX_RANGE_PORTS} ports wide and, if more than one port, from ${RANGE_PORT_FLOOR} up; [] clears them (clients dial the host at 443)`,
  }),
  version: z.number().int().min(0).optional(),
}).strict().openapi("NodeEndpointsPatch");

const NodeEndpointsResultSchema = z.object({
  node: NodeDetailSchema,
  operation_id: z.string().nullable().openapi({
    description: "The reseal of every profile the change started; null when nothing changed",
  }),
}).openapi("NodeEndpointsResult");

/** The canonical rules a policy renders to (core/dataplane/netpolicy.ts), as display strings. */
export function rulePreview(p: NodePolicy) {
  try {
    const r = renderNetworkPolicy({
      policy: { ...p, transits: [] },
      interfaces: { client: "awg0" },
    });
    return {
      pre_up: r.display.preUp,
      post_up: r.display.postUp,
      post_down: r.display.postDown,
      unresolved: r.unresolved,
    };
  } catch (e) {
    if (e instanceof DataplaneError) throw new ApiError(400, "invalid", e.message, "forwarding");
    throw e;
  }
}

export function fleetRoutes(
  r: Router,
  service: Service,
  ops: Operations,
  onboard: OnboardStarter | undefined,
  view?: FleetView,
  /** Reseals the profiles a node change touches (every profile lists every node). */
  accounts?: AccountsPort,
): void {
  const nodes = new Nodes(service);
  const relays = new Relays(service);
  const tag = "fleet";
  const found = (id: string): Node => {
    const n = nodes.find(id);
    if (!n) throw new ApiError(404, "not-found", `no node ${id.slice(0, 80)}`);
    return n;
  };
  const detail = (n: Node) =>
    nodeDetailJson(n, view?.observed(n.id) ?? null, confirmationOf(service.db, n.id));
  /** Runs a write; a stale version answers 409 with the node as it is now. */
  const write = (id: string, fn: () => Response): Response => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ConflictError) {
        const now = nodes.find(id);
        return errorResponse(e, () => now ? nodeJson(now) : null);
      }
      throw e;
    }
  };

  r.add({
    method: "get",
    path: "/api/nodes",
    access: READ,
    summary: "List nodes (filter by status and text; cursor pagination by name)",
    tag,
    query: NodeListQuery,
    ok: { status: 200, schema: NodeListSchema },
  }, (c, { query }) => {
    const q = query.q?.toLowerCase();
    const all = nodes.list().filter((n) =>
      (!query.status || n.status === query.status) &&
      (!q || n.name.includes(q) || n.host.toLowerCase().includes(q) ||
        (n.region ?? "").includes(q))
    );
    const after = query.cursor ? decodeCursor(query.cursor) : undefined;
    const rest = after === undefined ? all : all.filter((n) => n.name > after);
    const limit = query.limit ?? 100;
    const page = rest.slice(0, limit);
    return c.json({
      items: page.map(nodeJson),
      next_cursor: rest.length > limit ? encodeCursor(page.at(-1)!.name) : null,
      total: all.length,
    }, 200);
  });

  r.add({
    method: "get",
    path: "/api/nodes/{id}",
    access: READ,
    summary: "One node (by id or name) with endpoints, obfuscation and its observed state",
    tag,
    params: IdParam,
    ok: { status: 200, schema: NodeDetailSchema },
  }, (c, { params }) => {
    const n = found(params.id);
    c.header("etag", etag(n.version));
    return c.json(detail(n), 200);
  });

  r.add({
    method: "patch",
    path: "/api/nodes/{id}",
    access: WRITE,
    summary: "Rename a node or change its region",
    tag,
    params: IdParam,
    body: NodePatchSchema,
    ok: { status: 200, schema: NodeSchema },
  }, (c, { params, body }) => {
    const n = found(params.id);
    const version = expectedVersion(c.req.raw, body.version);
    if (body.name !== undefined && !NAME.test(body.name)) {
      throw new ApiError(400, "invalid", 'a node name uses a-z, 0-9 and inner "-"', "name");
    }
    if (body.region != null && !REGION.test(body.region)) {
      throw new ApiError(400, "invalid", "a region is a code like fra1 or eu-central-1", "region");
    }
    return write(n.id, () => {
      service.mutate(
        {
          actor: c.get("principal")!.actor,
          action: "node.edit",
          target: { type: "node", id: n.id },
          expectVersion: version,
        },
        (tx) => {
          const changes: Record<string, string | null> = {};
          if (body.name !== undefined && body.name !== tx.current?.name) {
            if (
              tx.db.prepare("SELECT 1 FROM nodes WHERE name = ? AND id <> ?").get(body.name, n.id)
            ) {
              throw new ServiceError("exists", `a node named ${body.name} exists already`);
            }
            changes.name = body.name;
          }
          if (body.region !== undefined && body.region !== tx.current?.region) {
            changes.region = body.region;
          }
          if (Object.keys(changes).length > 0) tx.update(changes);
        },
      );
      const now = found(n.id);
      c.header("etag", etag(now.version));
      return c.json(nodeJson(now), 200);
    });
  });

  r.add({
    method: "delete",
    path: "/api/nodes/{id}",
    access: WRITE,
    summary: "Remove a node (its certificate is revoked)",
    tag,
    params: IdParam,
    ok: { status: 200, schema: OkSchema },
  }, (c, { params }) => {
    const n = found(params.id);
    const version = expectedVersion(c.req.raw, undefined);
    return write(n.id, () => {
      nodes.remove(c.get("principal")!.actor, n.id, version);
      return c.json({ ok: true }, 200);
    });
  });

  r.add({
    method: "patch",
    path: "/api/nodes/{id}/policy",
    access: WRITE,
    summary: "Change forwarding / masquerade / isolation; answers with the rendered rules",
    tag,
    params: IdParam,
    body: PolicyPatchSchema,
    ok: { status: 200, schema: NodePolicyResultSchema },
  }, (c, { params, body }) => {
    const n = found(params.id);
    const version = expectedVersion(c.req.raw, body.version);
    const change: Partial<NodePolicy> = {};
    for (const k of ["forwarding", "masquerade", "isolation"] as const) {
      if (body[k] !== undefined) change[k] = body[k];
    }
    return write(n.id, () => {
      const after = nodes.setPolicy(c.get("principal")!.actor, n.id, change, version);
      c.header("etag", etag(after.version));
      return c.json({ node: nodeJson(after), rule_preview: rulePreview(after) }, 200);
    });
  });

  r.add({
    method: "patch",
    path: "/api/nodes/{id}/endpoints",
    access: WRITE,
    summary:
      "Replace a node's endpoints: stored, every profile resealed (an operation); reconcile pushes the ranges to the node at once, whose agent DNATs them onto its AmneziaWG listener; profiles list a range once the agent confirmed it",
    tag,
    params: IdParam,
    body: NodeEndpointsPatchSchema,
    ok: { status: 200, schema: NodeEndpointsResultSchema },
  }, (c, { params, body }) => {
    const n = found(params.id);
    const version = expectedVersion(c.req.raw, body.version);
    return write(n.id, () => {
      const actor = c.get("principal")!.actor;
      // Written through the service: audited, and the reconcile loop (following
      // the audit log) pushes the endpoint ranges to the node in its network policy.
      const { node, changed } = nodes.setEndpoints(actor, n.id, body.endpoints, version);
      const op = changed && accounts ? startReseal(ops, accounts, { actor }) : null;
      c.header("etag", etag(node.version));
      return c.json({
        node: detail(node),
        operation_id: op?.id ?? null,
      }, 200);
    });
  });

  r.add({
    method: "get",
    path: "/api/nodes/{id}/policy/preview",
    access: READ,
    summary: "The rules a policy would render to, without changing anything",
    tag,
    params: IdParam,
    query: PreviewQuery,
    ok: { status: 200, schema: RulePreviewSchema },
  }, (c, { params, query }) => {
    const n = found(params.id);
    return c.json(
      rulePreview({
        forwarding: query.forwarding ?? n.forwarding,
        masquerade: query.masquerade ?? n.masquerade,
        isolation: query.isolation ?? n.isolation,
      }),
      200,
    );
  });

  r.add({
    method: "post",
    path: "/api/nodes",
    access: WRITE,
    summary: "Start onboarding a node over SSH; follow GET /api/operations/{id}",
    tag,
    body: OnboardSchema,
    ok: { status: 202, schema: OperationStartedSchema },
  }, (c, { body }) => {
    if (!onboard) throw notImplemented("onboarding from the API (use cox nodes add)");
    const op = ops.start(
      "node.onboard",
      onboard(c.get("principal")!.actor, {
        host: body.host,
        name: body.name,
        sshPort: body.ssh_port ?? 22,
        sshUser: body.ssh_user ?? "root",
        region: body.region,
        acceptHostKey: body.accept_host_key,
      }),
    );
    return c.json({ operation_id: op.id }, 202);
  });

  r.add({
    method: "get",
    path: "/api/operations/{id}",
    access: READ,
    summary: "Progress of an operation",
    tag,
    params: IdParam,
    ok: { status: 200, schema: OperationSchema },
  }, (c, { params }) => {
    const op = ops.get(params.id);
    if (!op) throw new ApiError(404, "not-found", `no operation ${params.id.slice(0, 80)}`);
    return c.json({
      id: op.id,
      kind: op.kind,
      status: op.status,
      error: op.error,
      events: op.events as unknown as Record<string, unknown>[],
      started_at: op.startedAt,
    }, 200);
  });

  r.add({
    method: "get",
    path: "/api/relays",
    access: READ,
    summary: "List relays",
    tag,
    ok: { status: 200, schema: RelayListSchema },
  }, (c) => c.json({ items: relays.list().map(relayJson) }, 200));
}

function encodeCursor(name: string): string {
  return btoa(name).replaceAll("=", "");
}

function decodeCursor(cursor: string): string {
  try {
    return atob(cursor);
  } catch {
    throw new ApiError(400, "invalid", "cursor is not one this API gave out", "cursor");
  }
}
