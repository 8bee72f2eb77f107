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
  {
    version: 3,
    name: "devices, revoked certificates, relay policy revision",
    sql: `
      -- Minimal device registry: the controller refuses any call whose relay-injected
      -- x-pharos-device-fp is not an active, unexpired row here. user_id is filled by
      -- the accounts issue.
      CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        user_id TEXT,
        -- "sha256:" + 64 lowercase hex over the leaf's PEM (CONTRACTS 3.2)
        fingerprint TEXT NOT NULL UNIQUE
          CHECK (length(fingerprint) = 71 AND substr(fingerprint, 1, 7) = 'sha256:'
                 AND lower(fingerprint) = fingerprint
                 AND substr(fingerprint, 8) NOT GLOB '*[^0-9a-f]*'),
        -- lowercase hex, no leading zeros (RevocationList form)
        serial TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'revoked')),
        not_after TEXT NOT NULL,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX devices_serial ON devices (serial);
      CREATE INDEX devices_user ON devices (user_id);

      -- Every revoked certificate (device, relay, node, controller): one list, checked by
      -- the controller's gRPC guard and its relay dials and pushed to every relay.
      CREATE TABLE revoked_certificates (
        serial TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('device', 'relay', 'node', 'controller')),
        -- what was revoked, for people: a device id, a relay host, ...
        subject TEXT,
        reason TEXT,
        -- the certificate's own expiry: past it the entry need not be pushed any more
        not_after TEXT,
        revoked_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      -- Single row: the revision of the next relay policy document. Seeded with the
      -- current time in ms, above any revision an earlier controller (which numbered
      -- documents from the wall clock) can have left on a running relay.
      CREATE TABLE relay_policy_revision (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL CHECK (revision >= 0),
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
      INSERT INTO relay_policy_revision (id, revision, updated_at)
        VALUES (1, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
    `,
  },
];
