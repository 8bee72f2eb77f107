/**
 * What a mutation can target: each type names its table and key column.
 * A new kind of row (tickets, tokens, profiles, ...) adds one line here and
 * its service module; the table must have `version` and `updated_at`.
 */
export const TARGETS = {
  setting: { table: "settings", key: "key" },
  user: { table: "users", key: "id" },
  relay: { table: "relays", key: "id" },
  node: { table: "nodes", key: "id" },
  device: { table: "devices", key: "id" },
  certificate: { table: "revoked_certificates", key: "serial" },
  ssh_key: { table: "ssh_keys", key: "name" },
  admin_session: { table: "admin_sessions", key: "id" },
  api_token: { table: "api_tokens", key: "id" },
  admin_totp: { table: "admin_totp", key: "user_id" },
  recovery_code: { table: "admin_recovery_codes", key: "id" },
  login_throttle: { table: "login_throttle", key: "key" },
  setup_token: { table: "admin_setup_tokens", key: "id" },
  ticket: { table: "enrollment_tickets", key: "id" },
  session: { table: "sessions", key: "id" },
  login_attempt: { table: "login_attempts", key: "key" },
  profile_key: { table: "profile_signing_key", key: "name" },
  sealed_profile: { table: "sealed_profiles", key: "device_id" },
  alert: { table: "alerts", key: "id" },
  node_peer: { table: "node_peers", key: "id" },
  path: { table: "paths", key: "id" },
  node_link: { table: "node_links", key: "id" },
  reconcile_heal: { table: "reconcile_heals", key: "id" },
  node_endpoint_confirmation: { table: "node_endpoint_confirmations", key: "node_id" },
} as const;

export type TargetType = keyof typeof TARGETS;

export interface Target {
  type: TargetType;
  id: string;
}
