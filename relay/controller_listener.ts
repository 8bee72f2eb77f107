/**
 * A listener only the controller may use (the tunnel and egress ports):
 * TLS 1.3, a client certificate required, and that certificate must have
 * the controller role and not be revoked. Anything else is dropped right
 * after the handshake, before it can take the tunnel slot or open a stream.
 * When a policy from the controller revokes the certificate of a session
 * already in progress, that session is closed at once.
 *
 * The listener advertises ALPN CONTROL_ALPN so that our controller knows it
 * may send policy streams; a client that offers no ALPN (the original Go
 * controller) is served just the same.
 */
import tls from "node:tls";
import type { Logger } from "../core/log.ts";
import type { RevocationList, TrustStore, VerifiedCertificate } from "../core/pki/mod.ts";
import { CONTROL_ALPN, watchRevocations } from "../core/relay_policy.ts";
import { listenOrExplain } from "./listen.ts";

export interface ControllerListenerOptions {
  listen: { hostname: string; port: number };
  /** Relay leaf + Fleet CA, PEM. */
  certPem: string;
  keyPem: string;
  /** Fleet CA PEM: the TLS layer's trust anchor for client certificates. */
  fleetCaPem: string;
  trust: TrustStore;
  /** The relay policy's list: consulted at every handshake and watched for changes. */
  revoked: RevocationList;
  /** Original-controller certificates allowed without a role marker (see VerifyOptions). */
  legacyControllerPins?: ReadonlySet<string>;
  log: Logger;
  onController(socket: tls.TLSSocket, who: VerifiedCertificate): void;
  /** The setting that moves the listener, named in bind errors. */
  listenSetting?: string;
}

export async function listenForController(
  opts: ControllerListenerOptions,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<tls.TLSSocket>();
  /** Verified controller sessions and their certificate. */
  const controllers = new Map<tls.TLSSocket, VerifiedCertificate>();
  const server = tls.createServer({
    cert: opts.certPem,
    key: opts.keyPem,
    ca: opts.fleetCaPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
    handshakeTimeout: 10_000,
    ALPNProtocols: [CONTROL_ALPN],
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      controllers.delete(socket);
    });
    socket.on("error", () => {});
    // Multiplexed small frames must not wait for ACKs (Nagle + delayed ACK = 40 ms stalls).
    socket.setNoDelay(true);
    const peer = socket.getPeerCertificate(true);
    const der = peer?.raw ? new Uint8Array(peer.raw) : new Uint8Array(0);
    opts.trust.verify(der, {
      expect: "controller",
      usage: "clientAuth",
      revoked: opts.revoked,
      legacyControllerPins: opts.legacyControllerPins,
    })
      .then(
        (who) => {
          if (socket.destroyed) return;
          controllers.set(socket, who);
          opts.onController(socket, who);
        },
        (e) => {
          opts.log.warn("refused a non-controller connection", {
            code: (e as { code?: string }).code ?? "refused",
            remote: socket.remoteAddress,
            error: e,
          });
          socket.destroy();
        },
      );
  });
  server.on("tlsClientError", (e) => opts.log.warn("TLS handshake failed", { error: e }));
  const unwatch = watchRevocations(opts.revoked, () => {
    for (const [socket, who] of controllers) {
      if (!opts.revoked.has(who.serial)) continue;
      opts.log.warn("controller certificate revoked: session closed", {
        code: "controller-revoked",
        serial: who.serial,
        remote: socket.remoteAddress,
      });
      controllers.delete(socket);
      socket.destroy();
    }
  });
  try {
    await listenOrExplain(server, opts.listen, opts.listenSetting ?? "the listener address");
  } catch (e) {
    unwatch();
    throw e;
  }
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        unwatch();
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
