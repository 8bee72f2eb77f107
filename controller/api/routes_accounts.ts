/**
 * Users, devices, profiles, enrollment tickets, VPN sessions and alerts
 * (paths: routes_paths.ts). Account logic (tickets, device revocation, resealing) belongs to
 * controller/accounts; it is reached through `AccountsPort`, and without it
 * those routes answer 501. Lists of tables other parts own leave out every
 * secret column (hashes, sealed keys, ciphertext).
 */
import { z } from "@hono/zod-openapi";
import { renderSVG } from "uqr";
import type { ResealProgress } from "../onboarding/events.ts";
import type { Operation, Operations } from "./operations.ts";
import type { Service } from "../service/service.ts";
import { Users } from "../service/users.ts";
import { ConflictError } from "../service/errors.ts";
import { ApiError, errorResponse, notImplemented } from "./errors.ts";
import { userJson } from "./present.ts";
import { qrPng } from "./qr_png.ts";
import type { Router } from "./router.ts";
import {
  CreatedTicketSchema,
  DeviceListSchema,
  DeviceQuery,
  IdParam,
  NewTicketSchema,
  NewUserSchema,
  OkSchema,
  OperationStartedSchema,
  ProfilesSchema,
  RowListSchema,
  UserIdParam,
  UserListSchema,
  UserPatchSchema,
  UserSchema,
} from "./schemas.ts";
import { etag, expectedVersion } from "./versions.ts";

/** What the API needs of controller/accounts (its Accounts class fits). */
export interface AccountsPort {
  createTicket(
    email: string,
    opts: { actor?: string; ttlMs?: number; unbound?: boolean },
  ): { url: string; ticketId: string; userId: string; expiresAt: Date };
  revokeDevice(deviceId: string, actor?: string, reason?: string): Promise<void>;
  reprovision(userId: string): Promise<void>;
  /** Reseals many profiles, reporting progress (Accounts.resealProfiles). */
  resealProfiles(
    opts: {
      userId?: string;
      run?: string;
      emit?: (e: ResealProgress) => void;
      actor?: string;
      /** Aborted when the controller stops: the reseal ends between two devices. */
      signal?: AbortSignal;
    },
  ): Promise<unknown>;
}

/** What starts a reseal of many profiles: one user's (user_id: id or e-mail) or everyone's. */
const ResealAllSchema = z.object({
  user_id: z.string().min(1).max(320).optional().openapi({
    description: "Only this user's devices (id or e-mail); all users' without",
  }),
}).strict().openapi("ResealProfiles");

/** Operation kind of a reseal of every profile (one runs at a time). */
export const RESEAL_ALL_KIND = "profiles.reseal";

/**
 * Reseals all profiles (or one user's) as an operation for `actor` (the
 * audit log names them). While one of the same kind runs — it may have
 * sealed some users with the state from before this request — a follow-up
 * is queued, and further requests join that follow-up (Operations.startOrQueue).
 */
export function startReseal(
  ops: Operations,
  port: AccountsPort,
  opts: { userId?: string; actor: string },
): Operation {
  const kind = opts.userId === undefined ? RESEAL_ALL_KIND : `${RESEAL_ALL_KIND}:${opts.userId}`;
  return ops.startOrQueue<ResealProgress>(kind, async (emit, run, signal) => {
    await port.resealProfiles({ ...opts, run, emit, signal });
  });
}

const READ = ["readonly", "admin"] as const;
const WRITE = ["admin"] as const;
/** Join links are never stored: the QR routes serve them from memory while the ticket lives. */
const MAX_LINKS = 1000;

export function accountRoutes(
  r: Router,
  service: Service,
  accounts: AccountsPort | undefined,
  clock: () => Date,
  ops?: Operations,
): void {
  const users = new Users(service);
  const db = service.db;
  const links = new Map<string, { url: string; until: number }>();
  const need = (what: string): AccountsPort => {
    if (!accounts) throw notImplemented(what);
    return accounts;
  };
  const rows = (sql: string, ...args: string[]) => {
    try {
      return db.prepare(sql).all(...args) as Record<string, unknown>[];
    } catch (e) {
      if (/no such table/.test(String((e as Error).message))) throw notImplemented("this list");
      throw e;
    }
  };
  const user = (id: string) => {
    const u = users.find(id);
    if (!u) throw new ApiError(404, "not-found", `no user ${id.slice(0, 80)}`);
    return u;
  };

  r.add({
    method: "get",
    path: "/api/users",
    access: READ,
    summary: "List users",
    tag: "users",
    ok: { status: 200, schema: UserListSchema },
  }, (c) => c.json({ items: users.list().map(userJson) }, 200));

  r.add({
    method: "post",
    path: "/api/users",
    access: WRITE,
    summary: "Add a user",
    tag: "users",
    body: NewUserSchema,
    ok: { status: 201, schema: UserSchema },
  }, (c, { body }) => {
    const u = users.add(c.get("principal")!.actor, { email: body.email, role: body.role });
    return c.json(userJson(u), 201);
  });

  r.add({
    method: "get",
    path: "/api/users/{id}",
    access: READ,
    summary: "One user (by id or e-mail)",
    tag: "users",
    params: IdParam,
    ok: { status: 200, schema: UserSchema },
  }, (c, { params }) => {
    const u = user(params.id);
    c.header("etag", etag(u.version));
    return c.json(userJson(u), 200);
  });

  r.add({
    method: "patch",
    path: "/api/users/{id}",
    access: WRITE,
    summary: "Enable or disable a user",
    tag: "users",
    params: IdParam,
    body: UserPatchSchema,
    ok: { status: 200, schema: UserSchema },
  }, (c, { params, body }) => {
    const u = user(params.id);
    const version = expectedVersion(c.req.raw, body.version);
    try {
      service.mutate(
        {
          actor: c.get("principal")!.actor,
          action: "user.edit",
          target: { type: "user", id: u.id },
          expectVersion: version,
        },
        (tx) => {
          if (body.status !== undefined && body.status !== tx.current?.status) {
            tx.update({ status: body.status });
          }
        },
      );
    } catch (e) {
      if (e instanceof ConflictError) {
        const now = users.find(u.id);
        return errorResponse(e, () => now ? userJson(now) : null);
      }
      throw e;
    }
    return c.json(userJson(user(u.id)), 200);
  });

  r.add({
    method: "get",
    path: "/api/devices",
    access: READ,
    summary: "List devices (optionally of one user)",
    tag: "users",
    query: DeviceQuery,
    ok: { status: 200, schema: DeviceListSchema },
  }, (c, { query }) => {
    const cols =
      "id, user_id, fingerprint, serial, status, not_after, created_at, updated_at, version";
    const items = query.user_id
      ? rows(`SELECT ${cols} FROM devices WHERE user_id = ? ORDER BY created_at`, query.user_id)
      : rows(`SELECT ${cols} FROM devices ORDER BY created_at`);
    return c.json({ items } as never, 200);
  });

  r.add({
    method: "post",
    path: "/api/devices/{id}/revoke",
    access: WRITE,
    summary: "Revoke a device (certificate, sessions, peers)",
    tag: "users",
    params: IdParam,
    ok: { status: 200, schema: OkSchema },
  }, async (c, { params }) => {
    await need("device revocation").revokeDevice(
      params.id,
      c.get("principal")!.actor,
      "revoked from the admin API",
    );
    return c.json({ ok: true }, 200);
  });

  const profiles = (userId: string) => ({
    user_id: userId,
    items: rows(
      "SELECT device_id, revision, expires_at, updated_at, version FROM sealed_profiles WHERE user_id = ? ORDER BY device_id",
      userId,
    ),
  });

  r.add({
    method: "get",
    path: "/api/profiles/{userId}",
    access: READ,
    summary: "Revisions of a user's sealed profiles (never their contents)",
    tag: "users",
    params: UserIdParam,
    ok: { status: 200, schema: ProfilesSchema },
  }, (c, { params }) => c.json(profiles(user(params.userId).id) as never, 200));

  r.add({
    method: "post",
    path: "/api/profiles/{userId}/reseal",
    access: WRITE,
    summary: "Regenerate and reseal the profiles of a user's devices",
    tag: "users",
    params: UserIdParam,
    ok: { status: 200, schema: ProfilesSchema },
  }, async (c, { params }) => {
    const u = user(params.userId);
    await need("profile resealing").reprovision(u.id);
    return c.json(profiles(u.id) as never, 200);
  });

  r.add({
    method: "post",
    path: "/api/profiles/reseal",
    access: WRITE,
    summary:
      "Reseal many profiles (all users', or one user's) as an operation; follow GET /api/operations/{id}",
    tag: "users",
    body: ResealAllSchema,
    ok: { status: 202, schema: OperationStartedSchema },
  }, (c, { body }) => {
    const port = need("profile resealing");
    if (!ops) throw notImplemented("operations");
    const userId = body.user_id === undefined ? undefined : user(body.user_id).id;
    const op = startReseal(ops, port, { userId, actor: c.get("principal")!.actor });
    return c.json({ operation_id: op.id }, 202);
  });

  r.add({
    method: "get",
    path: "/api/tickets",
    access: READ,
    summary: "List enrollment tickets (never their tokens)",
    tag: "users",
    ok: { status: 200, schema: RowListSchema },
  }, (c) =>
    c.json({
      items: rows(
        "SELECT id, user_id, created_by, created_at, expires_at, used_at, device_id, updated_at, version FROM enrollment_tickets ORDER BY created_at DESC",
      ),
    }, 200));

  r.add({
    method: "post",
    path: "/api/tickets",
    access: WRITE,
    summary: "Create an enrollment ticket: join link and QR code (shown now only)",
    tag: "users",
    body: NewTicketSchema,
    ok: { status: 201, schema: CreatedTicketSchema },
  }, (c, { body }) => {
    const t = need("enrollment tickets").createTicket(body.email, {
      actor: c.get("principal")!.actor,
      ttlMs: body.ttl_minutes ? body.ttl_minutes * 60_000 : undefined,
      unbound: body.unbound,
    });
    const now = clock().getTime();
    for (const [id, l] of links) if (l.until <= now || links.size >= MAX_LINKS) links.delete(id);
    links.set(t.ticketId, { url: t.url, until: t.expiresAt.getTime() });
    return c.json({
      id: t.ticketId,
      user_id: t.userId,
      url: t.url,
      expires_at: t.expiresAt.toISOString(),
      qr_svg: renderSVG(t.url),
    }, 201);
  });

  const link = (id: string): string => {
    const l = links.get(id);
    if (!l || l.until <= clock().getTime()) {
      throw new ApiError(
        404,
        "not-found",
        "no open ticket link with this id here: a link is shown only while its ticket is open, in the controller run that made it",
      );
    }
    return l.url;
  };

  r.add({
    method: "get",
    path: "/api/tickets/{id}/qr.svg",
    access: WRITE,
    summary: "The join link of a ticket just created, as an SVG QR code",
    tag: "users",
    params: IdParam,
    ok: { status: 200, contentType: "image/svg+xml" },
  }, (_c, { params }) =>
    new Response(renderSVG(link(params.id)), {
      headers: { "content-type": "image/svg+xml", "cache-control": "no-store" },
    }));

  r.add(
    {
      method: "get",
      path: "/api/tickets/{id}/qr.png",
      access: WRITE,
      summary: "The join link of a ticket just created, as a PNG QR code",
      tag: "users",
      params: IdParam,
      ok: { status: 200, contentType: "image/png" },
    },
    async (_c, { params }) =>
      new Response(await qrPng(link(params.id)) as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": "image/png", "cache-control": "no-store" },
      }),
  );

  r.add({
    method: "get",
    path: "/api/sessions",
    access: READ,
    summary: "Account sessions of devices",
    tag: "monitoring",
    ok: { status: 200, schema: RowListSchema },
  }, (c) =>
    c.json({
      items: rows(
        "SELECT id, user_id, device_id, method, created_at, expires_at, updated_at, version FROM sessions ORDER BY created_at DESC LIMIT 1000",
      ),
    }, 200));

  r.add({
    method: "get",
    path: "/api/alerts",
    access: READ,
    summary: "Alerts, open ones first",
    tag: "monitoring",
    ok: { status: 200, schema: RowListSchema },
  }, (c) =>
    c.json({
      items: rows(
        "SELECT * FROM alerts ORDER BY resolved_at IS NOT NULL, opened_at DESC LIMIT 1000",
      ),
    }, 200));
}
