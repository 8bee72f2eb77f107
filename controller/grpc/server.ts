/**
 * The controller's gRPC server. It never listens on a socket. Remote relays
 * reach it as substreams of a reverse tunnel the controller dialled: TLS 1.3
 * inside, the controller's `coxswain-grpc` certificate, and a client
 * certificate with the relay role (callerGuard). The embedded relay reaches
 * a twin server, with the same services, that only in-process pipes can
 * get to: no socket leads there, so it needs no TLS. Both servers resolve
 * the relay-injected device fingerprint themselves (deviceGuard): whatever
 * relay carried a call, a revoked, disabled, expired or unknown device is
 * refused here.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { HealthImplementation } from "grpc-health-check";
import type { Duplex } from "node:stream";
import type { Logger } from "../../core/log.ts";
import type { RevocationList, TrustStore } from "../../core/pki/mod.ts";
import { callerGuard } from "./caller_guard.ts";
import {
  deviceGuard,
  type DeviceLookup,
  OpenDeviceCalls,
  type RevocationFeed,
} from "./device_guard.ts";
import { CONTROLLER_METHOD_CAPS, methodCaps } from "./method_caps.ts";

export interface ControllerGrpcOptions {
  /** `coxswain-grpc` leaf + Fleet CA, PEM. */
  certPem: string;
  keyPem: string;
  /** Fleet CA PEM: the TLS layer's anchor for client certificates. */
  fleetCaPem: string;
  trust: TrustStore;
  /** Revoked certificates (the controller's one list): relays are checked against it. */
  revoked: RevocationList;
  /** The device registry every call carrying `x-pharos-device-fp` is checked against. */
  devices: DeviceLookup;
  /** Clock for the device expiry check (tests). */
  now?: () => Date;
  /**
   * The revocation feed: open calls of a device are ended the moment its
   * certificate is revoked (without it, within the guard's 2 s sweep).
   */
  revocations?: RevocationFeed;
  log: Logger;
  /** Services to serve: [definition, implementation]. */
  services?: [grpc.ServiceDefinition, grpc.UntypedServiceImplementation][];
}

export interface ControllerGrpc {
  /** Takes one tunnel substream (TLS from a relay) as an accepted connection. */
  accept(conn: Duplex): void;
  /** Takes one in-process pipe end from the embedded relay (plain HTTP/2). */
  acceptInProcess(conn: Duplex): void;
  /** grpc.health.v1 on both servers ("" = the controller as a whole): SERVING until close. */
  health: HealthImplementation;
  /**
   * Switches the TLS server identity (tunnel substreams with inner TLS) to
   * a renewed `coxswain-grpc` certificate: new connections get it, open ones
   * keep theirs.
   */
  setCertificate(certPem: string, keyPem: string): void;
  close(): void;
}

export function createControllerGrpc(opts: ControllerGrpcOptions): ControllerGrpc {
  const limits = { "grpc.max_receive_message_length": 16 * 1024 * 1024 };
  const now = opts.now ?? (() => new Date());
  const open = new OpenDeviceCalls(opts.devices, now, opts.revocations);
  const devices = deviceGuard(opts.devices, opts.log, now, open);
  // Per-method caps wrap grpc-js's own call, so they come first; then the
  // relay's certificate is checked, then the device.
  const caps = methodCaps(CONTROLLER_METHOD_CAPS, opts.log);
  const server = new grpc.Server({
    interceptors: [caps, callerGuard(opts.trust, opts.revoked, ["relay"], opts.log), devices],
    ...limits,
  });
  const inProcess = new grpc.Server({ interceptors: [caps, devices], ...limits });
  for (const [def, impl] of opts.services ?? []) {
    server.addService(def, impl);
    inProcess.addService(def, impl);
  }
  const health = new HealthImplementation({ "": "SERVING" });
  health.addToServer(server);
  health.addToServer(inProcess);
  const identity = new ServerIdentity(opts.fleetCaPem, opts.certPem, opts.keyPem);
  // grpc-js's reloadable credentials: each update becomes setSecureContext on its TLS server.
  const creds = grpc.experimental.createCertificateProviderServerCredentials(
    identity,
    identity,
    true,
  );
  const injector = server.createConnectionInjector(creds);
  const pipes = inProcess.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  return {
    health,
    setCertificate(certPem, keyPem) {
      identity.set(certPem, keyPem);
    },
    accept(conn) {
      conn.on("error", () => {});
      injector.injectConnection(conn);
    },
    acceptInProcess(conn) {
      conn.on("error", () => {});
      pipes.injectConnection(conn);
    },
    close() {
      health.setStatus("", "NOT_SERVING");
      open.close();
      injector.destroy();
      pipes.destroy();
      server.forceShutdown();
      inProcess.forceShutdown();
    },
  };
}

type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;
type CaListener = grpc.experimental.CaCertificateUpdateListener;

/**
 * The gRPC server's certificate, key and client CA held in memory, as
 * grpc-js's CertificateProvider. Listeners are told on a microtask: grpc-js
 * adds its own watcher only after it subscribed here, and an update
 * delivered before that would never reach its TLS server.
 */
class ServerIdentity implements grpc.experimental.CertificateProvider {
  #ca: Buffer;
  #identity: { certificate: Buffer; privateKey: Buffer };
  #caListeners = new Set<CaListener>();
  #identityListeners = new Set<IdentityListener>();

  constructor(caPem: string, certPem: string, keyPem: string) {
    this.#ca = Buffer.from(caPem);
    this.#identity = { certificate: Buffer.from(certPem), privateKey: Buffer.from(keyPem) };
  }

  set(certPem: string, keyPem: string): void {
    this.#identity = { certificate: Buffer.from(certPem), privateKey: Buffer.from(keyPem) };
    for (const fn of this.#identityListeners) fn(this.#identity);
  }

  addCaCertificateListener(fn: CaListener): void {
    this.#caListeners.add(fn);
    queueMicrotask(() => this.#caListeners.has(fn) && fn({ caCertificate: this.#ca }));
  }

  removeCaCertificateListener(fn: CaListener): void {
    this.#caListeners.delete(fn);
  }

  addIdentityCertificateListener(fn: IdentityListener): void {
    this.#identityListeners.add(fn);
    queueMicrotask(() => this.#identityListeners.has(fn) && fn(this.#identity));
  }

  removeIdentityCertificateListener(fn: IdentityListener): void {
    this.#identityListeners.delete(fn);
  }
}
