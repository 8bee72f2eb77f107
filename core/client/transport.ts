/**
 * What the client flow needs from the outside world, as an interface: the
 * Deno program plugs in grpc-js over TLS (agent/client/grpc_transport.ts),
 * tests plug in an in-memory controller. core/client never opens a socket.
 */

/** A relay's `host:port`, split. */
export interface RelayAddress {
  host: string;
  port: number;
}

/** How one TLS connection to a relay must be trusted. */
export interface RelayTls {
  /** The only trust anchor the TLS library may use: the pinned root CA, PEM. */
  rootPem: string;
  /**
   * Checks the presented leaf (DER) during the handshake, before any request
   * is written; throws a ClientError to abort the connection.
   */
  checkLeaf(leafDer: Uint8Array): void;
  /** The device's client certificate (leaf PEM) and PKCS#8 key; absent for the claim. */
  identity?: { certPem: string; keyPem: string };
}

/** ClaimEnrollment request (CONTRACTS.md §2.1) plus the device's own WireGuard public key. */
export interface ClaimRequest {
  token: string;
  csrPem: string;
  deviceName: string;
  platform: string;
  /** Raw 32-byte X25519 public key the profile is sealed to. */
  encryptionPublicKey: Uint8Array;
  /** Raw 32-byte WireGuard public key; the private half never leaves the device. */
  wireguardPublicKey: Uint8Array;
  /** `pharos-claim-mac` (core/profile/claim_binding.ts), sent when the link is bound. */
  claimMac?: string;
}

/** ClaimEnrollment answer, fields as on the wire. */
export interface ClaimResponse {
  deviceCertPem: string;
  fleetCaPem: string;
  relayAddr: string;
  relayServerName: string;
  caFingerprint: string;
  signingPublicKey: Uint8Array;
}

/** Authenticate answer. */
export interface AuthenticateResponse {
  sessionToken: string;
  userId: string;
  keysEnrolled: boolean;
}

/** GetProfile answer; `revision` travels outside the signature and is informative only. */
export interface ProfileResponse {
  ciphertext: Uint8Array;
  revision: number;
  signingPublicKey: Uint8Array;
  /** Passphrase-wrapped account key; empty for devices with their own encryption key. */
  wrappedPrivateKey: Uint8Array;
}

/**
 * One AccountSync channel through a relay. Failures are ClientErrors:
 * `rejected` (with the gRPC status code) or `unreachable`.
 */
export interface AccountChannel {
  claimEnrollment(req: ClaimRequest): Promise<ClaimResponse>;
  /** `email` empty = device-certificate login. */
  authenticate(email: string, password: string): Promise<AuthenticateResponse>;
  /**
   * `proof` (metadata `pharos-key-proof`) answers the challenge a refused key
   * replacement carried in its `pharos-key-challenge` trailer.
   */
  enrollKeys(
    publicKey: Uint8Array,
    wrappedPrivateKey: Uint8Array,
    session: string,
    proof?: string,
  ): Promise<void>;
  getProfile(session: string): Promise<ProfileResponse>;
  close(): void;
}

/** The client's way out. */
export interface AccountTransport {
  /**
   * One TLS handshake and nothing else: the certificates the relay presents,
   * leaf first, as DER. Nothing is trusted or sent here.
   */
  presentedChain(relay: RelayAddress): Promise<Uint8Array[]>;
  /** Opens a channel whose TLS trusts only `tls.rootPem` and passes `tls.checkLeaf`. */
  open(relay: RelayAddress, tls: RelayTls): AccountChannel;
}

/** gRPC status codes the flow reacts to. */
export const GRPC_UNAUTHENTICATED = 16;
export const GRPC_NOT_FOUND = 5;
export const GRPC_FAILED_PRECONDITION = 9;

/** Trailer of a refused key replacement: base64 of a bundle sealed to the old account key. */
export const KEY_CHALLENGE_TRAILER = "pharos-key-challenge";
/** Metadata answering it: the opened nonce, base64url. */
export const KEY_PROOF_HEADER = "pharos-key-proof";
