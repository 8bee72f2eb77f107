/**
 * Starts the controller: state and PKI, its gRPC server (reached only
 * through relays), the embedded relay and remote relay tunnels, and the
 * loopback dashboard listener.
 */
import { certPem } from "../core/pki/mod.ts";
import { createLogger } from "../core/log.ts";
import { splitListen } from "../core/settings.ts";
import { createApp } from "./api/app.ts";
import type { ControllerConfig } from "./config.ts";
import { Devices } from "./devices.ts";
import { createControllerGrpc } from "./grpc/server.ts";
import { type RelayLinks, startRelayLinks } from "./relay/links.ts";
import { Revocations } from "./revocation.ts";
import { serviceCert } from "./service_certs.ts";
import { type ControllerState, openState } from "./state.ts";

/** How often revocations written by another process (a CLI) are picked up. */
export const REVOCATION_SYNC_MS = 5000;

export interface RunningController {
  state: ControllerState;
  relays: RelayLinks;
  /** The device registry the gRPC servers check every device call against. */
  devices: Devices;
  /** The one revocation list (devices, relays, controller certificates). */
  revocations: Revocations;
  /** Bound dashboard port. */
  uiPort: number;
  shutdown(): Promise<void>;
}

export async function startController(
  cfg: ControllerConfig,
  opts: {
    services?: Parameters<typeof createControllerGrpc>[0]["services"];
    logSink?: (line: string) => void;
    /** Clock of the device expiry check (tests). */
    now?: () => Date;
  } = {},
): Promise<RunningController> {
  const log = createLogger("controller", { level: cfg.logLevel, sink: opts.logSink });
  const state = await openState(cfg.state, { create: true });
  log.info(state.created ? "created a new certificate authority" : "loaded state", {
    state: cfg.state,
    root_ca_fingerprint: state.pki.rootFingerprint,
  });
  const server = await serviceCert(state, "controller-server");
  const revocations = new Revocations(state.db, log.child({ part: "revocation" }));
  const devices = new Devices(state.db, revocations);
  const grpc = createControllerGrpc({
    certPem: server.chainPem,
    keyPem: server.keyPem,
    fleetCaPem: certPem(state.pki.cas.fleet.cert),
    trust: state.pki.trust,
    revoked: revocations.list,
    devices,
    now: opts.now,
    log: log.child({ part: "grpc" }),
    services: opts.services,
  });
  const relays = await startRelayLinks(state, cfg, grpc, revocations, log);

  const { hostname, port } = splitListen(cfg.uiListen);
  if (!["127.0.0.1", "::1", "localhost"].includes(hostname)) {
    log.warn("the dashboard listens beyond loopback; put a TLS reverse proxy in front of it", {
      listen: cfg.uiListen,
    });
  }
  const http = Deno.serve({ hostname, port, onListen: () => {} }, createApp(state));
  log.info("dashboard listening", { addr: `${hostname}:${http.addr.port}` });
  const sync = setInterval(() => {
    try {
      revocations.sync();
    } catch (e) {
      log.error("cannot read revocations", { code: "revocation-sync", error: e });
    }
  }, REVOCATION_SYNC_MS);
  return {
    state,
    relays,
    devices,
    revocations,
    uiPort: http.addr.port,
    async shutdown() {
      clearInterval(sync);
      await relays.close();
      grpc.close();
      await http.shutdown();
      state.close();
      log.info("stopped");
    },
  };
}
