/**
 * The controller's device registry (minimal: the accounts work adds users,
 * names and keys). A device is identified on the wire by the fingerprint a
 * relay injects as `x-pharos-device-fp` (`sha256:<hex>` over the leaf's PEM,
 * CONTRACTS.md §3.2). The controller itself decides on every call whether
 * that fingerprint names an active, unexpired device (`check`), so a relay
 * that never heard of a revocation (an original Go relay, one whose policy
 * push failed) cannot let a revoked device through.
 *
 * Every change goes through the service layer (audited, versioned).
 *
 * Statuses: `active`; `disabled` (reversible, enforced by the controller
 * only); `revoked` (final: also written to the revocation list that relays
 * receive, so they refuse the certificate at their door too).
 */
import { PharosError } from "../core/errors.ts";
import { deviceFingerprint, serialOf, type X509Certificate } from "../core/pki/mod.ts";
import { type Db, statement } from "./db/sqlite.ts";
import { recordRevocation, type Revocations } from "./revocation.ts";
import { type Actor, Service, SYSTEM_ACTOR } from "./service/service.ts";

export class DeviceError extends PharosError {}

export type DeviceStatus = "active" | "disabled" | "revoked";

export interface Device {
  id: string;
  userId: string | null;
  fingerprint: string;
  serial: string;
  status: DeviceStatus;
  notAfter: Date;
  createdAt: Date;
  version: number;
  updatedAt: Date;
}

/** Why a fingerprint is refused (logged; never told to the caller). */
export type DeviceRefusal = "malformed" | "unknown" | "revoked" | "disabled" | "expired";

export type DeviceVerdict =
  | { ok: true; device: Device }
  | { ok: false; reason: DeviceRefusal; device?: Device };

const FINGERPRINT = /^sha256:[0-9a-f]{64}$/;

interface Row {
  id: string;
  user_id: string | null;
  fingerprint: string;
  serial: string;
  status: DeviceStatus;
  not_after: string;
  created_at: string;
  version: number;
  updated_at: string;
}

function fromRow(r: Row): Device {
  return {
    id: r.id,
    userId: r.user_id,
    fingerprint: r.fingerprint,
    serial: r.serial,
    status: r.status,
    notAfter: new Date(r.not_after),
    createdAt: new Date(r.created_at),
    version: r.version,
    updatedAt: new Date(r.updated_at),
  };
}

export class Devices {
  readonly #service: Service;

  constructor(private readonly db: Db, private readonly revocations: Revocations) {
    this.#service = new Service(db);
  }

  /** Records a device from its issued leaf (status active). */
  async register(
    cert: X509Certificate,
    opts: { userId?: string; now?: Date; actor?: Actor } = {},
  ): Promise<Device> {
    const fingerprint = await deviceFingerprint(cert);
    const id = crypto.randomUUID();
    this.#service.mutate(
      {
        actor: opts.actor ?? SYSTEM_ACTOR,
        action: "device.create",
        target: { type: "device", id },
        expectVersion: 0,
      },
      (tx) => {
        if (statement(tx.db, "SELECT 1 FROM devices WHERE fingerprint = ?").get(fingerprint)) {
          throw new DeviceError("exists", `a device with fingerprint ${fingerprint} is registered`);
        }
        tx.insert({
          user_id: opts.userId ?? null,
          fingerprint,
          serial: serialOf(cert),
          status: "active",
          not_after: cert.notAfter.toISOString(),
          created_at: opts.now?.toISOString() ?? tx.now,
        });
      },
    );
    return this.get(id)!;
  }

  get(id: string): Device | undefined {
    const row = statement(this.db, "SELECT * FROM devices WHERE id = ?").get(id) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  byFingerprint(fingerprint: string): Device | undefined {
    const row = statement(this.db, "SELECT * FROM devices WHERE fingerprint = ?").get(
      fingerprint,
    ) as
      | Row
      | undefined;
    return row ? fromRow(row) : undefined;
  }

  /**
   * The verdict on a relay-supplied fingerprint: one indexed read per call,
   * so a status change takes effect on the very next call.
   */
  check(fingerprint: string, now: Date = new Date()): DeviceVerdict {
    if (!FINGERPRINT.test(fingerprint)) return { ok: false, reason: "malformed" };
    const device = this.byFingerprint(fingerprint);
    if (!device) return { ok: false, reason: "unknown" };
    if (device.status === "revoked") return { ok: false, reason: "revoked", device };
    if (device.status === "disabled") return { ok: false, reason: "disabled", device };
    if (device.notAfter.getTime() <= now.getTime()) return { ok: false, reason: "expired", device };
    return { ok: true, device };
  }

  /**
   * Disables or re-enables a device; `expectedVersion` guards against a
   * stale edit (ConflictError, nothing written).
   */
  setStatus(
    id: string,
    status: "active" | "disabled",
    expectedVersion?: number,
    actor: Actor = SYSTEM_ACTOR,
  ): Device {
    this.#service.mutate(
      {
        actor,
        action: "device.status",
        target: { type: "device", id },
        expectVersion: expectedVersion,
      },
      (tx) => {
        const current = this.#current(tx.current, id);
        if (current.status === "revoked") {
          throw new DeviceError(
            "revoked-final",
            `device ${id} is revoked; enroll it again instead`,
          );
        }
        if (current.status !== status) tx.update({ status });
      },
    );
    return this.get(id)!;
  }

  /**
   * Revokes a device: status `revoked` and its certificate serial in the
   * revocation list, in one transaction (two audit entries); subscribers
   * (the relay links) are told once it is committed. Revoking a revoked
   * device changes nothing.
   */
  revoke(
    id: string,
    opts: { expectedVersion?: number; reason?: string; actor?: Actor } = {},
  ): Device {
    const actor = opts.actor ?? SYSTEM_ACTOR;
    this.#service.transaction(() => {
      const revoked = this.#service.mutate(
        {
          actor,
          action: "device.revoke",
          target: { type: "device", id },
          expectVersion: opts.expectedVersion,
        },
        (tx) => {
          const current = this.#current(tx.current, id);
          if (current.status === "revoked") return undefined;
          tx.update({ status: "revoked" });
          return current;
        },
      );
      if (revoked) {
        recordRevocation(this.#service, actor, revoked.serial, "device", {
          subject: `device ${id}`,
          reason: opts.reason,
          notAfter: revoked.notAfter,
        });
      }
    });
    this.revocations.sync();
    return this.get(id)!;
  }

  #current(row: unknown, id: string): Device {
    if (row === undefined) throw new DeviceError("not-found", `no device ${id}`);
    return fromRow(row as Row);
  }
}
