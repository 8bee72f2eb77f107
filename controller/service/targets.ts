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
} as const;

export type TargetType = keyof typeof TARGETS;

export interface Target {
  type: TargetType;
  id: string;
}
