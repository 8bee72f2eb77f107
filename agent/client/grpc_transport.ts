/**
 * core/client's AccountTransport over grpc-js and node:tls. The claim's
 * first handshake only collects the chain the relay presents (nothing is
 * sent); every AccountSync channel then trusts the pinned root alone and
 * runs core/client's leaf rule inside the handshake (`checkServerIdentity`),
 * so no request leaves before the relay has proved itself.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import tls from "node:tls";
import {
  type AccountChannel,
  type AccountTransport,
  ClientError,
  type RelayAddress,
  type RelayTls,
} from "../../core/client/mod.ts";
import { PharosError } from "../../core/errors.ts";
import { ACCOUNT_PROTO, loadProto } from "../../proto/load.ts";

/** Metadata keys (controller/accounts/grpc_service.ts). */
const SESSION_HEADER = "pharos-session";
const WG_PUBLIC_KEY_HEADER = "pharos-wg-public-key";
const KEY_PROOF_HEADER = "pharos-key-proof";
const CLAIM_MAC_HEADER = "pharos-claim-mac";
export const CALL_TIMEOUT_MS = 30_000;
const HANDSHAKE_TIMEOUT_MS = 15_000;
/** Server name sent for a relay dialled by IP (names nothing; no check depends on it). */
const IP_SNI_STANDIN = "pharos-relay";

// deno-lint-ignore no-explicit-any
const accountPkg = (grpc.loadPackageDefinition(loadProto(ACCOUNT_PROTO)) as any).pharos.account.v1;
const AccountSync = accountPkg.AccountSync as grpc.ServiceClientConstructor;

const target = (r: RelayAddress) =>
  r.host.includes(":") ? `[${r.host}]:${r.port}` : `${r.host}:${r.port}`;

/** The DER chain a TLS peer presented, leaf first (self-issued root included once). */
function chainOf(socket: tls.TLSSocket): Uint8Array[] {
  const out: Uint8Array[] = [];
  let c = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  for (let i = 0; c?.raw && i < 8; i++) {
    out.push(new Uint8Array(c.raw));
    if (!c.issuerCertificate || c.issuerCertificate === c) break;
    c = c.issuerCertificate;
  }
  return out;
}

/** The text trailers of a refusal (binary `-bin` ones are of no use to the flow). */
function stringTrailers(md: grpc.Metadata | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md?.getMap() ?? {})) {
    if (typeof v === "string") out[k] = v;
  }
  return out;
}

function presentedChain(relay: RelayAddress): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: relay.host,
      port: relay.port,
      servername: isIP(relay.host) ? undefined : relay.host,
      // Nothing is trusted here and nothing is sent: core/client verifies the chain.
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ClientError("unreachable", `no TLS handshake with the relay ${target(relay)}`));
    }, HANDSHAKE_TIMEOUT_MS);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const chain = chainOf(socket);
      socket.destroy();
      resolve(chain);
    });
    socket.once("error", (e) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new ClientError("unreachable", `relay ${target(relay)}: ${e.message}`));
    });
  });
}

function open(relay: RelayAddress, trust: RelayTls): AccountChannel {
  let refusal: unknown;
  const creds = grpc.credentials.createSsl(
    Buffer.from(trust.rootPem),
    trust.identity ? Buffer.from(trust.identity.keyPem) : null,
    trust.identity ? Buffer.from(trust.identity.certPem) : null,
    {
      checkServerIdentity: (_host, cert) => {
        try {
          trust.checkLeaf(new Uint8Array(cert.raw));
          return undefined;
        } catch (e) {
          refusal = e;
          return e as Error;
        }
      },
    },
  );
  const client = new AccountSync(target(relay), creds, {
    "grpc.enable_retries": 0,
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    // Deno's TLS takes no IP as SNI; the certificate's IP SAN is checked by checkLeaf.
    ...(isIP(relay.host) ? { "grpc.ssl_target_name_override": IP_SNI_STANDIN } : {}),
  });
  // deno-lint-ignore no-explicit-any
  const call = <T>(method: string, request: unknown, md = new grpc.Metadata()): Promise<any> =>
    new Promise<T>((resolve, reject) =>
      // deno-lint-ignore no-explicit-any
      (client as any)[method](
        request,
        md,
        { deadline: Date.now() + CALL_TIMEOUT_MS },
        (err: grpc.ServiceError | null, res: T) => {
          if (!err) return resolve(res);
          if (refusal instanceof PharosError) return reject(refusal);
          if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
            return reject(
              new ClientError("unreachable", `${method} via ${target(relay)}: ${err.details}`, {
                grpcCode: err.code,
              }),
            );
          }
          reject(
            new ClientError("rejected", `${method} refused: ${err.details || err.message}`, {
              grpcCode: err.code,
              trailers: stringTrailers(err.metadata),
            }),
          );
        },
      )
    );
  const session = (token: string) => {
    const md = new grpc.Metadata();
    md.set(SESSION_HEADER, token);
    return md;
  };
  const bytes = (v: unknown) => v instanceof Uint8Array ? new Uint8Array(v) : new Uint8Array(0);
  return {
    async claimEnrollment(req) {
      const md = new grpc.Metadata();
      md.set(WG_PUBLIC_KEY_HEADER, req.wireguardPublicKey.toBase64());
      if (req.claimMac) md.set(CLAIM_MAC_HEADER, req.claimMac);
      const r = await call("ClaimEnrollment", {
        token: req.token,
        csr_pem: Buffer.from(req.csrPem),
        device_name: req.deviceName,
        platform: req.platform,
        encryption_pubkey: Buffer.from(req.encryptionPublicKey),
      }, md);
      return {
        deviceCertPem: new TextDecoder().decode(bytes(r.device_cert_pem)),
        fleetCaPem: new TextDecoder().decode(bytes(r.fleet_ca_pem)),
        relayAddr: r.relay_addr,
        relayServerName: r.relay_server_name,
        caFingerprint: r.ca_fingerprint,
        signingPublicKey: bytes(r.signing_public_key),
      };
    },
    async authenticate(email, password) {
      const r = await call("Authenticate", { email, password });
      return { sessionToken: r.session_token, userId: r.user_id, keysEnrolled: r.keys_enrolled };
    },
    async enrollKeys(publicKey, wrapped, token, proof) {
      const md = session(token);
      if (proof) md.set(KEY_PROOF_HEADER, proof);
      await call("EnrollKeys", {
        public_key: Buffer.from(publicKey),
        wrapped_private_key: Buffer.from(wrapped),
      }, md);
    },
    async getProfile(token) {
      const r = await call("GetProfile", {}, session(token));
      return {
        ciphertext: bytes(r.ciphertext),
        revision: Number(r.revision),
        signingPublicKey: bytes(r.signing_public_key),
        wrappedPrivateKey: bytes(r.wrapped_private_key),
      };
    },
    close: () => client.close(),
  };
}

/** The transport the `deno task client` program uses. */
export const grpcTransport: AccountTransport = { presentedChain, open };
