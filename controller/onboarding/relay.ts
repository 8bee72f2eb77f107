/**
 * `cox relays add`: onboards a remote relay over SSH (engine.ts steps):
 * relay installed, its key and CSR made on the relay, the relay certificate
 * issued by the Fleet CA for its names and installed with the CA files
 * `relay run` reads (README "Relay": relay.crt = leaf + Fleet CA, ca.crt,
 * fleet-ca.crt, device-ca.crt), the service started and its tunnel port
 * presenting the new certificate. The relay row then appears in
 * `relayTunnelTargets(db)`, which a running controller polls.
 */
import { certDer, certPem } from "../../core/pki/mod.ts";
import { RELAY_FILES } from "../../relay/run.ts";
import { type Relay, Relays } from "../service/relays.ts";
import { Service } from "../service/service.ts";
import { hostField } from "../service/validate.ts";
import type { ControllerState } from "../state.ts";
import { formatSshTarget, type SshTarget } from "../ssh/target.ts";
import { caFiles, type EngineResult, runOnboarding, type SshCredentials } from "./engine.ts";
import { OnboardingError } from "./errors.ts";
import type { ProgressListener } from "./events.ts";
import type { ReadyWait } from "./node_control.ts";
import { prepare } from "./prepare.ts";
import { waitRelayTunnel } from "./relay_probe.ts";
import { RELAY_SETUP, type RemoteSetup } from "./setup.ts";
import { certificateFiles, controllerIdentity, rowSubject } from "./subject.ts";

export interface RelayOnboarding {
  target: SshTarget;
  /** Further names/IPs for the certificate (the SSH host is always the first). */
  hosts?: string[];
  /** The relay's tunnel port (default 8444, or what the row holds). */
  tunnelPort?: number;
  credentials: SshCredentials;
  sudo: boolean;
  acceptHostKey?: string;
  setup?: Partial<RemoteSetup>;
  ready?: ReadyWait;
  rerun?: string;
  onProgress?: ProgressListener;
  connectTimeoutMs?: number;
  /** Renew the certificate of an onboarded host (see EngineOptions.renew). */
  renew?: boolean;
  /** Ends the run at once when aborted (see EngineOptions.signal). */
  signal?: AbortSignal;
}

export interface RelayOnboardingResult extends EngineResult {
  relay: Relay;
}

export async function onboardRelay(
  state: Pick<ControllerState, "db" | "keystore" | "pki">,
  actor: string,
  req: RelayOnboarding,
): Promise<RelayOnboardingResult> {
  const { setup, acceptHostKey } = await prepare(RELAY_SETUP, req.setup, req.acceptHostKey);
  let hosts: string[];
  try {
    hosts = [
      ...new Set([req.target.host, ...(req.hosts ?? [])].map((h) => hostField(h, "relay name"))),
    ];
  } catch (e) {
    throw new OnboardingError("bad-setup", (e as Error).message, "prepare");
  }
  const service = new Service(state.db);
  const relays = new Relays(service);
  const relay = relays.beginOnboarding(actor, {
    host: req.target.host,
    sshPort: req.target.port,
    sshUser: req.target.user,
    tunnelPort: req.tunnelPort,
  });
  const ca = caFiles(state.pki.cas);
  const result = await runOnboarding(
    { service, keystore: state.keystore, pki: state.pki, actor },
    {
      ...rowSubject(relays, actor, relay.id),
      kind: "relay",
      name: relay.host,
      profile: { kind: "relay", hosts },
      recordCertificate: (leaf, serial) =>
        relays.certifiedOnboarding(actor, relay.id, {
          serial,
          pem: certPem(leaf),
          hosts,
          notAfter: leaf.notAfter,
        }),
      files: (leaf) => certificateFiles(RELAY_FILES, leaf, state.pki.cas.fleet.cert, ca),
      // The agent re-reads node.crt when it changes; the relay reads its files at start.
      reloadsCertificates: false,
      waitReady: async (leaf, note, signal) => {
        const identity = await controllerIdentity(state, ca);
        const port = relays.require(relay.id).tunnelPort;
        const alpn = await waitRelayTunnel({
          host: relay.host,
          port,
          identity,
          expectDer: certDer(leaf),
          wait: req.ready,
          signal,
          onAttempt: (i, err) => note(`tunnel port not answering yet (attempt ${i}: ${err})`),
        });
        return {
          message:
            `the tunnel port ${relay.host}:${port} presents the new certificate (ALPN ${alpn})`,
          details: { alpn },
        };
      },
    },
    {
      target: req.target,
      credentials: req.credentials,
      sudo: req.sudo,
      acceptHostKey,
      setup,
      rerun: req.rerun ?? `cox relays add ${formatSshTarget(req.target)}`,
      onProgress: req.onProgress,
      connectTimeoutMs: req.connectTimeoutMs,
      renew: req.renew,
      signal: req.signal,
    },
  );
  return { ...result, relay: relays.require(relay.id) };
}
