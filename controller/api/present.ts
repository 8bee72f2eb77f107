/** Service-layer objects as the API's JSON (snake_case, ISO times). */
import type { Node } from "../service/nodes.ts";
import type { Relay } from "../service/relays.ts";
import type { Setting } from "../service/settings.ts";
import type { User } from "../service/users.ts";
import type { ApiToken } from "./tokens.ts";
import type { AwgObfuscation } from "../../core/dataplane/obfuscation.ts";
import type { ObservedNodeJson } from "./fleet_view.ts";
import { redactUrl } from "../geoip/download.ts";
import type { PortRangeForward } from "../../core/dataplane/mod.ts";
import { clipToConfirmed } from "../reconcile/endpoint_confirmations.ts";

const iso = (d: Date | null) => d === null ? null : d.toISOString();

export function nodeJson(n: Node) {
  return {
    id: n.id,
    name: n.name,
    host: n.host,
    ssh_port: n.sshPort,
    ssh_user: n.sshUser,
    ssh_host_key: n.sshHostKey,
    control_port: n.controlPort,
    region: n.region,
    via_relay: n.viaRelay,
    status: n.status,
    forwarding: n.forwarding,
    masquerade: n.masquerade,
    isolation: n.isolation,
    cert_serial: n.certSerial,
    desired_revision: n.desiredRevision,
    applied_revision: n.appliedRevision,
    onboarding: n.onboarding,
    onboarding_step: n.onboardingStep,
    onboarding_error: n.onboardingError,
    onboarded_at: iso(n.onboardedAt),
    created_at: n.createdAt.toISOString(),
    updated_at: n.updatedAt.toISOString(),
    version: n.version,
  };
}

/** One node with its endpoints, obfuscation parameters and observed state (never a key). */
/**
 * A node with its observed state and, from its agent's last confirmation
 * (null: none yet), the part of its endpoint pool that profiles advertise.
 */
export function nodeDetailJson(
  n: Node,
  observed: ObservedNodeJson | null,
  confirmation: { ranges: PortRangeForward[]; confirmedAt: string } | null = null,
) {
  const o = n.obfuscation;
  const obfuscation: Record<string, number | string> = {
    jc: o.jc,
    jmin: o.jmin,
    jmax: o.jmax,
    s1: o.s1,
    s2: o.s2,
    s3: o.s3,
    s4: o.s4,
    h1: o.h1,
    h2: o.h2,
    h3: o.h3,
    h4: o.h4,
  };
  for (const k of ["i1", "i2", "i3", "i4", "i5"] as const) if (o[k]) obfuscation[k] = o[k]!;
  return {
    ...nodeJson(n),
    endpoints: rangesOut(n.endpoints ?? []),
    endpoints_advertised: rangesOut(
      confirmation ? clipToConfirmed(n.endpoints ?? [], confirmation.ranges) : [],
    ),
    endpoints_confirmed_at: confirmation?.confirmedAt ?? null,
    obfuscation: obfuscation as unknown as AwgObfuscation,
    observed,
  };
}

function rangesOut(ranges: readonly PortRangeForward[]) {
  return ranges.map((e) => ({ ip: e.ip, port_min: e.portMin, port_max: e.portMax }));
}

export function userJson(u: User) {
  return {
    id: u.id,
    email: u.email,
    role: u.role,
    status: u.status,
    has_password: u.hasPassword,
    created_at: u.createdAt.toISOString(),
    updated_at: u.updatedAt.toISOString(),
    version: u.version,
  };
}

export function relayJson(r: Relay) {
  return {
    id: r.id,
    host: r.host,
    tunnel_port: r.tunnelPort,
    kind: r.kind,
    status: r.status,
    cert_serial: r.certSerial,
    onboarding: r.onboarding,
    created_at: r.createdAt.toISOString(),
    updated_at: r.updatedAt.toISOString(),
    version: r.version,
  };
}

export function tokenJson(t: ApiToken) {
  return {
    id: t.id,
    name: t.name,
    scope: t.scope,
    created_by: t.createdBy,
    created_at: t.createdAt,
    expires_at: t.expiresAt,
    last_used_at: t.lastUsedAt,
    last_used_from: t.lastUsedFrom,
    last_used_route: t.lastUsedRoute,
    revoked_at: t.revokedAt,
    updated_at: t.updatedAt,
    version: t.version,
  };
}

export function settingJson(s: Setting) {
  // The GeoIP URL may carry a licence key (MaxMind): it is written, never read back whole.
  const value = s.key === "geoip.url" && typeof s.value === "string" && s.value !== ""
    ? redactUrl(s.value)
    : s.value;
  return { key: s.key, value, version: s.version, updated_at: iso(s.updatedAt) };
}
