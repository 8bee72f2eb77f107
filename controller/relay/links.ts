/**
 * The controller's paths to its clients: the embedded relay (in-process,
 * no socket between relay and controller) and reverse tunnels to remote
 * relays (dialled out; the controller never listens for them).
 *
 * All of them share the controller's one revocation list: the embedded
 * relay checks devices against it, relay dials check relay certificates
 * against it, and each new revocation is pushed at once to every connected
 * remote relay that takes policy (and closes the tunnel of a relay whose own
 * certificate it names).
 *
 * Renewed certificates are taken up while running (ServiceCertHolders): the
 * embedded relay's listener presents a renewed `embedded-relay` certificate
 * to new connections (open ones go on), and every tunnel presents the
 * renewed `controller-client` certificate: an up tunnel is cycled
 * make-before-break (TunnelClient.renewed: a new session, then the old one
 * drains on the relay, its calls finishing); a tunnel that is down or
 * dialling uses it at its next dial.
 */
import type { Logger } from "../../core/log.ts";
import { certPem, type RevocationList } from "../../core/pki/mod.ts";
import { splitListen } from "../../core/settings.ts";
import type { ConnectionSettings } from "../../relay/conn_limits.ts";
import { type RunningRelay, startRelay } from "../../relay/relay.ts";
import { embeddedTransport } from "../../relay/transport.ts";
import { type ControllerConfig, listSetting } from "../config.ts";
import type { ControllerGrpc } from "../grpc/server.ts";
import type { Revocations } from "../revocation.ts";
import { serviceCert, type ServiceCertHolders } from "../service_certs.ts";
import type { ControllerState } from "../state.ts";
import { watchRelayTargets } from "../onboarding/relay_targets.ts";
import { PolicySource, relayIdByHost } from "./policy_source.ts";
import { type PushOutcome, TunnelClient } from "./tunnel_client.ts";
import type { ControllerTlsIdentity } from "./dial.ts";

/** Default poll of the relays table (`cox relays add` from another process). */
export const RELAY_POLL_MS = 5000;

export interface RelayLinks {
  embedded: RunningRelay | null;
  /** The tunnels dialled now: the configured ones, then the onboarded relays of the table. */
  tunnels: TunnelClient[];
  /** The controller's revocation list, shared by the embedded relay (and pushed to remote ones). */
  revoked: RevocationList;
  /** Sends the current policy (revocations, egress allow-list) to every connected remote relay. */
  pushPolicy(): Promise<PushOutcome[]>;
  /**
   * Takes renewed certificates from `holders` from now on: `embedded-relay`
   * for the embedded relay's listener, `controller-client` for the tunnels
   * (up ones are cycled onto it). Returns the function that stops it.
   */
  holdCertificates(holders: ServiceCertHolders): () => void;
  close(): Promise<void>;
}

export async function startRelayLinks(
  state: ControllerState,
  cfg: ControllerConfig,
  grpc: ControllerGrpc,
  revocations: Revocations,
  log: Logger,
  /** Caps and limits of the embedded relay's device listener (default: from the fd limit). */
  connections?: ConnectionSettings,
  /** How often the relays table is read for relays added or removed meanwhile. */
  relayPollMs = RELAY_POLL_MS,
): Promise<RelayLinks> {
  const revoked = revocations.list;
  const fleetPem = certPem(state.pki.cas.fleet.cert);
  const caPem = certPem(state.pki.cas.root.cert) + fleetPem;
  let embedded: RunningRelay | null = null;
  if (cfg.relayListen !== "off") {
    const id = await serviceCert(state, "embedded-relay", listSetting(cfg.relayHosts));
    try {
      embedded = await startRelay({
        listen: splitListen(cfg.relayListen),
        certPem: id.chainPem,
        keyPem: id.keyPem,
        caPem,
        deviceCaPem: certPem(state.pki.cas.device.cert),
        trust: state.pki.trust,
        revoked,
        transport: embeddedTransport((c) => grpc.acceptInProcess(c)),
        log: log.child({ part: "embedded-relay" }),
        listenSetting: "--relay-listen (PHAROS_RELAY_LISTEN), or off",
        connections,
      });
    } catch (e) {
      // The controller stays useful without it (dashboard, fleet driving).
      log.error("embedded relay not started", { error: e });
    }
  }
  const client = await serviceCert(state, "controller-client");
  // One identity for every tunnel, read at each dial: a renewal changes it in place.
  const identity: ControllerTlsIdentity = {
    certPem: client.chainPem,
    keyPem: client.keyPem,
    caPem,
    trust: state.pki.trust,
    revoked,
  };
  const policy = new PolicySource(state.db, revocations);
  const dial = (target: string) => {
    const i = target.lastIndexOf(":");
    const host = target.slice(0, i).replace(/^\[|\]$/g, "");
    const t = new TunnelClient({
      target: { host, port: Number(target.slice(i + 1)) },
      identity,
      accept: (c) => grpc.accept(c),
      // Plain HTTP/2 substreams: the relay was verified at the tunnel's TLS (tunnel_client.ts).
      acceptPlain: (c) => grpc.acceptInProcess(c),
      // Each relay's egress allow-list holds only the nodes reached through it.
      policy: () => policy.document(relayIdByHost(state.db, host)),
      catchUp: (n) => policy.catchUp(n),
      revocations,
      log: log.child({ part: "tunnel", relay: target }),
    });
    t.start();
    return t;
  };
  const configured = listSetting(cfg.relayTunnels);
  const tunnels = configured.map(dial);
  // Relays onboarded with `cox relays add` (maybe by another process): dialled
  // without a restart, dropped when removed. A configured target is never doubled.
  const fromTable = new Map<string, TunnelClient>();
  const stopWatching = watchRelayTargets(state.db, {
    intervalMs: relayPollMs,
    onChange({ added, removed }) {
      for (const r of removed) {
        const t = fromTable.get(r.target);
        if (!t) continue;
        fromTable.delete(r.target);
        tunnels.splice(tunnels.indexOf(t), 1);
        log.info("relay removed: tunnel closed", { relay: r.target, relay_id: r.id });
        void t.stop();
      }
      for (const r of added) {
        if (configured.includes(r.target) || fromTable.has(r.target)) continue;
        const t = dial(r.target);
        fromTable.set(r.target, t);
        tunnels.push(t);
        log.info("relay added: dialling its tunnel", { relay: r.target, relay_id: r.id });
      }
    },
    onError: (e) => log.error("cannot read the relays table", { code: "relay-targets", error: e }),
  });
  const pushPolicy = () => Promise.all(tunnels.map((t) => t.pushPolicy()));
  // Tell the relays at once (tunnels subscribed first: a revoked relay is already cut off).
  const unsubscribe = revocations.subscribe(() => void pushPolicy());
  return {
    embedded,
    tunnels,
    revoked,
    pushPolicy,
    holdCertificates(holders) {
      const relay = embedded;
      const released = [
        holders.hold("controller-client", (c) => {
          identity.certPem = c.chainPem;
          identity.keyPem = c.keyPem;
          for (const t of tunnels) t.renewed();
        }),
        ...(relay
          ? [holders.hold("embedded-relay", (c) => relay.setCertificate(c.chainPem, c.keyPem))]
          : []),
      ];
      return () => released.forEach((release) => release());
    },
    async close() {
      stopWatching();
      unsubscribe();
      await Promise.all(tunnels.map((t) => t.stop()));
      await embedded?.close();
    },
  };
}
