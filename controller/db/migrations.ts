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
  {
    version: 6,
    name: "fleet driver: alerts, node health, relay egress port",
    sql: `
      -- Conditions an operator should see (a node unreachable, ...): opened by the
      -- controller, resolved (resolved_at set) when the condition ends; never deleted.
      CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        message TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        resolved_at TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
      -- At most one open alert of a kind per target.
      CREATE UNIQUE INDEX alerts_open ON alerts (kind, target_type, target_id)
        WHERE resolved_at IS NULL;
      CREATE INDEX alerts_target ON alerts (target_type, target_id);

      -- What the fleet driver last observed on a node (GetStatus): when it last
      -- answered, its agent version and the config revision it reports applied.
      ALTER TABLE nodes ADD COLUMN last_seen_at TEXT;
      ALTER TABLE nodes ADD COLUMN agent_version TEXT;
      ALTER TABLE nodes ADD COLUMN observed_revision INTEGER;

      -- The relay's control-plane egress port (CONTRACTS 3.5); NULL = the relay's default, 8456.
      ALTER TABLE relays ADD COLUMN egress_port INTEGER
        CHECK (egress_port IS NULL OR egress_port BETWEEN 1 AND 65535);
    `,
  },
  {
    version: 7,
    name: "desired state for reconcile: node peers, paths, inner-link allocations, heal records",
    sql: `
      -- Node-to-node paths (cascade, CONTRACTS 5.6): traffic of the devices bound to a
      -- path enters at entry_node_id and leaves at exit_node_id.
      CREATE TABLE paths (
        id TEXT PRIMARY KEY,
        entry_node_id TEXT NOT NULL REFERENCES nodes (id),
        exit_node_id TEXT NOT NULL REFERENCES nodes (id),
        -- NULL = the inner-link default (1340)
        mtu INTEGER CHECK (mtu IS NULL OR mtu BETWEEN 1280 AND 9000),
        status TEXT,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL,
        CHECK (entry_node_id <> exit_node_id)
      );
      CREATE INDEX paths_entry ON paths (entry_node_id);
      CREATE INDEX paths_exit ON paths (exit_node_id);

      -- The peers each node must serve: what reconcile pushes (AddPeer/RemovePeer/PushConfig).
      CREATE TABLE node_peers (
        id TEXT PRIMARY KEY,
        node_id TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
        device_id TEXT REFERENCES devices (id) ON DELETE CASCADE,
        -- AmneziaWG: the WireGuard public key (base64); Xray: the VLESS UUID
        public_key TEXT NOT NULL,
        -- the preshared key sealed with secret.key, label "node_peer:<id>"
        -- (controller/reconcile/psk.ts); NULL = none
        psk_sealed BLOB,
        -- JSON list of CIDRs
        allowed_ips TEXT NOT NULL DEFAULT '[]',
        protocol TEXT NOT NULL DEFAULT 'awg' CHECK (protocol IN ('awg', 'xray')),
        -- the path this device's traffic takes from this (entry) node; NULL = exits here
        path_id TEXT REFERENCES paths (id) ON DELETE SET NULL,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL,
        UNIQUE (node_id, public_key)
      );
      CREATE INDEX node_peers_device ON node_peers (device_id);
      CREATE INDEX node_peers_path ON node_peers (path_id);

      -- One inner link per (entry, exit) edge used by any path, allocated by reconcile:
      -- slot index on the entry (interface awg<i+1>, port 51820+i, mark = table = 7100+i),
      -- the link's preshared key (sealed, label "node_link:<id>") and the revision of its
      -- ConfigureInnerLink. exit_node_id has no foreign key: the row outlives a removed
      -- exit until reconcile has taken the link down on the entry.
      CREATE TABLE node_links (
        id TEXT PRIMARY KEY,
        entry_node_id TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
        exit_node_id TEXT NOT NULL,
        link_index INTEGER NOT NULL CHECK (link_index BETWEEN 0 AND 998),
        psk_sealed BLOB NOT NULL,
        revision INTEGER NOT NULL DEFAULT 1 CHECK (revision >= 1),
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL,
        UNIQUE (entry_node_id, exit_node_id),
        UNIQUE (entry_node_id, link_index)
      );

      -- What reconcile healed on a node in one sweep (JSON list of actions); each row is
      -- written through the service layer, so each heal is one audit entry. node_id has
      -- no foreign key: the record outlives the node.
      CREATE TABLE reconcile_heals (
        id TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        sweep INTEGER NOT NULL,
        actions TEXT NOT NULL,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX reconcile_heals_node ON reconcile_heals (node_id, created_at);
    `,
  },
  {
    version: 8,
    name: "accounts: user-bound devices, tickets, sessions, login limits, sealed profiles",
    sql: `
      -- What a device enrolled with a join link brings (controller/accounts). Its X25519
      -- key receives its sealed profile; its WireGuard key is its own (only the public
      -- part known) or, for a client that cannot make one, generated here and kept only
      -- sealed with secret.key (wg_private_sealed). tunnel_ip: its /32 on every node.
      ALTER TABLE devices ADD COLUMN name TEXT;
      ALTER TABLE devices ADD COLUMN platform TEXT;
      ALTER TABLE devices ADD COLUMN encryption_public_key BLOB
        CHECK (encryption_public_key IS NULL OR length(encryption_public_key) = 32);
      ALTER TABLE devices ADD COLUMN wg_public_key TEXT;
      ALTER TABLE devices ADD COLUMN wg_private_sealed BLOB;
      ALTER TABLE devices ADD COLUMN tunnel_ip TEXT;
      CREATE UNIQUE INDEX devices_tunnel_ip ON devices (tunnel_ip) WHERE tunnel_ip IS NOT NULL;

      -- The node's AmneziaWG public key as its GetStatus reports it; a profile lists a
      -- node once this is known (controller/accounts nodeKeyObserved).
      ALTER TABLE nodes ADD COLUMN awg_public_key TEXT;

      -- One-time enrollment tickets; only the SHA-256 (hex) of the token is kept.
      CREATE TABLE enrollment_tickets (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        -- set once, by the one claim that wins (UPDATE ... WHERE used_at IS NULL)
        used_at TEXT,
        device_id TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX enrollment_tickets_user ON enrollment_tickets (user_id);

      -- Session tokens (SHA-256 hex only), each bound to the device it was issued to.
      CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        -- 'password' (Authenticate with e-mail) or 'device' (certificate login)
        method TEXT NOT NULL CHECK (method IN ('password', 'device')),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX sessions_device ON sessions (device_id);

      -- Failed logins per key ("account:<email key>" or "source:<fingerprint|address>").
      CREATE TABLE login_attempts (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL CHECK (failures >= 0),
        locked_until TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      -- The profile-signing Ed25519 key: the seed sealed with secret.key like the CA keys.
      CREATE TABLE profile_signing_key (
        name TEXT PRIMARY KEY CHECK (name = 'profile'),
        public_key BLOB NOT NULL CHECK (length(public_key) = 32),
        key_sealed BLOB NOT NULL,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      -- The latest sealed profile per device (ciphertext only; the plaintext is never stored).
      CREATE TABLE sealed_profiles (
        device_id TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        revision INTEGER NOT NULL CHECK (revision >= 1),
        ciphertext BLOB NOT NULL,
        expires_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
    `,
  },
  {
    version: 9,
    name: "admin API: sessions, API tokens, TOTP, recovery codes, login throttle, setup tokens",
    sql: `
      -- Dashboard sessions of admins (users with role admin). The cookie holds
      -- "<id>.<secret>"; only SHA-256(secret) is stored. stage 'totp': password
      -- accepted, second factor still due. Idle expiry: last_seen_at + idle; absolute:
      -- expires_at. Revoked rows stay (revoked_at) so "logout everywhere" is visible.
      CREATE TABLE admin_sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        secret_hash TEXT NOT NULL UNIQUE,
        stage TEXT NOT NULL CHECK (stage IN ('totp', 'full')),
        source TEXT,
        user_agent TEXT,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX admin_sessions_user ON admin_sessions (user_id);

      -- API tokens "pht_<id>_<secret>": only SHA-256(secret) is stored.
      CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('readonly', 'monitor', 'admin')),
        secret_hash TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        last_used_at TEXT,
        last_used_from TEXT,
        -- "METHOD /path" of the last request: every request is an audited write of this row
        last_used_route TEXT,
        revoked_at TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      -- TOTP (RFC 6238) secret of an admin, sealed with secret.key (label "totp:<user>").
      -- confirmed_at NULL: enrolment started, not yet proven with a code. last_step:
      -- the last time step accepted, so a code is never accepted twice.
      CREATE TABLE admin_totp (
        user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        secret_sealed BLOB NOT NULL,
        confirmed_at TEXT,
        last_step INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      -- One-time recovery codes, shown once at enrolment; SHA-256 of each stored.
      CREATE TABLE admin_recovery_codes (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        used_at TEXT,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX admin_recovery_codes_user ON admin_recovery_codes (user_id);

      -- Failed logins per key ("account:<email key>" or "source:<address>"): back-off
      -- doubles per failure past a free allowance; a success clears the account's row.
      CREATE TABLE login_throttle (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL CHECK (failures >= 0),
        last_failure_at TEXT NOT NULL,
        blocked_until TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );

      -- One-time links that create the first admin (printed at the first start, or by
      -- "cox admins add"). Only SHA-256 of the token is stored.
      CREATE TABLE admin_setup_tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL DEFAULT 'admin' CHECK (role = 'admin'),
        email TEXT,
        expires_at TEXT NOT NULL,
        used_at TEXT,
        created_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
    `,
  },
  {
    version: 10,
    name: "bound enrollment tickets: claim MAC key",
    sql: `
      -- HKDF-derived MAC key of a bound ticket's link secret (CONTRACTS.md §7.3 c;
      -- core/profile/claim_binding.ts); the secret itself is never stored or sent.
      -- NULL: an unbound ticket, claimed with the token alone (original clients).
      ALTER TABLE enrollment_tickets ADD COLUMN claim_mac_key BLOB
        CHECK (claim_mac_key IS NULL OR length(claim_mac_key) = 32);
    `,
  },
  {
    version: 11,
    name: "endpoint ranges each node confirmed",
    sql: `
      -- The endpoint ranges a node last said it DNATs onto its AmneziaWG listener (its
      -- SetNetworkConfigResponse, CONTRACTS.md §5.7), written by reconcile when they
      -- change. Observed state, kept out of the nodes row so that it never moves the
      -- node's version under an operator's edit. Profiles advertise the node's pool
      -- clipped to these ranges; no row: nothing of the pool (controller/reconcile/
      -- endpoint_confirmations.ts).
      CREATE TABLE node_endpoint_confirmations (
        node_id TEXT PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
        -- JSON list of {ip, portMin, portMax}, IPs canonical; '[]': the node serves none
        ranges TEXT NOT NULL DEFAULT '[]',
        -- when the node first answered this list
        confirmed_at TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL
      );
    `,
  },
];
