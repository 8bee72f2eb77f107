/**
 * Remote relays (table `relays`): one row per public host, recorded when
 * `cox relay sign` issues its certificate. `kind` is `original` for an
 * original Go relay (it takes no policy; the tunnel learns it from ALPN).
 */
import { RevocationList } from "../../core/pki/mod.ts";
import type { Db } from "../db/sqlite.ts";
import { ServiceError } from "./errors.ts";
import type { Actor, Service } from "./service.ts";
import { hostField } from "./validate.ts";

export type RelayKind = "pharos" | "original";
export type RelayStatus = "pending" | "up" | "down" | "revoked";

export interface Relay {
  id: string;
  host: string;
  tunnelPort: number;
  certSerial: string | null;
  kind: RelayKind;
  status: RelayStatus;
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
    createdAt: new Date(r.created_at),
    version: r.version,
    updatedAt: new Date(r.updated_at),
  };
}

export class Relays {
  constructor(private readonly service: Service) {}

  private get db(): Db {
    return this.service.db;
  }

  list(): Relay[] {
    return (this.db.prepare("SELECT * FROM relays ORDER BY host").all() as unknown as Row[])
      .map(fromRow);
  }

  byHost(host: string): Relay | undefined {
    const row = this.db.prepare("SELECT * FROM relays WHERE host = ?").get(host.toLowerCase()) as
      | Row
      | undefined;
    return row ? fromRow(row) : undefined;
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
