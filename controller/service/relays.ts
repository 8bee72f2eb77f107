/**
 * Remote relays (table `relays`): one row per public host, recorded when
 * `cox relay sign` issues its certificate. `kind` is `original` for an
 * original Go relay (it takes no policy; the tunnel learns it from ALPN).
 */
import { RevocationList } from "../../core/pki/mod.ts";
import { type Db, statement } from "../db/sqlite.ts";
import { ServiceError } from "./errors.ts";
import { OnboardingRecord } from "./onboarding_record.ts";
import type { Actor, Service } from "./service.ts";
import { hostField } from "./validate.ts";

export type RelayKind = "pharos" | "original";
export type RelayStatus = "pending" | "up" | "down" | "revoked";
/** Where SSH onboarding stands; null when the relay was never onboarded over SSH. */
export type RelayOnboardingState = "onboarding" | "failed" | "done";

export interface Relay {
  id: string;
  host: string;
  tunnelPort: number;
  certSerial: string | null;
  kind: RelayKind;
  status: RelayStatus;
  sshUser: string | null;
  sshPort: number | null;
  sshHostKey: string | null;
  /** Names/IPs in the certificate issued at onboarding. */
  certHosts: string[];
  certPem: string | null;
  onboarding: RelayOnboardingState | null;
  onboardingStep: string | null;
  onboardingError: string | null;
  onboardedAt: Date | null;
  createdAt: Date;
  version: number;
  updatedAt: Date;
}

interface Row {
  id: string;
  host: string;
  tunnel_port: number;
  cert_serial: string | null;
  kind: RelayKind;
  status: RelayStatus;
  ssh_user: string | null;
  ssh_port: number | null;
  ssh_host_key: string | null;
  cert_hosts: string | null;
  cert_pem: string | null;
  onboarding: RelayOnboardingState | null;
  onboarding_step: string | null;
  onboarding_error: string | null;
  onboarded_at: string | null;
  created_at: string;
  version: number;
  updated_at: string;
}

function fromRow(r: Row): Relay {
  return {
    id: r.id,
    host: r.host,
    tunnelPort: r.tunnel_port,
    certSerial: r.cert_serial,
    kind: r.kind,
    status: r.status,
    sshUser: r.ssh_user ?? null,
    sshPort: r.ssh_port ?? null,
    sshHostKey: r.ssh_host_key ?? null,
    certHosts: r.cert_hosts ? JSON.parse(r.cert_hosts) : [],
    certPem: r.cert_pem ?? null,
    onboarding: r.onboarding ?? null,
    onboardingStep: r.onboarding_step ?? null,
    onboardingError: r.onboarding_error ?? null,
    onboardedAt: r.onboarded_at ? new Date(r.onboarded_at) : null,
    createdAt: new Date(r.created_at),
    version: r.version,
    updatedAt: new Date(r.updated_at),
  };
}

/** Where the controller dials a relay's reverse tunnel. */
export interface RelayTunnelTarget {
  id: string;
  host: string;
  port: number;
  kind: RelayKind;
  /** `host:port` (IPv6 bracketed), as `--relay-tunnels` takes it. */
  target: string;
}

/**
 * The relays the running controller should hold a tunnel to: every relay
 * with a certificate, except one whose first SSH onboarding has not
 * finished (a later re-run that fails does not drop it). Revoked relays
 * stay listed: the tunnel client decides (it dials them slowly and refuses
 * them until they present a new certificate). Cheap enough to poll.
 */
export function relayTunnelTargets(db: Db): RelayTunnelTarget[] {
  const rows = statement(
    db,
    `SELECT id, host, tunnel_port, kind FROM relays
     WHERE cert_serial IS NOT NULL AND (onboarding IS NULL OR onboarded_at IS NOT NULL)
     ORDER BY host`,
  ).all() as unknown as { id: string; host: string; tunnel_port: number; kind: RelayKind }[];
  return rows.map((r) => ({
    id: r.id,
    host: r.host,
    port: r.tunnel_port,
    kind: r.kind,
    target: r.host.includes(":") ? `[${r.host}]:${r.tunnel_port}` : `${r.host}:${r.tunnel_port}`,
  }));
}

export interface OnboardRelay {
  host: string;
  sshPort: number;
  sshUser: string;
  /** Where the relay's tunnel listener is reached (default 8444). */
  tunnelPort?: number;
}

function current(row: unknown, id: string): Relay {
  if (row === undefined) throw new ServiceError("not-found", `relay ${id} was removed meanwhile`);
  return fromRow(row as Row);
}

export class Relays {
  private readonly record: OnboardingRecord<Relay>;

  constructor(private readonly service: Service) {
    this.record = new OnboardingRecord(service, "relay", current, (r) => `relay ${r.host}`);
  }

  private get db(): Db {
    return this.service.db;
  }

  list(): Relay[] {
    return (statement(this.db, "SELECT * FROM relays ORDER BY host").all() as unknown as Row[])
      .map(fromRow);
  }

  byHost(host: string): Relay | undefined {
    const row = statement(this.db, "SELECT * FROM relays WHERE host = ?").get(host.toLowerCase()) as
      | Row
      | undefined;
    return row ? fromRow(row) : undefined;
  }

  require(id: string): Relay {
    const row = statement(this.db, "SELECT * FROM relays WHERE id = ?").get(id) as Row | undefined;
    if (!row) throw new ServiceError("not-found", `no relay ${id}; "cox relays list" shows them`);
    return fromRow(row);
  }

  /**
   * Starts (or resumes) SSH onboarding of the relay at `host` (one row per
   * host). A finished one keeps its SSH user and port (a different one is
   * refused); otherwise they are updated, and a new port drops the pin.
   */
  beginOnboarding(actor: Actor, input: OnboardRelay): Relay {
    const host = hostField(input.host, "relay host");
    if (!Number.isInteger(input.sshPort) || input.sshPort < 1 || input.sshPort > 65535) {
      throw new ServiceError("invalid", `SSH port ${input.sshPort}: use 1-65535`);
    }
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(input.sshUser)) {
      throw new ServiceError(
        "invalid",
        `SSH user "${input.sshUser.slice(0, 40)}" is not a user name`,
      );
    }
    const tunnelPort = input.tunnelPort;
    if (
      tunnelPort !== undefined &&
      (!Number.isInteger(tunnelPort) || tunnelPort < 1 || tunnelPort > 65535)
    ) {
      throw new ServiceError("invalid", `tunnel port ${tunnelPort}: use 1-65535`);
    }
    const existing = this.byHost(host);
    const id = existing?.id ?? crypto.randomUUID();
    if (
      existing?.onboarding === "done" &&
      (existing.sshUser !== input.sshUser || existing.sshPort !== input.sshPort)
    ) {
      throw new ServiceError(
        "exists",
        `relay ${host} was onboarded as ${existing.sshUser}@${host}:${existing.sshPort}; ` +
          "use the same user and port to update it",
      );
    }
    this.service.mutate(
      {
        actor,
        action: existing ? "relay.onboard" : "relay.create",
        target: { type: "relay", id },
        expectVersion: existing?.version ?? 0,
      },
      (tx) => {
        if (!existing) {
          tx.insert({
            host,
            ssh_user: input.sshUser,
            ssh_port: input.sshPort,
            tunnel_port: tunnelPort ?? 8444,
            onboarding: "onboarding",
            created_at: tx.now,
          });
          return;
        }
        const cur = current(tx.current, id);
        const changes: Record<string, string | number | null> = {};
        if (cur.onboarding !== "onboarding") changes.onboarding = "onboarding";
        if (cur.sshUser !== input.sshUser) changes.ssh_user = input.sshUser;
        if (cur.sshPort !== input.sshPort) {
          changes.ssh_port = input.sshPort;
          if (cur.sshHostKey !== null) changes.ssh_host_key = null;
        }
        if (tunnelPort !== undefined && cur.tunnelPort !== tunnelPort) {
          changes.tunnel_port = tunnelPort;
        }
        if (Object.keys(changes).length > 0) tx.update(changes);
      },
    );
    return this.require(id);
  }

  pinHostKey(actor: Actor, id: string, line: string): Relay {
    this.record.pinHostKey(actor, id, line);
    return this.require(id);
  }

  /** The certificate issued at onboarding; a different earlier one is revoked with it. */
  certifiedOnboarding(
    actor: Actor,
    id: string,
    cert: { serial: string; pem: string; hosts: string[]; notAfter?: Date },
  ): Relay {
    const s = RevocationList.normalize(cert.serial);
    this.record.certify(
      actor,
      id,
      s,
      { cert_pem: cert.pem, cert_hosts: JSON.stringify(cert.hosts) },
      cert.notAfter,
    );
    return this.require(id);
  }

  onboardingFailed(actor: Actor, id: string, step: string, error: string): Relay {
    this.record.failed(actor, id, step, error);
    return this.require(id);
  }

  onboarded(actor: Actor, id: string, lastStep: string): Relay {
    this.record.onboarded(actor, id, lastStep);
    return this.require(id);
  }

  /**
   * Records the certificate just issued for `host`: a new relay row, or the
   * new serial on the existing one (its old certificate is not revoked).
   */
  certified(actor: Actor, host: string, serial: string): Relay {
    const name = hostField(host, "relay host");
    const s = RevocationList.normalize(serial);
    if (!/^[0-9a-f]{1,40}$/.test(s)) {
      throw new ServiceError("invalid", `"${serial.slice(0, 60)}" is not a certificate serial`);
    }
    const existing = this.byHost(name);
    const id = existing?.id ?? crypto.randomUUID();
    this.service.mutate(
      {
        actor,
        action: existing ? "relay.certify" : "relay.create",
        target: { type: "relay", id },
        expectVersion: existing?.version ?? 0,
      },
      (tx) => {
        if (existing) tx.update({ cert_serial: s });
        else tx.insert({ host: name, cert_serial: s, created_at: tx.now });
      },
    );
    return this.byHost(name)!;
  }
}
