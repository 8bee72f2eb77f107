/** Cascade paths: list, create, the exit switch (and MTU), remove. */
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { ConflictError } from "../service/errors.ts";
import { Nodes } from "../service/nodes.ts";
import { type Path, Paths } from "../service/paths.ts";
import type { Service } from "../service/service.ts";
import { ApiError, errorResponse } from "./errors.ts";
import type { Env } from "./access.ts";
import type { Router } from "./router.ts";
import {
  IdParam,
  NewPathSchema,
  OkSchema,
  PathListSchema,
  PathPatchSchema,
  PathSchema,
} from "./schemas.ts";
import { etag, expectedVersion } from "./versions.ts";

/** A DELETE may carry its version as a JSON body (a dashboard form cannot set If-Match). */
const DeleteBody = z.object({ version: z.number().int().min(0).optional() }).strict();

/** The `version` of an optional JSON body; no body is no version (If-Match may still name one). */
async function deleteVersion(c: Context<Env>): Promise<number | undefined> {
  const text = await c.req.text();
  if (text.trim() === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ApiError(400, "invalid", 'the body must be JSON such as {"version": 3}', "body");
  }
  const r = DeleteBody.safeParse(parsed);
  if (!r.success) {
    throw new ApiError(400, "invalid", "the body may only hold a whole-number version", "version");
  }
  return r.data.version;
}

const READ = ["readonly", "admin"] as const;
const WRITE = ["admin"] as const;

/** A path as the API shows it, with its nodes' names (null if a node is gone). */
export function pathJson(p: Path, nodeName: (id: string) => string | null) {
  return {
    id: p.id,
    entry_node_id: p.entryNodeId,
    entry_node_name: nodeName(p.entryNodeId),
    exit_node_id: p.exitNodeId,
    exit_node_name: nodeName(p.exitNodeId),
    mtu: p.mtu,
    status: p.status,
    created_at: p.createdAt.toISOString(),
    version: p.version,
    updated_at: p.updatedAt.toISOString(),
  };
}

export function pathRoutes(r: Router, service: Service): void {
  const paths = new Paths(service);
  const nodes = new Nodes(service);
  const tag = "fleet";
  const nodeName = (id: string) => nodes.find(id)?.name ?? null;
  const present = (p: Path) => pathJson(p, nodeName);
  const found = (id: string): Path => {
    const p = paths.find(id);
    if (!p) throw new ApiError(404, "not-found", `no path ${id.slice(0, 80)}`);
    return p;
  };
  /** Runs a write; a stale version answers 409 with the path as it is now. */
  const write = (id: string, fn: () => Response): Response => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ConflictError) {
        const now = paths.find(id);
        return errorResponse(e, () => now ? present(now) : null);
      }
      throw e;
    }
  };

  r.add({
    method: "get",
    path: "/api/paths",
    access: READ,
    summary: "Cascade paths between nodes (entry → exit), with node names",
    tag,
    ok: { status: 200, schema: PathListSchema },
  }, (c) => c.json({ items: paths.list().map(present) }, 200));

  r.add({
    method: "post",
    path: "/api/paths",
    access: WRITE,
    summary: "Create a cascade path from an entry node to an exit node",
    tag,
    body: NewPathSchema,
    ok: { status: 201, schema: PathSchema },
  }, (c, { body }) => {
    const p = paths.create(c.get("principal")!.actor, {
      entry: body.entry_node_id,
      exit: body.exit_node_id,
      mtu: body.mtu ?? null,
    });
    c.header("etag", etag(p.version));
    return c.json(present(p), 201);
  });

  r.add({
    method: "patch",
    path: "/api/paths/{id}",
    access: WRITE,
    summary: "Switch a path's exit node and/or change its MTU",
    tag,
    params: IdParam,
    body: PathPatchSchema,
    ok: { status: 200, schema: PathSchema },
  }, (c, { params, body }) => {
    const p = found(params.id);
    const version = expectedVersion(c.req.raw, body.version);
    if (body.exit_node_id === undefined && body.mtu === undefined) {
      throw new ApiError(400, "invalid", "give exit_node_id, mtu or both", "exit_node_id");
    }
    const actor = c.get("principal")!.actor;
    return write(p.id, () => {
      const after = service.transaction(() => {
        let expect = version;
        let cur = p;
        if (body.exit_node_id !== undefined) {
          cur = paths.setExit(actor, p.id, body.exit_node_id, expect);
          expect = cur.version;
        }
        if (body.mtu !== undefined) cur = paths.setMtu(actor, p.id, body.mtu, expect);
        return cur;
      });
      c.header("etag", etag(after.version));
      return c.json(present(after), 200);
    });
  });

  r.add({
    method: "delete",
    path: "/api/paths/{id}",
    access: WRITE,
    summary:
      "Remove a path (its devices leave at their own node again); version as If-Match or {version}",
    tag,
    params: IdParam,
    ok: { status: 200, schema: OkSchema },
  }, async (c, { params }) => {
    const p = found(params.id);
    const version = expectedVersion(c.req.raw, await deleteVersion(c));
    return write(p.id, () => {
      paths.remove(c.get("principal")!.actor, p.id, version);
      return c.json({ ok: true }, 200);
    });
  });
}
