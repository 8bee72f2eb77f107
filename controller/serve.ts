/**
 * Starts the controller: state and PKI, its gRPC server (reached only
 * through relays), the embedded relay and remote relay tunnels, and the
 * loopback dashboard listener.
 *
 * Connections: one plan for the process, from its fd limit and the
 * settings — the dashboard gets a small pool of its own, the embedded
 * relay's device listener the rest, both under one global cap; both have
 * the handshake/preface/idle limits and a watchdog that rebuilds a
 * listener that stops accepting. Neither listener's failure ends the
 * controller: it is logged, and rebuilding is retried.
 */
import { timeLimitsOf } from "../core/conn_limits.ts";
import { certPem } from "../core/pki/mod.ts";
import { createLogger } from "../core/log.ts";
import { rateLimitedLogger } from "../core/log_limit.ts";
import { splitListen } from "../core/settings.ts";
import { planFromSettings } from "../relay/conn_limits.ts";
import { softNofile } from "../relay/fd_limit.ts";
import { createApp } from "./api/app.ts";
import { type RunningDashboard, startDashboard } from "./api/listener.ts";
import type { ControllerConfig } from "./config.ts";
import { Devices } from "./devices.ts";
import { createControllerGrpc } from "./grpc/server.ts";
import { type RelayLinks, startRelayLinks } from "./relay/links.ts";
import { Revocations } from "./revocation.ts";
import { Service, SYSTEM_ACTOR } from "./service/service.ts";
import { serviceCert } from "./service_certs.ts";
import { controllerSshKey } from "./ssh/controller_key.ts";
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
    /** How often the relays table is read for added or removed relays (tests). */
    relayPollMs?: number;
  } = {},
): Promise<RunningController> {
  const log = createLogger("controller", { level: cfg.logLevel, sink: opts.logSink });
  const state = await openState(cfg.state, { create: true });
  log.info(state.created ? "created a new certificate authority" : "loaded state", {
    state: cfg.state,
    root_ca_fingerprint: state.pki.rootFingerprint,
  });
  // The key that installs agents and relays over SSH exists from the first start.
  const sshKey = await controllerSshKey(new Service(state.db), state.keystore, SYSTEM_ACTOR);
  if (sshKey.created) {
    log.info("created the controller's SSH key", { fingerprint: sshKey.fingerprint });
  }
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
  const nofile = softNofile();
  const plan = planFromSettings(cfg, 1, nofile);
  const limits = timeLimitsOf(cfg);
  const noisy = rateLimitedLogger(log);
  const relays = await startRelayLinks(state, cfg, grpc, revocations, log, {
    budget: plan.publicBudget(),
    limits,
    noisy,
    // A listener that cannot be rebuilt is logged at every attempt; the controller goes on.
    onFatal: () => {},
  }, opts.relayPollMs);

  const { hostname, port } = splitListen(cfg.uiListen);
  if (!["127.0.0.1", "::1", "localhost"].includes(hostname)) {
    log.warn("the dashboard listens beyond loopback; put a TLS reverse proxy in front of it", {
      listen: cfg.uiListen,
    });
  }
  let http: RunningDashboard;
  try {
    http = await startDashboard({
      listen: { hostname, port },
      handler: createApp(state),
      budget: plan.localBudget(),
      limits,
      log,
      noisy,
    });
  } catch (e) {
    await relays.close();
    grpc.close();
    noisy.close();
    throw asRuntimeListenError(e);
  }
  log.info("dashboard listening", {
    addr: `${hostname}:${http.port}`,
    // The process's connection plan (dashboard and embedded relay).
    fd_limit: nofile,
    max_connections: plan.caps.total,
    max_connections_per_source: plan.caps.perSource,
    dashboard_pool: plan.pool,
    handshake_ms: limits.handshakeMs,
    preface_ms: limits.prefaceMs,
    idle_ms: limits.idleMs,
  });
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
    uiPort: http.port,
    async shutdown() {
      clearInterval(sync);
      await relays.close();
      grpc.close();
      await http.close();
      noisy.close();
      state.close();
      log.info("stopped");
    },
  };
}

/**
 * The dashboard's bind failure as the runtime's error class, which the
 * command line reports with the setting to change (cli/controller.ts
 * startFailure); anything else unchanged.
 */
function asRuntimeListenError(e: unknown): unknown {
  const code = ((e as { cause?: { code?: string } })?.cause)?.code;
  const message = (e as Error)?.message;
  if (code === "EADDRINUSE") return new Deno.errors.AddrInUse(message);
  if (code === "EADDRNOTAVAIL") return new Deno.errors.AddrNotAvailable(message);
  if (code === "EACCES") return new Deno.errors.PermissionDenied(message);
  return e;
}
