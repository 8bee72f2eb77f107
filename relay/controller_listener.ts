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
 *
 * A GuardedListener (conn_guard.ts) accepts for it: a small pool of
 * connections (at most 16 per address), the handshake limit, and the
 * preface limit up to the verified controller. A verified session has no
 * idle limit: its multiplexer's keepalive closes a peer that stops
 * answering (core/mux, 20 s pings).
 */
import tls from "node:tls";
import type { Logger } from "../core/log.ts";
import { rateLimitedLogger } from "../core/log_limit.ts";
import type { RevocationList, TrustStore, VerifiedCertificate } from "../core/pki/mod.ts";
import { CONTROL_ALPN, watchRevocations } from "../core/relay_policy.ts";
import { GuardedListener } from "./conn_guard.ts";
import { type ConnectionSettings, defaultPlan } from "./conn_limits.ts";

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
  /** Listener name in logs (tunnel, egress). */
  name?: string;
  /** Caps, limits and watchdog; by default a small pool of this process's budget. */
  connections?: ConnectionSettings;
}

export async function listenForController(
  opts: ControllerListenerOptions,
): Promise<{ port: number; listener: GuardedListener; close(): Promise<void> }> {
  const c = opts.connections ?? {};
  const ownNoisy = c.noisy ? null : rateLimitedLogger(opts.log);
  const noisy = c.noisy ?? ownNoisy!;
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
    // The guard enforces the handshake limit (Deno reports this timeout
    // without closing the socket); kept as a second line.
    handshakeTimeout: c.limits?.handshakeMs ?? 10_000,
    ALPNProtocols: [CONTROL_ALPN],
  });
  const listener = new GuardedListener({
    name: opts.name ?? "controller-only",
    listen: opts.listen,
    listenSetting: opts.listenSetting ?? "the listener address",
    inner: server,
    budget: c.budget ?? defaultPlan().controllerOnlyBudget(),
    limits: c.limits,
    tls: true,
    idle: false,
    log: opts.log,
    noisy,
    watchdog: c.watchdog,
    onFatal: c.onFatal,
    statsIntervalMs: c.statsIntervalMs,
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    listener.handshakeDone(socket);
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
          listener.established(socket);
          controllers.set(socket, who);
          opts.onController(socket, who);
        },
        (e) => {
          noisy.warn("refused a non-controller connection", {
            code: (e as { code?: string }).code ?? "refused",
            remote: socket.remoteAddress,
            error: e,
          });
          socket.destroy();
        },
      );
  });
  server.on("tlsClientError", (e: Error, socket: tls.TLSSocket) => {
    // Deno does not close a socket whose handshake failed or timed out.
    const raw = (socket as unknown as { _parent?: { bytesRead?: number; remoteAddress?: string } })
      ?._parent;
    const remote = raw?.remoteAddress ?? socket?.remoteAddress;
    socket?.destroy();
    // A connection closed before its first byte (a scan, our own watchdog) is only counted.
    if (!raw || (raw.bytesRead ?? 0) > 0) {
      noisy.warn("TLS handshake failed", {
        code: "tls-handshake-failed",
        listener: opts.name ?? "controller-only",
        remote,
        error: e,
      });
    }
  });
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
  let port: number;
  try {
    port = await listener.listen();
  } catch (e) {
    unwatch();
    ownNoisy?.close();
    throw e;
  }
  return {
    port,
    listener,
    async close() {
      unwatch();
      for (const s of sockets) s.destroy();
      await listener.close();
      ownNoisy?.close();
    },
  };
}
