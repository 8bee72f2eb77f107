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

export function deviceGuard(
  devices: DeviceLookup,
  log: Logger,
  now: () => Date = () => new Date(),
): grpc.ServerInterceptor {
  return (method, call) =>
    new grpc.ServerInterceptingCall(call, {
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
            if (verdict.ok) return mdNext(metadata);
            log.warn("device refused", {
              code: `device-${verdict.reason}`,
              method: method.path,
              device: String(values[0]).slice(0, 19),
              device_id: verdict.device?.id,
            });
            call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: DEVICE_REFUSED });
          },
        });
      },
    });
}
