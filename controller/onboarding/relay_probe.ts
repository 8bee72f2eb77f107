/**
 * Waiting for a freshly started relay: a TLS handshake with its tunnel
 * listener, presenting the controller's client certificate; the relay must
 * present exactly the certificate onboarding just issued (DER compared).
 * Bounded retries; the connection is closed right after the handshake.
 */
import { Buffer } from "node:buffer";
import * as tls from "node:tls";
import type { ClientIdentity, ReadyWait } from "./node_control.ts";
import { pause, ReadyError } from "./node_control.ts";

function handshake(
  host: string,
  port: number,
  identity: ClientIdentity,
  expectDer: Uint8Array,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      servername: "pharos-relay",
      ca: Buffer.from(identity.caPem),
      cert: Buffer.from(identity.chainPem),
      key: Buffer.from(identity.keyPem),
      ALPNProtocols: ["pharos-tunnel/1"],
      // The chain is checked by TLS; the identity by comparing the exact certificate.
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TLS handshake within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const raw = socket.getPeerCertificate()?.raw;
      const alpn = socket.alpnProtocol || "none";
      socket.destroy();
      if (raw && raw.length === expectDer.length && raw.every((b, i) => b === expectDer[i])) {
        resolve(String(alpn));
      } else {reject(
          new Error("the relay presents another certificate than the one just issued (restart it)"),
        );}
    });
    socket.once("error", (e) => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    });
  });
}

/** Resolves with the negotiated ALPN once the relay's tunnel port presents the new certificate. */
export async function waitRelayTunnel(opts: {
  host: string;
  port: number;
  identity: ClientIdentity;
  expectDer: Uint8Array;
  wait?: ReadyWait;
  onAttempt?: (attempt: number, error: string) => void;
  /** Stops the wait between handshakes (rejecting with the abort reason). */
  signal?: AbortSignal;
}): Promise<string> {
  const attempts = opts.wait?.attempts ?? 30;
  const interval = opts.wait?.intervalMs ?? 2000;
  let last = "no attempt";
  for (let i = 1; i <= attempts; i++) {
    opts.signal?.throwIfAborted();
    try {
      return await handshake(
        opts.host,
        opts.port,
        opts.identity,
        opts.expectDer,
        opts.wait?.callTimeoutMs ?? 5000,
      );
    } catch (e) {
      last = (e as Error).message;
      opts.onAttempt?.(i, last);
    }
    if (i < attempts) await pause(interval, opts.signal);
  }
  const where = opts.host.includes(":")
    ? `[${opts.host}]:${opts.port}`
    : `${opts.host}:${opts.port}`;
  throw new ReadyError(
    "not-ready",
    `the relay's tunnel port ${where} did not answer after ${attempts} attempts (last: ${last}); ` +
      "check the relay's log on its host (journalctl -u pharos-relay) and that the controller can reach the port",
  );
}
