/**
 * AccountSync (CONTRACTS.md §2) on the controller's gRPC servers: maps
 * each call onto Accounts and each AccountError onto its gRPC status.
 * Identity comes from `x-pharos-device-fp` (injected by the relay, checked
 * again by the device guard and by Accounts) and `pharos-session`.
 *
 * Additions the original controller does not know, all in metadata so that
 * the wire messages stay field-for-field the original's:
 * - ClaimEnrollment `pharos-wg-public-key`: the device's own WireGuard
 *   public key (base64); without it the controller makes one.
 * - ClaimEnrollment `pharos-claim-mac`: a bound ticket's proof that the
 *   claim's keys come from the holder of the link (core/profile/claim_binding.ts).
 * - GetProfile `pharos-exit-node`: exit selection for cascades; the
 *   profile returned already reflects the choice.
 * - EnrollKeys `pharos-key-proof` answers the `pharos-key-challenge` a
 *   refused key replacement returned in its trailers.
 */
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../../core/log.ts";
import { PharosError } from "../../core/errors.ts";
import { ACCOUNT_PROTO, loadProto } from "../../proto/load.ts";
import type { Accounts, DeviceCaller } from "./accounts.ts";
import { AccountError, type AccountErrorCode } from "./errors.ts";
import { CLAIM_MAC_HEADER } from "../../core/profile/claim_binding.ts";

export const SESSION_HEADER = "pharos-session";
export const DEVICE_FP_HEADER = "x-pharos-device-fp";
export const WG_PUBLIC_KEY_HEADER = "pharos-wg-public-key";
export const KEY_PROOF_HEADER = "pharos-key-proof";
export const KEY_CHALLENGE_HEADER = "pharos-key-challenge";
/** GetProfile: the exit node the device wants its cascade traffic to leave at ("none": none). */
export const EXIT_HEADER = "pharos-exit-node";

const STATUS: Record<AccountErrorCode, grpc.status> = {
  invalid: grpc.status.INVALID_ARGUMENT,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  "rate-limited": grpc.status.RESOURCE_EXHAUSTED,
  "not-found": grpc.status.NOT_FOUND,
  precondition: grpc.status.FAILED_PRECONDITION,
};

// deno-lint-ignore no-explicit-any
const accountPkg = (grpc.loadPackageDefinition(loadProto(ACCOUNT_PROTO)) as any).pharos.account.v1;

/** The AccountSync service definition (proto/pharos/account/v1/account.proto). */
export const ACCOUNT_SYNC_SERVICE: grpc.ServiceDefinition = accountPkg.AccountSync.service;

function first(md: grpc.Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return typeof v === "string" && v !== "" ? v : undefined;
}

function callerOf(md: grpc.Metadata): DeviceCaller {
  return { fingerprint: first(md, DEVICE_FP_HEADER), token: first(md, SESSION_HEADER) };
}

function bytes(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? new Uint8Array(v) : new Uint8Array(0);
}

type Handler = (call: grpc.ServerUnaryCall<unknown, unknown>) => Promise<unknown>;

/** [definition, implementation] for `createControllerGrpc({ services })`. */
export function accountSyncService(
  accounts: Accounts,
  log: Logger,
): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation] {
  const unary = (method: string, fn: Handler) =>
  (
    call: grpc.ServerUnaryCall<unknown, unknown>,
    cb: grpc.sendUnaryData<unknown>,
  ) => {
    fn(call).then(
      (res) => cb(null, res),
      (e) => {
        if (e instanceof AccountError) {
          log.info("account call refused", {
            code: `account-${e.code}`,
            method,
            reason: e.message,
          });
          const trailer = new grpc.Metadata();
          for (const [k, v] of Object.entries(e.metadata)) trailer.set(k, v);
          cb({ code: STATUS[e.code], details: e.message, metadata: trailer });
          return;
        }
        log.error("account call failed", {
          code: e instanceof PharosError ? e.code : "account-internal",
          method,
          error: e,
        });
        cb({ code: grpc.status.INTERNAL, details: "controller: internal error; try again later" });
      },
    );
  };
  // deno-lint-ignore no-explicit-any
  type Req = any;
  return [ACCOUNT_SYNC_SERVICE, {
    Authenticate: unary("Authenticate", async (call) => {
      const req = call.request as Req;
      const out = await accounts.authenticate(
        callerOf(call.metadata),
        String(req.email ?? ""),
        String(req.password ?? ""),
      );
      return { session_token: out.token, user_id: out.userId, keys_enrolled: out.keysEnrolled };
    }),
    EnrollKeys: unary("EnrollKeys", async (call) => {
      const req = call.request as Req;
      const pub = bytes(req.public_key);
      const wrapped = bytes(req.wrapped_private_key);
      if (pub.length === 0 || wrapped.length === 0) {
        throw new AccountError("invalid", "public_key and wrapped_private_key are required");
      }
      await accounts.enrollKeys(
        callerOf(call.metadata),
        pub,
        wrapped,
        first(call.metadata, KEY_PROOF_HEADER),
      );
      return {};
    }),
    GetProfile: unary("GetProfile", async (call) => {
      const exit = call.metadata.get(EXIT_HEADER)[0];
      if (typeof exit === "string") {
        await accounts.selectExit(
          callerOf(call.metadata),
          exit === "" || exit === "none" ? null : exit,
        );
      }
      const p = await accounts.getProfile(callerOf(call.metadata));
      return {
        ciphertext: p.ciphertext,
        revision: String(p.revision),
        signing_public_key: p.signingPublicKey,
        wrapped_private_key: p.wrappedPrivateKey,
      };
    }),
    ClaimEnrollment: unary("ClaimEnrollment", async (call) => {
      const req = call.request as Req;
      // Any fingerprint on this certificate-less call is ignored (CONTRACTS §2.3).
      const r = await accounts.claim({
        token: String(req.token ?? ""),
        csrPem: bytes(req.csr_pem),
        deviceName: String(req.device_name ?? ""),
        platform: String(req.platform ?? ""),
        encryptionPublicKey: bytes(req.encryption_pubkey),
        wgPublicKey: first(call.metadata, WG_PUBLIC_KEY_HEADER),
        claimMac: first(call.metadata, CLAIM_MAC_HEADER),
      });
      const enc = new TextEncoder();
      return {
        device_cert_pem: enc.encode(r.deviceCertPem),
        fleet_ca_pem: enc.encode(r.fleetCaPem),
        relay_addr: r.relayAddr,
        relay_server_name: r.relayServerName,
        ca_fingerprint: r.caFingerprint,
        signing_public_key: r.signingPublicKey,
      };
    }),
  }];
}
