/**
 * Every NodeControl call passes this interceptor first (CONTRACTS.md
 * §7.1): the TLS peer's certificate must verify against the fleet's CAs
 * and carry the controller role (or be a pinned original-controller
 * certificate), and must not be revoked or expired. A certificate of
 * another role of this fleet (device, node, relay) gets PERMISSION_DENIED;
 * one that does not verify at all gets UNAUTHENTICATED. One JSON log line
 * per refusal, with its code.
 */
import * as grpc from "@grpc/grpc-js";
import { TLSSocket } from "node:tls";
import type { Logger } from "../core/log.ts";
import {
  PkiError,
  type RevocationList,
  type TrustStore,
  type VerifiedCertificate,
} from "../core/pki/mod.ts";

const CACHE_LIMIT = 256;
/** Failures that mean "a certificate of this fleet, but not allowed here". */
const DENIED = new Set(["wrong-role", "no-role", "wrong-usage", "revoked", "expired"]);

export interface GuardOptions {
  trust: () => TrustStore;
  revoked: RevocationList;
  legacyControllerPins: ReadonlySet<string>;
  log: Logger;
}

/**
 * The DER of the caller's certificate. grpc-js reports it only when the TLS
 * layer's own check passed; the node's TLS layer leaves the verdict to this
 * guard (a node certificate, with the server EKU only, fails that check), so
 * otherwise it is read from the call's TLS socket (grpc-js 1.14 keeps it at
 * `call.stream.session.socket`; the agent's tests fail if that changes).
 */
function peerCertificate(call: grpc.ServerInterceptingCallInterface): Uint8Array | undefined {
  const known = call.getAuthContext().sslPeerCertificate?.raw;
  if (known) return new Uint8Array(known);
  // deno-lint-ignore no-explicit-any
  const socket = (call as any).stream?.session?.socket;
  if (socket instanceof TLSSocket) {
    const raw = socket.getPeerCertificate()?.raw;
    if (raw && raw.length > 0) return new Uint8Array(raw);
  }
  return undefined;
}

export function controllerGuard(opts: GuardOptions): grpc.ServerInterceptor {
  let cache = new Map<string, Promise<VerifiedCertificate>>();
  let cachedTrust: TrustStore | null = null;
  const verify = async (raw: Uint8Array | undefined): Promise<VerifiedCertificate> => {
    if (!raw || raw.length === 0) throw new PkiError("empty", "no client certificate");
    const trust = opts.trust();
    if (trust !== cachedTrust) {
      cache = new Map();
      cachedTrust = trust;
    }
    const key = raw.toBase64();
    let v = cache.get(key);
    if (!v) {
      if (cache.size >= CACHE_LIMIT) cache.clear();
      v = trust.verify(raw, {
        expect: "controller",
        usage: "clientAuth",
        legacyControllerPins: opts.legacyControllerPins,
      });
      cache.set(key, v);
      v.catch(() => cache.delete(key));
    }
    const who = await v;
    // Revocation and expiry can change while a certificate stays cached.
    if (opts.revoked.has(who.serial)) {
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
            verify(peerCertificate(call)).then(
              () => mdNext(metadata),
              (e) => {
                const code = e instanceof PkiError ? e.code : "refused";
                const denied = DENIED.has(code);
                opts.log.warn("NodeControl caller refused", {
                  code: `caller-${code}`,
                  method: method.path,
                  error: (e as Error).message,
                });
                call.sendStatus({
                  code: denied ? grpc.status.PERMISSION_DENIED : grpc.status.UNAUTHENTICATED,
                  details: `node: only the controller may call NodeControl: ${
                    (e as Error).message
                  }`,
                  metadata: new grpc.Metadata(),
                });
              },
            );
          },
        });
      },
    });
}
