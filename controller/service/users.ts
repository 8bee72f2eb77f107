/**
 * Users (table `users`): principals with a role. E-mail addresses are
 * unique whatever their case (`email_key`: NFC, trimmed, lower case). The
 * password hash and the account keypair columns stay empty until the
 * accounts work fills them. Under a preset with `admins.multiple` false
 * (personal) there is at most one admin.
 */
import { type Db, statement } from "../db/sqlite.ts";
import { ServiceError } from "./errors.ts";
import type { Actor, Service } from "./service.ts";
import { Settings } from "./settings.ts";

export type UserRole = "user" | "admin";
export type UserStatus = "active" | "disabled";

export interface User {
  id: string;
  email: string;
  role: UserRole;
  status: UserStatus;
  hasPassword: boolean;
  createdAt: Date;
  version: number;
  updatedAt: Date;
}

interface Row {
  id: string;
  email: string;
  role: UserRole;
  status: UserStatus;
  password_hash: string | null;
  created_at: string;
  version: number;
  updated_at: string;
}

const MAX_EMAIL = 254;
// deno-lint-ignore no-control-regex
const EMAIL = /^[^\s@\x00-\x1f\x7f]{1,64}@[^\s@\x00-\x1f\x7f]{1,253}$/;

function fromRow(r: Row): User {
  return {
    id: r.id,
    email: r.email,
    role: r.role,
    status: r.status,
    hasPassword: r.password_hash !== null,
    createdAt: new Date(r.created_at),
    version: r.version,
    updatedAt: new Date(r.updated_at),
  };
}

/** The address as stored (NFC, trimmed) and its unique key; throws `invalid`. */
export function normalizeEmail(email: string): { email: string; key: string } {
  const e = email.normalize("NFC").trim();
  const domain = e.slice(e.lastIndexOf("@") + 1);
  if (e.length > MAX_EMAIL || !EMAIL.test(e) || !domain.includes(".") || domain.endsWith(".")) {
    throw new ServiceError(
      "invalid",
      `"${email.slice(0, 80)}" is not an e-mail address (name@example.com)`,
    );
  }
  return { email: e, key: e.toLowerCase() };
}

export class Users {
  constructor(private readonly service: Service) {}

  private get db(): Db {
    return this.service.db;
  }

  list(): User[] {
    return (statement(this.db, "SELECT * FROM users ORDER BY email_key").all() as unknown as Row[])
      .map(fromRow);
  }

  /** By id or e-mail (any case). */
  find(ref: string): User | undefined {
    const row = statement(this.db, "SELECT * FROM users WHERE id = ? OR email_key = ?")
      .get(ref, ref.normalize("NFC").trim().toLowerCase()) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  add(actor: Actor, input: { email: string; role?: UserRole }): User {
    const { email, key } = normalizeEmail(input.email);
    const role = input.role ?? "user";
    const id = crypto.randomUUID();
    this.service.mutate(
      { actor, action: "user.create", target: { type: "user", id }, expectVersion: 0 },
      (tx) => {
        const same = statement(tx.db, "SELECT email FROM users WHERE email_key = ?").get(key) as
          | { email: string }
          | undefined;
        if (same) {
          throw new ServiceError(
            "exists",
            `user ${same.email} exists already (e-mail addresses ignore case)`,
          );
        }
        if (role === "admin" && !new Settings(this.service).get("admins.multiple")) {
          const admin = statement(tx.db, "SELECT email FROM users WHERE role = 'admin'").get() as
            | { email: string }
            | undefined;
          if (admin) {
            throw new ServiceError(
              "one-admin",
              `the personal preset allows one admin and ${admin.email} is it; apply the enterprise preset ("cox settings preset enterprise") for more`,
            );
          }
        }
        tx.insert({ email, email_key: key, role, status: "active", created_at: tx.now });
      },
    );
    return this.find(id)!;
  }
}
