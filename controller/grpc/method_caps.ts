/**
 * Per-method request caps on the controller's gRPC servers, enforced where
 * grpc-js reads each message's 5-byte header: a request declaring more than
 * its method allows is refused with RESOURCE_EXHAUSTED before any of its body
 * is buffered. The certificate-less ClaimEnrollment gets a small cap (the
 * relay applies the same one), every other method the server-wide 16 MiB.
 *
 * grpc-js has only a server-wide limit, fixed when a call is created; this
 * interceptor, placed first, lowers it on that call's decoder. It relies on
 * grpc-js internals (BaseServerInterceptingCall.decoder), so a test sends a
 * bare oversized header and fails if a grpc-js upgrade stops honouring it.
 */
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../../core/log.ts";

export const CLAIM_METHOD = "/pharos.account.v1.AccountSync/ClaimEnrollment";

/** Largest request message per method (bytes). */
export const CONTROLLER_METHOD_CAPS: Readonly<Record<string, number>> = {
  [CLAIM_METHOD]: 64 * 1024,
};

interface BaseCallInternals {
  maxReceiveMessageSize?: number;
  decoder?: { maxReadMessageLength?: number };
}

/** Must be the first interceptor of the server: it wraps grpc-js's base call. */
export function methodCaps(
  caps: Readonly<Record<string, number>>,
  log: Logger,
): grpc.ServerInterceptor {
  let warned = false;
  return (method, call) => {
    const cap = caps[method.path];
    if (cap !== undefined) {
      const base = call as unknown as BaseCallInternals;
      if (base.decoder && typeof base.decoder.maxReadMessageLength === "number") {
        base.decoder.maxReadMessageLength = Math.min(base.decoder.maxReadMessageLength, cap);
        base.maxReceiveMessageSize = Math.min(base.maxReceiveMessageSize ?? cap, cap);
      } else if (!warned) {
        warned = true;
        log.error("per-method request caps are not enforced: grpc-js internals changed", {
          code: "method-cap-unavailable",
          method: method.path,
        });
      }
    }
    return new grpc.ServerInterceptingCall(call);
  };
}
