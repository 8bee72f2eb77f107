/**
 * Every call into the controller's gRPC server passes this guard: the TLS
 * peer must hold a certificate of an allowed role (relays only, today), so
 * that a device or node certificate that merely chains to the Fleet CA can
 * never reach the account service or forge `x-pharos-device-fp`.
 */
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../../core/log.ts";
import type { RevocationList, Role, TrustStore, VerifiedCertificate } from "../../core/pki/mod.ts";
import { PkiError } from "../../core/pki/mod.ts";

const CACHE_LIMIT = 1024;

export function callerGuard(
  trust: TrustStore,
  revoked: RevocationList,
  roles: readonly Role[],
  log: Logger,
): grpc.ServerInterceptor {
  // One verification per certificate; revocation and expiry re-checked per call.
  const cache = new Map<string, Promise<VerifiedCertificate>>();
  const verify = async (raw: Uint8Array | undefined): Promise<VerifiedCertificate> => {
    if (!raw || raw.length === 0) throw new PkiError("empty", "no client certificate");
    const key = raw.toBase64();
    let v = cache.get(key);
    if (!v) {
      if (cache.size >= CACHE_LIMIT) cache.clear();
      v = trust.verify(raw, { expect: roles, usage: "clientAuth" });
      cache.set(key, v);
      v.catch(() => cache.delete(key));
    }
    const who = await v;
    if (revoked.has(who.serial)) {
      throw new PkiError("revoked", `certificate serial ${who.serial} has been revoked`);
    }
    if (Date.now() > who.leaf.notAfter.getTime()) {
      throw new PkiError("expired", "client certificate has expired");
    }
    return who;
  };
  return (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, mdNext) {
            const raw = call.getAuthContext().sslPeerCertificate?.raw;
            verify(raw ? new Uint8Array(raw) : undefined).then(
              () => mdNext(metadata),
              (e) => {
                log.warn("gRPC caller refused", { method: method.path, error: e });
                call.sendStatus({
                  code: grpc.status.UNAUTHENTICATED,
                  details: `controller: caller refused: ${(e as Error).message}`,
                });
              },
            );
          },
        });
      },
    });
}
