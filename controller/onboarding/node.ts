/**
 * `cox nodes add`: onboards a node over SSH (engine.ts steps) and leaves it
 * active: agent installed, its key and CSR made on the node, the node
 * certificate issued by the Fleet CA and installed with the CA files the
 * agent reads (agent/materials.ts: node.crt = leaf + Fleet CA, ca.crt,
 * fleet-ca.crt, device-ca.crt), the service started and NodeControl
 * answering the controller's client certificate.
 */
import { certDer, certPem } from "../../core/pki/mod.ts";
import { joinHostPort } from "../../core/net/mod.ts";
import { type Node, Nodes } from "../service/nodes.ts";
import { Service } from "../service/service.ts";
import type { ControllerState } from "../state.ts";
import { formatSshTarget, type SshTarget } from "../ssh/target.ts";
import { caFiles, type EngineResult, runOnboarding, type SshCredentials } from "./engine.ts";
import type { ProgressListener } from "./events.ts";
import { type ReadyWait, waitNodeControl } from "./node_control.ts";
import { prepare } from "./prepare.ts";
import { NODE_SETUP, type RemoteSetup } from "./setup.ts";
import { certificateFiles, controllerIdentity, rowSubject } from "./subject.ts";

/** The files the agent reads from its state directory (agent/materials.ts NODE_FILES). */
export const NODE_CERT_FILES = {
  cert: "node.crt",
  root: "ca.crt",
  fleetCa: "fleet-ca.crt",
  deviceCa: "device-ca.crt",
} as const;

export interface NodeOnboarding {
  target: SshTarget;
  /** Node name (default: made from the host; an existing node of that name is resumed). */
  name?: string;
  region?: string;
  credentials: SshCredentials;
  /** The SSH user is not root: use sudo. */
  sudo: boolean;
  acceptHostKey?: string;
  /** Overrides of NODE_SETUP (install script, directory, commands). */
  setup?: Partial<RemoteSetup>;
  /** gRPC target of the agent's NodeControl (default host:control_port of the node). */
  nodeControlTarget?: string;
  ready?: ReadyWait;
  /** The command to re-run, for messages (default `cox nodes add user@host:port`). */
  rerun?: string;
  onProgress?: ProgressListener;
  connectTimeoutMs?: number;
  /** Renew the certificate of an onboarded host (see EngineOptions.renew). */
  renew?: boolean;
  /** Ends the run at once when aborted (see EngineOptions.signal). */
  signal?: AbortSignal;
}

export interface NodeOnboardingResult extends EngineResult {
  node: Node;
}

export async function onboardNode(
  state: Pick<ControllerState, "db" | "keystore" | "pki">,
  actor: string,
  req: NodeOnboarding,
): Promise<NodeOnboardingResult> {
  const { setup, acceptHostKey } = await prepare(NODE_SETUP, req.setup, req.acceptHostKey);
  const service = new Service(state.db);
  const nodes = new Nodes(service);
  const node = nodes.beginOnboarding(actor, {
    name: req.name,
    host: req.target.host,
    sshPort: req.target.port,
    sshUser: req.target.user,
    region: req.region,
  });
  const ca = caFiles(state.pki.cas);
  const result = await runOnboarding(
    { service, keystore: state.keystore, pki: state.pki, actor },
    {
      ...rowSubject(nodes, actor, node.id),
      kind: "node",
      name: node.name,
      profile: { kind: "node", host: node.host },
      recordCertificate: (leaf, serial) =>
        nodes.certified(actor, node.id, serial, certPem(leaf), leaf.notAfter),
      files: (leaf) => certificateFiles(NODE_CERT_FILES, leaf, state.pki.cas.fleet.cert, ca),
      // The agent re-reads node.crt when it changes; the relay reads its files at start.
      reloadsCertificates: true,
      waitReady: async (leaf, note, signal) => {
        const identity = await controllerIdentity(state, ca);
        const target = req.nodeControlTarget ?? joinHostPort(node.host, node.controlPort);
        const status = await waitNodeControl({
          target,
          identity,
          expectDer: certDer(leaf),
          wait: req.ready,
          signal,
          onAttempt: (i, err) => note(`NodeControl not answering yet (attempt ${i}: ${err})`),
        });
        return {
          message: `NodeControl at ${target} answers: ${
            status.agent_version || "agent"
          }, up ${status.uptime_seconds} s, applied revision ${status.applied_revision}`,
          details: { agentVersion: status.agent_version },
        };
      },
    },
    {
      target: req.target,
      credentials: req.credentials,
      sudo: req.sudo,
      acceptHostKey,
      setup,
      rerun: req.rerun ?? `cox nodes add ${formatSshTarget(req.target)} --name ${node.name}`,
      onProgress: req.onProgress,
      connectTimeoutMs: req.connectTimeoutMs,
      renew: req.renew,
      signal: req.signal,
    },
  );
  return { ...result, node: nodes.require(node.id) };
}
