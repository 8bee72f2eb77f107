/**
 * Schema migrations, applied in order and recorded in schema_migrations.
 * Append new entries; never edit an applied one. Every mutable row carries
 * `version` (optimistic concurrency) and `updated_at`.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: "certificate authority",
    sql: `
      CREATE TABLE ca (
        name TEXT PRIMARY KEY CHECK (name IN ('root', 'fleet', 'device')),
        cert_pem TEXT NOT NULL,
        -- PKCS#8 private key sealed with the state directory's key (see keystore.ts)
        key_sealed BLOB NOT NULL,
        fingerprint TEXT NOT NULL,
        not_after TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: "controller service certificates",
    sql: `
      CREATE TABLE service_certs (
        name TEXT PRIMARY KEY CHECK (name IN ('controller-client', 'controller-server', 'embedded-relay')),
        cert_pem TEXT NOT NULL,
        -- PKCS#8 private key sealed with the state directory's key
        key_sealed BLOB NOT NULL,
        serial TEXT NOT NULL,
        not_after TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
    `,
  },
];
