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
  {
    version: 4,
    name: "service layer: audit log, settings, nodes, relays, users",
    sql: `
      -- Hash-chained audit log, appended to by the service layer only (controller/audit.ts
      -- defines the hash). Rows are never updated or deleted; the triggers stop a stray
      -- statement, the chain and audit_head catch anyone who goes around them.
      CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY CHECK (seq >= 1),
        time TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id TEXT NOT NULL,
        -- SHA-256 (hex) of the target row's canonical JSON before / after; NULL = no row
        before_digest TEXT,
        after_digest TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX audit_log_hash ON audit_log (hash);
      CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
      CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

      -- Single row, updated in the transaction of every append: a log whose last entries
      -- were deleted no longer ends where the head says.
      CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        count INTEGER NOT NULL CHECK (count >= 0),
        last_seq INTEGER NOT NULL CHECK (last_seq >= 0),
        last_hash TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
      INSERT INTO audit_head (id, count, last_seq, last_hash, updated_at)
        VALUES (1, 0, 0, '0000000000000000000000000000000000000000000000000000000000000000',
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

      -- Controller settings (presets, retention, ...): one JSON value per key.
      CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        -- NFC, trimmed, lower-cased e-mail: unique whatever the case typed
        email_key TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
        -- Argon2id PHC string (accounts issue); NULL = no password yet
        password_hash TEXT,
        -- the account keypair: public key, private key wrapped under the passphrase
        public_key BLOB,
        wrapped_private_key TEXT,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      CREATE TABLE relays (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL UNIQUE,
        tunnel_port INTEGER NOT NULL DEFAULT 8444 CHECK (tunnel_port BETWEEN 1 AND 65535),
        -- lowercase hex, no leading zeros; NULL until a certificate is signed
        cert_serial TEXT,
        kind TEXT NOT NULL DEFAULT 'pharos' CHECK (kind IN ('pharos', 'original')),
        status TEXT NOT NULL DEFAULT 'pending'
          CHECK (status IN ('pending', 'up', 'down', 'revoked')),
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        host TEXT NOT NULL,
        ssh_port INTEGER NOT NULL DEFAULT 22 CHECK (ssh_port BETWEEN 1 AND 65535),
        ssh_user TEXT NOT NULL DEFAULT 'root',
        -- the SSH host key pinned on first contact ("ssh-ed25519 AAAA..."); NULL before
        ssh_host_key TEXT,
        control_port INTEGER NOT NULL DEFAULT 8444 CHECK (control_port BETWEEN 1 AND 65535),
        region TEXT,
        -- reached through this relay's control-plane egress; NULL = dialled directly
        via_relay TEXT REFERENCES relays (id),
        status TEXT NOT NULL DEFAULT 'pending'
          CHECK (status IN ('pending', 'active', 'unreachable', 'disabled')),
        forwarding INTEGER NOT NULL DEFAULT 1 CHECK (forwarding IN (0, 1)),
        masquerade INTEGER NOT NULL DEFAULT 1 CHECK (masquerade IN (0, 1)),
        isolation INTEGER NOT NULL DEFAULT 1 CHECK (isolation IN (0, 1)),
        -- JSON: [{"ip": "203.0.113.7", "portMin": 443, "portMax": 443}, ...]
        endpoints TEXT NOT NULL DEFAULT '[]',
        -- JSON AmneziaWG obfuscation set (core/dataplane/obfuscation.ts)
        obfuscation TEXT NOT NULL,
        cert_serial TEXT,
        -- config revision the controller wants on the node / the node reported applied
        desired_revision INTEGER NOT NULL DEFAULT 1 CHECK (desired_revision >= 1),
        applied_revision INTEGER NOT NULL DEFAULT 0 CHECK (applied_revision >= 0),
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL,
        -- masquerade and isolation require forwarding (DESIGN.md §5)
        CHECK (forwarding = 1 OR (masquerade = 0 AND isolation = 0))
      );
    `,
  },
  {
    version: 5,
    name: "SSH onboarding: controller SSH key, onboarding state of nodes and relays",
    sql: `
      -- The controller's own SSH key (only for installing agents and relays). The
      -- private part (the Ed25519 seed) is sealed with secret.key like the CA keys.
      CREATE TABLE ssh_keys (
        name TEXT PRIMARY KEY CHECK (name = 'controller'),
        algorithm TEXT NOT NULL CHECK (algorithm = 'ssh-ed25519'),
        -- "ssh-ed25519 AAAA... comment", as authorized_keys takes it
        public_key TEXT NOT NULL,
        -- "SHA256:..." as ssh-keygen -lf prints it
        fingerprint TEXT NOT NULL,
        key_sealed BLOB NOT NULL,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      -- SSH onboarding (cox nodes add / relays add). onboarding: NULL = never onboarded
      -- over SSH, else where it stands; onboarding_step names the step that failed (or
      -- the last one reached); the issued certificate (PEM) lets a re-run reuse it.
      ALTER TABLE nodes ADD COLUMN onboarding TEXT
        CHECK (onboarding IS NULL OR onboarding IN ('onboarding', 'failed', 'done'));
      ALTER TABLE nodes ADD COLUMN onboarding_step TEXT;
      ALTER TABLE nodes ADD COLUMN onboarding_error TEXT;
      ALTER TABLE nodes ADD COLUMN cert_pem TEXT;
      -- when onboarding first finished (a later re-run that fails does not undo it)
      ALTER TABLE nodes ADD COLUMN onboarded_at TEXT;

      ALTER TABLE relays ADD COLUMN ssh_user TEXT;
      ALTER TABLE relays ADD COLUMN ssh_port INTEGER CHECK (ssh_port IS NULL OR ssh_port BETWEEN 1 AND 65535);
      -- the SSH host key pinned on first contact ("ssh-ed25519 AAAA..."); NULL before
      ALTER TABLE relays ADD COLUMN ssh_host_key TEXT;
      -- JSON list of the names/IPs in the relay certificate
      ALTER TABLE relays ADD COLUMN cert_hosts TEXT;
      ALTER TABLE relays ADD COLUMN cert_pem TEXT;
      ALTER TABLE relays ADD COLUMN onboarding TEXT
        CHECK (onboarding IS NULL OR onboarding IN ('onboarding', 'failed', 'done'));
      ALTER TABLE relays ADD COLUMN onboarding_step TEXT;
      ALTER TABLE relays ADD COLUMN onboarding_error TEXT;
      ALTER TABLE relays ADD COLUMN onboarded_at TEXT;
    `,
  },
];
