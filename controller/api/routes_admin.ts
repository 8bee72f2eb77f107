/** Audit log, API tokens and settings. */
import { verifyAudit } from "../audit_verify.ts";
import { ConflictError } from "../service/errors.ts";
import type { Service } from "../service/service.ts";
import { SETTING_KEYS, type SettingKey, Settings } from "../service/settings.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { settingJson, tokenJson } from "./present.ts";
import type { Router } from "./router.ts";
import {
  AuditListSchema,
  AuditQuery,
  AuditVerdictSchema,
  CreatedTokenSchema,
  IdParam,
  NewTokenSchema,
  SettingListSchema,
  SettingPatchSchema,
  SettingSchema,
  TokenListSchema,
  TokenSchema,
} from "./schemas.ts";
import type { ApiTokens } from "./tokens.ts";
import { expectedVersion } from "./versions.ts";

const READ = ["readonly", "admin"] as const;
const WRITE = ["admin"] as const;

export function adminRoutes(r: Router, service: Service, tokens: ApiTokens): void {
  const settings = new Settings(service);

  r.add({
    method: "get",
    path: "/api/audit",
    access: READ,
    summary: "Audit entries after a sequence number, oldest first",
    tag: "audit",
    query: AuditQuery,
    ok: { status: 200, schema: AuditListSchema },
  }, (c, { query }) => {
    const limit = query.limit ?? 100;
    const rows = service.db.prepare(
      "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
    ).all(query.after_seq ?? 0, limit + 1) as Record<string, unknown>[];
    const page = rows.slice(0, limit);
    return c.json({
      items: page,
      next_after_seq: rows.length > limit ? Number(page.at(-1)!.seq) : null,
    } as never, 200);
  });

  r.add({
    method: "post",
    path: "/api/audit/verify",
    access: READ,
    summary: "Check the audit chain from the first entry to the head",
    tag: "audit",
    ok: { status: 200, schema: AuditVerdictSchema },
  }, (c) => {
    const v = verifyAudit(service.db);
    return c.json(v.ok ? { ok: true, entries: v.count, detail: v } : { ok: false, detail: v }, 200);
  });

  r.add({
    method: "get",
    path: "/api/tokens",
    access: WRITE,
    summary: "List API tokens (never their secrets)",
    tag: "tokens",
    ok: { status: 200, schema: TokenListSchema },
  }, (c) => c.json({ items: tokens.list().map(tokenJson) }, 200));

  r.add({
    method: "post",
    path: "/api/tokens",
    access: WRITE,
    summary: "Create an API token; its secret is shown in this answer only",
    tag: "tokens",
    body: NewTokenSchema,
    ok: { status: 201, schema: CreatedTokenSchema },
  }, (c, { body }) => {
    const { token, secret } = tokens.create(c.get("principal")!.actor, {
      name: body.name,
      scope: body.scope,
      expiresAt: body.expires_at ?? null,
    });
    return c.json({ token: tokenJson(token), secret }, 201);
  });

  r.add({
    method: "delete",
    path: "/api/tokens/{id}",
    access: WRITE,
    summary: "Revoke an API token",
    tag: "tokens",
    params: IdParam,
    ok: { status: 200, schema: TokenSchema },
  }, (c, { params }) => {
    if (!tokens.get(params.id)) throw new ApiError(404, "not-found", "no such API token");
    const header = c.req.header("if-match");
    const version = header === undefined ? undefined : expectedVersion(c.req.raw, undefined);
    try {
      return c.json(tokenJson(tokens.revoke(c.get("principal")!.actor, params.id, version)), 200);
    } catch (e) {
      if (e instanceof ConflictError) {
        const now = tokens.get(params.id);
        return errorResponse(e, () => now ? tokenJson(now) : null);
      }
      throw e;
    }
  });

  r.add({
    method: "get",
    path: "/api/settings",
    access: READ,
    summary: "Every setting with its version",
    tag: "settings",
    ok: { status: 200, schema: SettingListSchema },
  }, (c) => c.json({ items: settings.list().map(settingJson) }, 200));

  r.add({
    method: "patch",
    path: "/api/settings",
    access: WRITE,
    summary: "Change one setting (version 0 = never written)",
    tag: "settings",
    body: SettingPatchSchema,
    ok: { status: 200, schema: SettingSchema },
  }, (c, { body }) => {
    if (!(SETTING_KEYS as string[]).includes(body.key)) {
      throw new ApiError(400, "invalid", `no setting ${body.key.slice(0, 64)}`, "key");
    }
    const key = body.key as SettingKey;
    const version = expectedVersion(c.req.raw, body.version);
    const current = () => settingJson(settings.list().find((s) => s.key === key)!);
    try {
      settings.set(c.get("principal")!.actor, key, body.value as never, version);
    } catch (e) {
      if (e instanceof ConflictError) return errorResponse(e, current);
      if (e instanceof ApiError) throw e;
      if ((e as { code?: string }).code === "invalid") {
        throw new ApiError(400, "invalid", (e as Error).message, "value");
      }
      throw e;
    }
    return c.json(current(), 200);
  });
}
