/**
 * One relay: the client listener and the proxy in front of a transport to
 * the controller. Used by the remote relay program and embedded in the
 * controller, with the same trust rules either way.
 */
import type { Logger } from "../core/log.ts";
import { type LimitedLogger, rateLimitedLogger } from "../core/log_limit.ts";
import { certPem, type RevocationList, type TrustStore } from "../core/pki/mod.ts";
import { Backend } from "./backend.ts";
import { clientSecureContext, createClientServer, guardClientServer } from "./client_listener.ts";
import { type ConnectionSettings, defaultPlan } from "./conn_limits.ts";
import { GuardedListener } from "./conn_guard.ts";
import { DeviceAuth } from "./device_auth.ts";
import { holdHeapTrim } from "./host/heap_trim.ts";
import { createProxy } from "./proxy.ts";
import type { BackendTransport } from "./transport.ts";

export interface RelayOptions {
  listen: { hostname: string; port: number };
  /** Relay leaf + Fleet CA, PEM. */
  certPem: string;
  keyPem: string;
  /** Root and Fleet CA PEM (trust for the controller leg). */
  caPem: string;
  deviceCaPem: string;
  trust: TrustStore;
  /** Original-controller certificates allowed without a role marker. */
  legacyControllerPins?: ReadonlySet<string>;
  /** Revoked serials: devices on the client listener, the controller on the backend leg. */
  revoked: RevocationList;
  transport: BackendTransport;
  log: Logger;
  maxMessageBytes?: number;
  /** The setting that moves the listener, named in bind errors. */
  listenSetting?: string;
  /** TLS handshake limit on the client listener (default 10 s); overrides connections.limits. */
  handshakeTimeoutMs?: number;
  /**
   * Caps, time limits and watchdog of the client listener. By default a
   * budget derived from this process's fd limit (shared by every listener
   * that also takes the default) and the default limits.
   */
  connections?: ConnectionSettings;
}

export interface RunningRelay {
  /** The bound client port (useful with port 0). */
  port: number;
  backend: Backend;
  /** The client listener: counters, limits, watchdog. */
  listener: GuardedListener;
  /**
   * Switches the client listener to a renewed certificate (relay leaf +
   * Fleet CA, PEM) without a restart: new connections get it, open
   * connections and their calls go on with the old one (Deno 2.9.6's
   * node:tls implements `setSecureContext`; controller_cert_reload_test.ts).
   */
  setCertificate(certPem: string, keyPem: string): void;
  close(): Promise<void>;
}

export async function startRelay(opts: RelayOptions): Promise<RunningRelay> {
  const devices = new DeviceAuth(opts.trust, opts.revoked);
  const backend = new Backend(opts.transport, opts, opts.log);
  // A new tunnel means the old backend session runs over a dead path.
  opts.transport.onChange?.(() => backend.reset());
  const c = opts.connections ?? {};
  // Lines a client can cause once per connection or call go through one
  // rate limiter (the proxy's "call" line included).
  const ownNoisy: LimitedLogger | null = c.noisy ? null : rateLimitedLogger(opts.log);
  const noisy = c.noisy ?? ownNoisy!;
  const limits = {
    ...c.limits,
    ...(opts.handshakeTimeoutMs !== undefined ? { handshakeMs: opts.handshakeTimeoutMs } : {}),
  };
  // Devices get the chain up to the root, so a new one can check it against the
  // root its join link pins before it sends the token (CONTRACTS.md §7.4).
  const withRoot = (chainPem: string) => chainPem + certPem(opts.trust.anchors.root);
  const server = createClientServer({
    ...opts,
    certPem: withRoot(opts.certPem),
    log: noisy,
    handshakeTimeoutMs: limits.handshakeMs,
    devices,
    onStream: createProxy({
      backend,
      devices,
      log: noisy,
      maxMessageBytes: opts.maxMessageBytes,
    }),
  });
  const listener = new GuardedListener({
    name: "client",
    listen: opts.listen,
    listenSetting: opts.listenSetting ?? "the client listener address",
    inner: server,
    budget: c.budget ?? defaultPlan().publicBudget(),
    limits,
    tls: true,
    idle: true,
    log: opts.log,
    noisy,
    watchdog: c.watchdog,
    onFatal: c.onFatal,
    statsIntervalMs: c.statsIntervalMs,
  });
  guardClientServer(server, listener);
  const port = await listener.listen();
  // Memory freed after an attack goes back to the system (heap_trim.ts).
  const releaseHeapTrim = holdHeapTrim(opts.log);
  opts.log.info("client listener ready", {
    addr: `${opts.listen.hostname}:${port}`,
    transport: opts.transport.name,
    limits: listener.limits,
  });
  return {
    port,
    backend,
    listener,
    setCertificate(chainPem, keyPem) {
      server.setSecureContext(clientSecureContext({
        certPem: withRoot(chainPem),
        keyPem,
        deviceCaPem: opts.deviceCaPem,
      }));
      opts.log.info("client listener certificate replaced", { code: "cert-reloaded" });
    },
    async close() {
      await listener.close();
      backend.close();
      ownNoisy?.close();
      releaseHeapTrim();
    },
  };
}
