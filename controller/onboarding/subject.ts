/**
 * The parts of an onboarding Subject (engine.ts) that nodes and relays
 * share: the row's pin, certificate and state, the certificate files
 * written on the host, and the client identity the readiness probe uses.
 */
import { bundlePem, type X509Certificate } from "../../core/pki/mod.ts";
import type { Actor } from "../service/service.ts";
import { serviceCert } from "../service_certs.ts";
import type { ControllerState } from "../state.ts";
import { caFiles, type Subject } from "./engine.ts";
import type { ClientIdentity } from "./node_control.ts";

/** Nodes or Relays (controller/service): where an onboarding is recorded. */
export interface OnboardingRows {
  require(id: string): { sshHostKey: string | null; certPem: string | null };
  pinHostKey(actor: Actor, id: string, line: string): unknown;
  onboardingFailed(actor: Actor, id: string, step: string, error: string): unknown;
  onboarded(actor: Actor, id: string, lastStep: string): unknown;
}

/** The Subject members that read and move row `id` of `rows`. */
export function rowSubject(
  rows: OnboardingRows,
  actor: Actor,
  id: string,
): Pick<Subject, "id" | "pinnedHostKey" | "pinHostKey" | "previousCertPem" | "failed" | "done"> {
  return {
    id,
    pinnedHostKey: () => rows.require(id).sshHostKey,
    pinHostKey: (line) => rows.pinHostKey(actor, id, line),
    previousCertPem: () => rows.require(id).certPem,
    failed: (step, message) => rows.onboardingFailed(actor, id, step, message),
    done: () => rows.onboarded(actor, id, "ready"),
  };
}

/** File names of the certificate chain (leaf + Fleet CA) and the three CA files. */
export interface CertFileNames {
  cert: string;
  root: string;
  fleetCa: string;
  deviceCa: string;
}

/** File name → content: the leaf's chain and the CA files (`ca` from caFiles). */
export function certificateFiles(
  names: CertFileNames,
  leaf: X509Certificate,
  fleet: X509Certificate,
  ca: ReturnType<typeof caFiles>,
): Record<string, string> {
  return {
    [names.cert]: bundlePem([leaf, fleet]),
    [names.root]: ca.root,
    [names.fleetCa]: ca.fleet,
    [names.deviceCa]: ca.device,
  };
}

/** The controller's client certificate, trusting root + Fleet CA (`ca` from caFiles). */
export async function controllerIdentity(
  state: Pick<ControllerState, "db" | "keystore" | "pki">,
  ca: ReturnType<typeof caFiles>,
): Promise<ClientIdentity> {
  const client = await serviceCert(state, "controller-client");
  return { chainPem: client.chainPem, keyPem: client.keyPem, caPem: ca.root + ca.fleet };
}
