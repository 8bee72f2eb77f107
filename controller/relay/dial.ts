/**
 * Dialling a relay's controller-only port: TLS 1.3 with the controller's
 * client certificate, and the relay's certificate must carry the relay
 * role (not merely chain to the Fleet CA) and not be revoked.
 *
 * The controller offers ALPN CONTROL_ALPN. Our relay selects it: it takes
 * policy streams. The original Go relay sets no ALPN and its TLS server
 * ignores the offer: the handshake succeeds with no protocol, and the
 * controller knows at once, without waiting on a stream, that this relay
 * has no policy channel.
 */
import { isIP } from "node:net";
import tls from "node:tls";
import type { RevocationList, TrustStore, VerifiedCertificate } from "../../core/pki/mod.ts";
import { CONTROL_ALPN } from "../../core/relay_policy.ts";

export interface ControllerTlsIdentity {
  /** Controller client leaf + Fleet CA, PEM. */
  certPem: string;
  keyPem: string;
  /** Root (+ Fleet) CA PEM for the TLS library. */
  caPem: string;
  trust: TrustStore;
  revoked?: RevocationList;
}

export const DIAL_TIMEOUT_MS = 10_000;

export interface DialledRelay {
  socket: tls.TLSSocket;
  relay: VerifiedCertificate;
  /** True when the relay negotiated CONTROL_ALPN (ours); false for an original relay. */
  policyChannel: boolean;
}

/**
 * Connects and returns the socket once the relay's role is verified. An
 * abort of `signal` ends the dial at once (the socket is destroyed, the
 * promise rejects): a dial never outlives whoever gave up on it.
 */
export async function dialRelay(
  target: { host: string; port: number; serverName?: string },
  id: ControllerTlsIdentity,
  timeoutMs = DIAL_TIMEOUT_MS,
  signal?: AbortSignal,
): Promise<DialledRelay> {
  signal?.throwIfAborted();
  const name = target.serverName ?? target.host;
  const socket = tls.connect({
    host: target.host,
    port: target.port,
    // SNI carries names only; an IP target is matched against the IP SAN.
    servername: isIP(name) ? undefined : name,
    cert: id.certPem,
    key: id.keyPem,
    ca: id.caPem,
    minVersion: "TLSv1.3",
    ALPNProtocols: [CONTROL_ALPN],
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`TLS to ${target.host}:${target.port} timed out`)),
        timeoutMs,
      );
      onAbort = () => reject(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    const peer = socket.getPeerCertificate(true);
    const relay = await id.trust.verify(new Uint8Array(peer.raw), {
      expect: "relay",
      usage: "serverAuth",
      revoked: id.revoked,
    });
    signal?.throwIfAborted();
    socket.on("error", () => {});
    // Multiplexed small frames must not wait for ACKs (Nagle + delayed ACK = 40 ms stalls).
    socket.setNoDelay(true);
    return { socket, relay, policyChannel: socket.alpnProtocol === CONTROL_ALPN };
  } catch (e) {
    socket.destroy();
    throw e;
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}
