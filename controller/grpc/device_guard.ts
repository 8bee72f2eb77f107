/**
 * The controller's own device check, on both of its gRPC servers (embedded
 * and tunnel). A relay injects `x-pharos-device-fp` after verifying the
 * device certificate, but a relay may not know of a revocation: an original
 * Go relay accepts no policy, a push may not have arrived yet. So on every
 * call that carries the header the controller resolves the fingerprint
 * itself and refuses unless it names an active, unexpired device.
 *
 * Every refusal gets the same status and message (UNAUTHENTICATED,
 * DEVICE_REFUSED): a caller cannot tell an unknown fingerprint from a
 * revoked, disabled or expired device. The log line carries the precise
 * reason as `code` (device-unknown, device-revoked, device-disabled,
 * device-expired, device-malformed). Calls without the header (the
 * certificate-less ClaimEnrollment) pass untouched.
 *
 * A device that is revoked (or disabled, or expires) while one of its calls
 * is open does not keep that call: the guard tracks open calls per device
 * and ends them with the same refusal, at once when the controller's
 * revocation feed names the device's certificate, otherwise at the next
 * sweep (every 2 s while device calls are open), which re-checks each
 * device in the registry.
 */
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../../core/log.ts";
import type { DeviceVerdict } from "../devices.ts";

export const DEVICE_FP_HEADER = "x-pharos-device-fp";
export const DEVICE_REFUSED =
  "controller: this device is not authorised (unknown, revoked, disabled or expired); enroll it again or ask the administrator";

/** What the guard needs from the device registry. */
export interface DeviceLookup {
  check(fingerprint: string, now: Date): DeviceVerdict;
}

/** The controller's revocation feed (controller/revocation.ts `Revocations`). */
export interface RevocationFeed {
  subscribe(fn: (added: { serial: string }[]) => void): () => void;
}

export const DEVICE_SWEEP_MS = 2000;

interface OpenCall {
  fingerprint: string;
  serial: string;
  end(): void;
}

/** Open device calls; ends those of revoked devices. Its timer runs only while calls are open. */
export class OpenDeviceCalls {
  readonly #calls = new Set<OpenCall>();
  #timer?: ReturnType<typeof setInterval>;
  #unsubscribe?: () => void;

  constructor(
    private readonly devices: DeviceLookup,
    private readonly now: () => Date,
    private readonly feed?: RevocationFeed,
    private readonly sweepMs = DEVICE_SWEEP_MS,
  ) {}

  get size(): number {
    return this.#calls.size;
  }

  add(call: OpenCall): () => void {
    this.#calls.add(call);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.sweep(), this.sweepMs);
      this.#unsubscribe = this.feed?.subscribe((added) => {
        const serials = new Set(added.map((a) => a.serial.toLowerCase()));
        for (const c of [...this.#calls]) if (serials.has(c.serial)) c.end();
      });
    }
    return () => {
      this.#calls.delete(call);
      if (this.#calls.size === 0) this.close();
    };
  }

  /** Re-checks every device with an open call; ends the calls of refused ones. */
  sweep(): void {
    const verdicts = new Map<string, boolean>();
    for (const c of [...this.#calls]) {
      let ok = verdicts.get(c.fingerprint);
      if (ok === undefined) {
        try {
          ok = this.devices.check(c.fingerprint, this.now()).ok;
        } catch {
          ok = true; // the registry is unreadable: keep calls, the next sweep retries
        }
        verdicts.set(c.fingerprint, ok);
      }
      if (!ok) c.end();
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }
}

export function deviceGuard(
  devices: DeviceLookup,
  log: Logger,
  now: () => Date = () => new Date(),
  open: OpenDeviceCalls = new OpenDeviceCalls(devices, now),
): grpc.ServerInterceptor {
  return (method, call) => {
    let untrack: (() => void) | undefined;
    let ended = false;
    const stop = () => {
      ended = true;
      untrack?.();
      untrack = undefined;
    };
    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, mdNext) {
            const values = metadata.get(DEVICE_FP_HEADER);
            if (values.length === 0) return mdNext(metadata);
            let verdict: DeviceVerdict;
            try {
              verdict = values.length === 1 && typeof values[0] === "string"
                ? devices.check(values[0], now())
                : { ok: false, reason: "malformed" };
            } catch (e) {
              log.error("device check failed", { code: "device-check-failed", error: e });
              call.sendStatus({
                code: grpc.status.UNAVAILABLE,
                details: "controller: device check failed; try again shortly",
              });
              return;
            }
            if (verdict.ok) {
              if (!ended) {
                const fingerprint = values[0] as string;
                untrack = open.add({
                  fingerprint,
                  serial: verdict.device.serial.toLowerCase(),
                  end: () => {
                    if (ended) return;
                    log.warn("device call ended: the device is no longer authorised", {
                      code: "device-call-ended",
                      method: method.path,
                      device: fingerprint.slice(0, 19),
                      device_id: verdict.device.id,
                    });
                    intercepting.sendStatus({
                      code: grpc.status.UNAUTHENTICATED,
                      details: DEVICE_REFUSED,
                    });
                  },
                });
              }
              return mdNext(metadata);
            }
            log.warn("device refused", {
              code: `device-${verdict.reason}`,
              method: method.path,
              device: String(values[0]).slice(0, 19),
              device_id: verdict.device?.id,
            });
            call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: DEVICE_REFUSED });
          },
          onCancel() {
            stop();
          },
        });
      },
      sendStatus(status, next) {
        stop();
        next(status);
      },
    });
    return intercepting;
  };
}
