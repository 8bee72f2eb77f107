/**
 * API tokens for scripts and monitoring (table `api_tokens`). A token is
 * `pht_<id>_<secret>`, shown once at creation; the database keeps the id and
 * SHA-256 of the secret only. Scopes: `readonly` (every read), `monitor`
 * (metrics and the event feed), `admin` (everything). Every request made
 * with a token is an audited write of its row (last use: time, source,
 * route), so the audit log shows each one.
 */
import type { Actor, Service } from "../service/service.ts";
import { ServiceError } from "../service/errors.ts";
import { digest, randomSecret, sameSecret } from "./secrets.ts";

export type Scope = "readonly" | "monitor" | "admin";
export const SCOPES: readonly Scope[] = ["readonly", "monitor", "admin"];

export interface ApiToken {
  id: string;
  name: string;
  scope: Scope;
  createdBy: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  lastUsedFrom: string | null;
  lastUsedRoute: string | null;
  revokedAt: string | null;
  version: number;
  updatedAt: string;
}

interface Row {
  id: string;
  name: string;
  scope: Scope;
  secret_hash: string;
  created_by: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  last_used_from: string | null;
  last_used_route: string | null;
  revoked_at: string | null;
  version: number;
  updated_at: string;
}

export function tokenFromRow(r: Record<string, unknown>): ApiToken {
  const row = r as unknown as Row;
  return {
    id: row.id,
    name: row.name,
    scope: row.scope,
    createdBy: row.created_by,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    lastUsedFrom: row.last_used_from,
    lastUsedRoute: row.last_used_route,
    revokedAt: row.revoked_at,
    version: row.version,
    updatedAt: row.updated_at,
  };
}

const TOKEN = /^pht_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;
const NAME = /^[\p{L}\p{N} ._@+-]{1,64}$/u;

export class ApiTokens {
  constructor(private readonly service: Service, private readonly clock: () => Date) {}

  list(): ApiToken[] {
    return (this.service.db.prepare("SELECT * FROM api_tokens ORDER BY created_at, id")
      .all() as Record<string, unknown>[]).map(tokenFromRow);
  }

  get(id: string): ApiToken | undefined {
    const r = this.service.get({ type: "api_token", id });
    return r ? tokenFromRow(r) : undefined;
  }

  /** Creates a token; the returned `secret` is never available again. */
  create(
    actor: Actor,
    input: { name: string; scope: Scope; expiresAt?: string | null },
  ): { token: ApiToken; secret: string } {
    if (!NAME.test(input.name)) {
      throw new ServiceError("invalid", "a token name has 1-64 letters, digits, spaces or ._@+-");
    }
    if (!SCOPES.includes(input.scope)) {
      throw new ServiceError("invalid", `scope must be one of ${SCOPES.join(", ")}`);
    }
    if (input.expiresAt != null && !(Date.parse(input.expiresAt) > this.clock().getTime())) {
      throw new ServiceError("invalid", "expires_at must be a time in the future");
    }
    const id = crypto.randomUUID().replaceAll("-", "");
    const raw = randomSecret(32);
    this.service.mutate(
      { actor, action: "api_token.create", target: { type: "api_token", id }, expectVersion: 0 },
      (tx) =>
        tx.insert({
          name: input.name,
          scope: input.scope,
          secret_hash: digest(raw),
          created_by: actor,
          created_at: tx.now,
          expires_at: input.expiresAt ? new Date(input.expiresAt).toISOString() : null,
        }),
    );
    return { token: this.get(id)!, secret: `pht_${id}_${raw}` };
  }

  revoke(actor: Actor, id: string, expectVersion?: number): ApiToken {
    this.service.mutate(
      { actor, action: "api_token.revoke", target: { type: "api_token", id }, expectVersion },
      (tx) => {
        if (!tx.current) throw new ServiceError("not-found", `no API token ${id}`);
        if (tx.current.revoked_at === null) tx.update({ revoked_at: tx.now });
      },
    );
    return this.get(id)!;
  }

  /**
   * The live token a bearer string names, or undefined (unknown, wrong
   * secret, revoked, expired). Does not record the use (see `used`).
   */
  verify(bearer: string): ApiToken | undefined {
    const m = TOKEN.exec(bearer);
    if (!m) return undefined;
    const row = this.service.get({ type: "api_token", id: m[1] }) as Row | undefined;
    if (!row || !sameSecret(row.secret_hash, digest(m[2]))) return undefined;
    if (row.revoked_at !== null) return undefined;
    if (row.expires_at !== null && Date.parse(row.expires_at) <= this.clock().getTime()) {
      return undefined;
    }
    return tokenFromRow(row as unknown as Record<string, unknown>);
  }

  /** Records (and so audits) one request made with the token. */
  used(token: ApiToken, source: string, route: string): void {
    this.service.mutate(
      {
        actor: `api:token:${token.id}`,
        action: "api_token.use",
        target: { type: "api_token", id: token.id },
      },
      (tx) =>
        tx.update({
          last_used_at: tx.now,
          last_used_from: source.slice(0, 64),
          last_used_route: route.slice(0, 200),
        }),
    );
  }
}
