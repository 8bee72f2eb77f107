/**
 * The request and response schemas of the admin API (zod). Routes validate
 * with them and /api/openapi.json is generated from them, so the document
 * cannot drift from what the server does. JSON field names are snake_case.
 */
import { z } from "@hono/zod-openapi";

export const ErrorSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    field: z.string().optional(),
  }),
  current: z.unknown().optional().openapi({
    description: "On 409: the resource as it is now (null when it was removed).",
  }),
}).openapi("Error");

const time = z.string().openapi({ format: "date-time" });
const version = z.number().int().min(1).openapi({ description: "Optimistic-concurrency version" });
/** Version a write was based on (or send If-Match). */
const expectVersion = z.number().int().min(0).optional();

export const UserSchema = z.object({
  id: z.string(),
  email: z.string(),
  role: z.enum(["user", "admin"]),
  status: z.enum(["active", "disabled"]),
  has_password: z.boolean(),
  created_at: time,
  updated_at: time,
  version,
}).openapi("User");

export const UserListSchema = z.object({ items: z.array(UserSchema) }).openapi("UserList");
export const NewUserSchema = z.object({
  email: z.string().max(254),
  role: z.enum(["user", "admin"]).optional(),
}).openapi("NewUser");

export const SessionInfoSchema = z.object({
  totp_required: z.boolean(),
  user: UserSchema.optional(),
  csrf_token: z.string(),
  expires_at: time,
}).openapi("SessionInfo");

export const MeSchema = z.object({
  kind: z.enum(["session", "token"]),
  scope: z.enum(["readonly", "monitor", "admin"]),
  user: UserSchema.nullable(),
  token_id: z.string().nullable(),
  session: z.object({ id: z.string(), created_at: time, expires_at: time, last_seen_at: time })
    .nullable(),
  totp_enabled: z.boolean(),
  recovery_codes_left: z.number().int(),
}).openapi("Me");

export const SetupSchema = z.object({
  token: z.string().min(1).max(200),
  email: z.string().max(254),
  password: z.string().max(1024),
}).openapi("Setup");
export const LoginSchema = z.object({
  email: z.string().max(254),
  password: z.string().max(1024),
}).openapi("Login");
export const CodeSchema = z.object({ code: z.string().min(1).max(64) }).openapi("Code");
export const TotpDisableSchema = z.object({
  password: z.string().max(1024),
  /** A code from the app, or an unused recovery code. */
  code: z.string().min(1).max(64),
}).openapi("TotpDisable");
export const EnrollSchema = z.object({
  otpauth_uri: z.string(),
  qr_svg: z.string(),
  recovery_codes: z.array(z.string()),
}).openapi("TotpEnrollment");
export const OkSchema = z.object({ ok: z.boolean(), revoked: z.number().int().optional() })
  .openapi("Ok");
export const CsrfSchema = z.object({ token: z.string() }).openapi("Csrf");

export const PolicySchema = z.object({
  forwarding: z.boolean(),
  masquerade: z.boolean(),
  isolation: z.boolean(),
});

export const NodeSchema = z.object({
  id: z.string(),
  name: z.string(),
  host: z.string(),
  ssh_port: z.number().int(),
  ssh_user: z.string(),
  ssh_host_key: z.string().nullable(),
  control_port: z.number().int(),
  region: z.string().nullable(),
  via_relay: z.string().nullable(),
  status: z.enum(["pending", "active", "unreachable", "disabled"]),
  forwarding: z.boolean(),
  masquerade: z.boolean(),
  isolation: z.boolean(),
  cert_serial: z.string().nullable(),
  desired_revision: z.number().int(),
  applied_revision: z.number().int(),
  onboarding: z.enum(["onboarding", "failed", "done"]).nullable(),
  onboarding_step: z.string().nullable(),
  onboarding_error: z.string().nullable(),
  onboarded_at: time.nullable(),
  created_at: time,
  updated_at: time,
  version,
}).openapi("Node");

const ObfuscationSchema = z.object({
  jc: z.number().int(),
  jmin: z.number().int(),
  jmax: z.number().int(),
  s1: z.number().int(),
  s2: z.number().int(),
  s3: z.number().int(),
  s4: z.number().int(),
  h1: z.number().int(),
  h2: z.number().int(),
  h3: z.number().int(),
  h4: z.number().int(),
  i1: z.string().optional(),
  i2: z.string().optional(),
  i3: z.string().optional(),
  i4: z.string().optional(),
  i5: z.string().optional(),
}).openapi("AwgObfuscation", { description: "AmneziaWG obfuscation parameters (no keys)" });

const ObservedNodeSchema = z.object({
  health: z.enum(["healthy", "unreachable", "unknown"]),
  missed_polls: z.number().int(),
  last_seen: time.nullable(),
  last_error: z.string().nullable(),
  observed_at: time.nullable(),
  agent_version: z.string().nullable(),
  uptime_seconds: z.number().int().nullable(),
  dataplane: z.object({
    running: z.boolean(),
    kind: z.string().optional(),
    peer_count: z.number().int().optional(),
    detail: z.string().optional(),
  }).nullable(),
  applied_revision: z.number().int().nullable(),
  peers: z.array(z.object({
    public_key: z.string(),
    device_id: z.string().optional(),
    last_handshake: time.nullable(),
    rx_bytes: z.number().int(),
    tx_bytes: z.number().int(),
  })),
  samples: z.array(z.object({ t: time, rx: z.number().int(), tx: z.number().int() })).openapi({
    description: "Traffic totals of all peers (bytes) at each observation, oldest first",
  }),
}).openapi("ObservedNode");

/** GET /api/nodes/{id}: the row plus what the node is seen doing. */
export const NodeDetailSchema = NodeSchema.extend({
  endpoints: z.array(z.object({
    ip: z.string(),
    port_min: z.number().int(),
    port_max: z.number().int(),
  })).openapi({ description: "The node's endpoint pool: public IPs and UDP port ranges as set" }),
  endpoints_advertised: z.array(z.object({
    ip: z.string(),
    port_min: z.number().int(),
    port_max: z.number().int(),
  })).openapi({
    description:
      "What profiles list: the pool clipped to the ranges the node's agent confirmed it DNATs; empty until it confirmed any",
  }),
  endpoints_confirmed_at: time.nullable().openapi({
    description:
      "Since when the node's agent has confirmed its current list of ranges; null: it never answered one",
  }),
  obfuscation: ObfuscationSchema,
  observed: ObservedNodeSchema.nullable().openapi({
    description: "Health (fleet driver) and last observation (reconcile); null until seen",
  }),
}).openapi("NodeDetail");

export const NodeListSchema = z.object({
  items: z.array(NodeSchema),
  next_cursor: z.string().nullable(),
  total: z.number().int(),
}).openapi("NodeList");

export const NodeListQuery = z.object({
  status: z.enum(["pending", "active", "unreachable", "disabled"]).optional(),
  q: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  cursor: z.string().max(400).optional(),
});

export const NodePatchSchema = z.object({
  name: z.string().max(63).optional(),
  region: z.string().max(32).nullable().optional(),
  version: expectVersion,
}).openapi("NodePatch");

export const PolicyPatchSchema = z.object({
  forwarding: z.boolean().optional(),
  masquerade: z.boolean().optional(),
  isolation: z.boolean().optional(),
  version: expectVersion,
}).openapi("PolicyPatch");

export const RulePreviewSchema = z.object({
  pre_up: z.array(z.string()),
  post_up: z.array(z.string()),
  post_down: z.array(z.string()),
  unresolved: z.array(z.string()),
}).openapi("RulePreview");

export const NodePolicyResultSchema = z.object({
  node: NodeSchema,
  rule_preview: RulePreviewSchema,
}).openapi("NodePolicyResult");

const boolText = z.enum(["true", "false"]).transform((v) => v === "true");
export const PreviewQuery = z.object({
  forwarding: boolText.optional(),
  masquerade: boolText.optional(),
  isolation: boolText.optional(),
});

export const OnboardSchema = z.object({
  host: z.string().min(1).max(253),
  name: z.string().max(63).optional(),
  ssh_port: z.number().int().min(1).max(65535).optional(),
  ssh_user: z.string().max(32).optional(),
  region: z.string().max(32).optional(),
  /** The host key fingerprint the operator confirmed ("SHA256:..."). */
  accept_host_key: z.string().max(100).optional(),
}).openapi("OnboardNode");
export const OperationStartedSchema = z.object({ operation_id: z.string() })
  .openapi("OperationStarted");
export const OperationSchema = z.object({
  id: z.string(),
  kind: z.string(),
  status: z.enum(["running", "done", "failed"]),
  error: z.string().nullable(),
  events: z.array(z.record(z.string(), z.unknown())),
  started_at: time,
}).openapi("Operation");

export const RelaySchema = z.object({
  id: z.string(),
  host: z.string(),
  tunnel_port: z.number().int(),
  kind: z.enum(["pharos", "original"]),
  status: z.enum(["pending", "up", "down", "revoked"]),
  cert_serial: z.string().nullable(),
  onboarding: z.enum(["onboarding", "failed", "done"]).nullable(),
  created_at: time,
  updated_at: time,
  version,
}).openapi("Relay");
export const RelayListSchema = z.object({ items: z.array(RelaySchema) }).openapi("RelayList");

export const DeviceSchema = z.object({
  id: z.string(),
  user_id: z.string().nullable(),
  fingerprint: z.string(),
  serial: z.string(),
  status: z.enum(["active", "disabled", "revoked"]),
  not_after: time,
  created_at: time,
  updated_at: time,
  version,
}).openapi("Device");
export const DeviceListSchema = z.object({ items: z.array(DeviceSchema) }).openapi("DeviceList");

export const AuditEntrySchema = z.object({
  seq: z.number().int(),
  time,
  actor: z.string(),
  action: z.string(),
  target_type: z.string(),
  target_id: z.string(),
  before_digest: z.string().nullable(),
  after_digest: z.string().nullable(),
  prev_hash: z.string(),
  hash: z.string(),
}).openapi("AuditEntry");
export const AuditListSchema = z.object({
  items: z.array(AuditEntrySchema),
  next_after_seq: z.number().int().nullable(),
}).openapi("AuditList");
export const AuditQuery = z.object({
  after_seq: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});
export const AuditVerdictSchema = z.object({
  ok: z.boolean(),
  entries: z.number().int().optional(),
  detail: z.unknown(),
}).openapi("AuditVerdict");

export const TokenSchema = z.object({
  id: z.string(),
  name: z.string(),
  scope: z.enum(["readonly", "monitor", "admin"]),
  created_by: z.string(),
  created_at: time,
  expires_at: time.nullable(),
  last_used_at: time.nullable(),
  last_used_from: z.string().nullable(),
  last_used_route: z.string().nullable(),
  revoked_at: time.nullable(),
  updated_at: time,
  version,
}).openapi("ApiToken");
export const TokenListSchema = z.object({ items: z.array(TokenSchema) }).openapi("ApiTokenList");
export const NewTokenSchema = z.object({
  name: z.string().min(1).max(64),
  scope: z.enum(["readonly", "monitor", "admin"]),
  expires_at: time.nullable().optional(),
}).openapi("NewApiToken");
export const CreatedTokenSchema = z.object({
  token: TokenSchema,
  secret: z.string().openapi({ description: "Shown once; send as Authorization: Bearer" }),
}).openapi("CreatedApiToken");

export const SettingSchema = z.object({
  key: z.string(),
  value: z.union([z.string(), z.number(), z.boolean()]),
  version: z.number().int().min(0).openapi({ description: "0: never written (default)" }),
  updated_at: time.nullable(),
}).openapi("Setting");
export const SettingListSchema = z.object({ items: z.array(SettingSchema) })
  .openapi("SettingList");
export const SettingPatchSchema = z.object({
  key: z.string().max(64),
  value: z.union([z.string(), z.number(), z.boolean()]),
  version: expectVersion,
}).openapi("SettingPatch");

export const IdParam = z.object({ id: z.string().min(1).max(256) });
export const UserIdParam = z.object({ userId: z.string().min(1).max(256) });

/** Rows of tables other parts own (alerts, sessions, tickets), secrets left out. */
export const RowListSchema = z.object({ items: z.array(z.record(z.string(), z.unknown())) })
  .openapi("RowList");
export const UserPatchSchema = z.object({
  status: z.enum(["active", "disabled"]).optional(),
  version: expectVersion,
}).openapi("UserPatch");
export const DeviceQuery = z.object({ user_id: z.string().max(256).optional() });
export const ProfilesSchema = z.object({
  user_id: z.string(),
  items: z.array(z.object({
    device_id: z.string(),
    revision: z.number().int(),
    expires_at: time,
    updated_at: time,
    version,
  })),
}).openapi("Profiles");
export const NewTicketSchema = z.object({
  email: z.string().max(254),
  ttl_minutes: z.number().int().min(1).max(7 * 24 * 60).optional(),
  unbound: z.boolean().optional().openapi({
    description: "A link without the claim-binding secret, for the original app (weaker: " +
      "whoever sees the token in transit can claim it); default false",
  }),
}).openapi("NewTicket");
export const CreatedTicketSchema = z.object({
  id: z.string(),
  user_id: z.string(),
  url: z.string().openapi({ description: "The join link (deep link); shown with this answer" }),
  expires_at: time,
  qr_svg: z.string(),
}).openapi("CreatedTicket");

/** A cascade path (entry → exit) with its nodes' names. */
export const PathSchema = z.object({
  id: z.string(),
  entry_node_id: z.string(),
  entry_node_name: z.string().nullable(),
  exit_node_id: z.string(),
  exit_node_name: z.string().nullable(),
  mtu: z.number().int().nullable().openapi({ description: "Inner-link MTU; null = 1340" }),
  status: z.string().nullable(),
  created_at: time,
  version,
  updated_at: time,
}).openapi("Path");
export const PathListSchema = z.object({ items: z.array(PathSchema) }).openapi("PathList");
const pathMtu = z.number().int().min(1280).max(9000);
export const NewPathSchema = z.object({
  entry_node_id: z.string().min(1).max(256).openapi({ description: "Node id or name" }),
  exit_node_id: z.string().min(1).max(256).openapi({ description: "Node id or name" }),
  mtu: pathMtu.nullable().optional(),
}).openapi("NewPath");
export const PathPatchSchema = z.object({
  exit_node_id: z.string().min(1).max(256).optional().openapi({
    description: "Switch the exit (node id or name)",
  }),
  mtu: pathMtu.nullable().optional(),
  version: expectVersion,
}).openapi("PathPatch");
