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
 *
 * Everything started is stopped through one stack, newest first: by
 * `shutdown`, and when a later start-up step fails (the error is then
 * re-thrown), so a failed start leaves no worker process, listener or open
 * database behind.
 */
import { timeLimitsOf } from "../core/conn_limits.ts";
import { certPem } from "../core/pki/mod.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { rateLimitedLogger } from "../core/log_limit.ts";
import { splitListen } from "../core/settings.ts";
import { planFromSettings } from "../relay/conn_limits.ts";
import { softNofile } from "../relay/host/fd_limit.ts";
import { Accounts, accountSyncService, relayEndpoint } from "./accounts/mod.ts";
import { withDashboard } from "../ui/server.ts";
import { createApp } from "./api/app.ts";
import { nodeOnboarding } from "./api/onboard.ts";
import { announceSetupLink } from "./api/setup_link.ts";
import { startDashboard } from "./api/listener.ts";
import { type ControllerConfig, listSetting } from "./config.ts";
import { Devices } from "./devices.ts";
import { createControllerGrpc } from "./grpc/server.ts";
import { type RelayLinks, startRelayLinks } from "./relay/links.ts";
import { Revocations } from "./revocation.ts";
import { type FleetDriver, startFleetDriver } from "./fleet/driver.ts";
import { registerFleetMetrics } from "./monitoring.ts";
import { Reconciler } from "./reconcile/reconciler.ts";
import { ControllerFleetView } from "./fleet_view.ts";
import { GeoipStore } from "./geoip/store.ts";
import { startRenewal } from "./renewal.ts";
import { Service, SYSTEM_ACTOR } from "./service/service.ts";
import { serviceCert, ServiceCertHolders } from "./service_certs.ts";
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
  /** Users, tickets, claims, profiles (AccountSync is served from it). */
  accounts: Accounts;
  /** The nodes' links (NodeControl calls, health, events). */
  fleet: FleetDriver;
  /** Keeps every node as the database wants it. */
  reconciler: Reconciler;
  /** Bound dashboard port. */
  uiPort: number;
  /** The parts holding a service certificate; `renewed` is the renewal check's reload. */
  certificates: ServiceCertHolders;
  shutdown(): Promise<void>;
}

export interface StartOptions {
  services?: Parameters<typeof createControllerGrpc>[0]["services"];
  logSink?: (line: string) => void;
  /** Where the first admin's setup link is printed (stdout by default). */
  print?: (line: string) => void;
  /** Clock of the device expiry check (tests). */
  now?: () => Date;
  /** How often the relays table is read for added or removed relays (tests). */
  relayPollMs?: number;
  /** Told which nodes gained or lost device peers (the reconcile loop's nudge). */
  onPeersChanged?: (nodeIds: string[]) => void;
}

export async function startController(
  cfg: ControllerConfig,
  opts: StartOptions = {},
): Promise<RunningController> {
  const log = createLogger("controller", { level: cfg.logLevel, sink: opts.logSink });
  const state = await openState(cfg.state, { create: true });
  const stops = new StopStack(log);
  stops.push(() => state.close());
  try {
    return await startOn(state, stops, cfg, opts, log);
  } catch (e) {
    await stops.unwind();
    throw e;
  }
}

async function startOn(
  state: ControllerState,
  stops: StopStack,
  cfg: ControllerConfig,
  opts: StartOptions,
  log: Logger,
): Promise<RunningController> {
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
  // Nodes: one mTLS link each (in a supervised child process), health, events...
  const fleet = await startFleetDriver(state, { log: log.child({ part: "fleet" }), revocations });
  stops.push(() => fleet.stop());
  // ...and the loop that keeps each node as the database wants it.
  // Accounts needs the reconciler's nudge and the reconciler tells accounts the node keys.
  const late: { accounts?: Accounts } = {};
  const reconciler = new Reconciler({
    service: new Service(state.db),
    caller: fleet,
    sealer: state.keystore,
    log: log.child({ part: "reconcile" }),
    onNodeKey: (id, key) =>
      void late.accounts?.nodeKeyObserved(id, key).catch((e) =>
        log.error("node key not recorded", { code: "node-key", node: id, error: e })
      ),
    // Profiles advertise the endpoint ranges nodes confirmed: a change reseals them.
    resealProfiles: async (signal) => await late.accounts?.reprovisionAll(signal),
  });
  const embeddedRelay: { port?: number } = {};
  const accounts = late.accounts = await Accounts.open({
    db: state.db,
    keystore: state.keystore,
    pki: state.pki,
    devices,
    // The embedded relay's bound port is known once it listens (below).
    relay: () => relayEndpoint(cfg, embeddedRelay.port),
    onPeersChanged: (ids) => {
      reconciler.nudge(ids);
      opts.onPeersChanged?.(ids);
    },
    now: opts.now,
    log: log.child({ part: "accounts" }),
  });
  const services = [...(opts.services ?? [])];
  // A caller's own AccountSync (tests) replaces ours: grpc-js takes one per name.
  const hasAccountSync = services.some(([def]) =>
    Object.values(def).some((m) => m.path.startsWith("/pharos.account.v1.AccountSync/"))
  );
  if (!hasAccountSync) services.push(accountSyncService(accounts, log.child({ part: "accounts" })));
  const grpc = createControllerGrpc({
    certPem: server.chainPem,
    keyPem: server.keyPem,
    fleetCaPem: certPem(state.pki.cas.fleet.cert),
    trust: state.pki.trust,
    revoked: revocations.list,
    devices,
    now: opts.now,
    log: log.child({ part: "grpc" }),
    services,
  });
  stops.push(() => grpc.close());
  // Renewed certificates of the controller reach the parts holding them (renewal.ts).
  const holders = new ServiceCertHolders();
  stops.push(holders.hold("controller-server", (c) => grpc.setCertificate(c.chainPem, c.keyPem)));
  const nofile = softNofile();
  const plan = planFromSettings(cfg, 1, nofile);
  const limits = timeLimitsOf(cfg);
  const noisy = rateLimitedLogger(log);
  stops.push(() => noisy.close());
  const relays = await startRelayLinks(state, cfg, grpc, revocations, log, {
    budget: plan.publicBudget(),
    limits,
    noisy,
    // A listener that cannot be rebuilt is logged at every attempt; the controller goes on.
    onFatal: () => {},
  }, opts.relayPollMs);
  stops.push(() => relays.close());
  stops.push(relays.holdCertificates(holders));
  embeddedRelay.port = relays.embedded?.port;

  const { hostname, port } = splitListen(cfg.uiListen);
  if (!["127.0.0.1", "::1", "localhost"].includes(hostname)) {
    log.warn("the dashboard listens beyond loopback; put a TLS reverse proxy in front of it", {
      listen: cfg.uiListen,
    });
  }
  const fleetView = new ControllerFleetView(state.db, fleet, reconciler);
  stops.push(() => fleetView.close());
  // The admin API, with the dashboard (its first client) on every path outside /api.
  const api = await withDashboard((ui) =>
    createApp({
      state,
      ui,
      log: log.child({ part: "api" }),
      onboard: nodeOnboarding(state),
      accounts,
      fleetView,
      geoip: new GeoipStore(cfg.state, log.child({ part: "geoip" })),
      trustedProxies: listSetting(cfg.trustedProxies),
      allowedOrigins: listSetting(cfg.allowedOrigins),
      metricsOnLoopback: cfg.metricsLoopback === "on",
    }), { log: log.child({ part: "dashboard" }) });
  stops.push(() => api.close());
  // Unwound before the API and the database: running reseals and downloads end first.
  stops.push(() => api.operations.close());
  const http = await startDashboard({
    listen: { hostname, port },
    handler: api,
    budget: plan.localBudget(),
    limits,
    log,
    noisy,
  }).catch((e) => Promise.reject(asRuntimeListenError(e)));
  stops.push(() => http.close());
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
  const uiHost = hostname.includes(":") ? `[${hostname}]` : hostname;
  announceSetupLink(api.auth, `http://${uiHost}:${http.port}`, log, opts.print);
  const sync = setInterval(() => {
    try {
      revocations.sync();
    } catch (e) {
      log.error("cannot read revocations", { code: "revocation-sync", error: e });
    }
  }, REVOCATION_SYNC_MS);
  stops.push(() => clearInterval(sync));
  // Certificates of nodes, relays and the controller itself, renewed before they expire.
  stops.push(startRenewal(state, { log: log.child({ part: "renewal" }), reload: holders.renewed }));
  registerFleetMetrics(api.metrics.registry, { fleet, reconciler });
  stops.push(fleet.subscribe((e) => {
    // A node that answers again is brought up to date at once; every event goes to the feed.
    if (e.kind === "health" && e.health === "healthy") reconciler.nudge([e.nodeId]);
    api.publish(e.kind === "health" ? "node" : "node-event", e);
  }));
  reconciler.start();
  stops.push(() => reconciler.stop());
  log.info("controller ready", {
    dashboard: `http://${uiHost}:${http.port}`,
    embedded_relay: relays.embedded ? `${cfg.relayListen} (port ${relays.embedded.port})` : "off",
    relay_tunnels: relays.tunnels.length,
    nodes: fleet.nodeIds().length,
    reconcile_interval_ms: reconciler.intervalMs,
    state: cfg.state,
  });
  return {
    state,
    relays,
    devices,
    revocations,
    accounts,
    fleet,
    reconciler,
    uiPort: http.port,
    certificates: holders,
    async shutdown() {
      await stops.unwind();
      log.info("stopped");
    },
  };
}

/**
 * What has been started, as the functions that stop it; `unwind` runs them
 * newest first. A stop that fails is logged and the others still run.
 */
class StopStack {
  readonly #stops: (() => unknown)[] = [];
  constructor(private readonly log: Logger) {}

  push(stop: () => unknown): void {
    this.#stops.push(stop);
  }

  async unwind(): Promise<void> {
    for (let stop = this.#stops.pop(); stop; stop = this.#stops.pop()) {
      try {
        await stop();
      } catch (e) {
        this.log.error("cannot stop a part", { code: "stop-failed", error: e });
      }
    }
  }
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
