/**
 * The difference between one node's desired and observed state, as the
 * NodeControl steps that heal it (pure: no I/O, no clock).
 *
 * - Data plane: not running, or live on fewer peers than configured (the
 *   daemon lost its state) → RestartService, first.
 * - Client-interface peers (CONTRACTS.md §1.3): a node behind the desired
 *   revision (or fresh) gets the whole set with PushConfig at that
 *   revision; a node ahead of it (a revision the controller never issued:
 *   an edited state file, a restored backup) gets it at its revision + 1,
 *   which the controller records first; otherwise a few missing, changed or
 *   extra peers are AddPeer/RemovePeer each, many are one PushConfig at
 *   the next revision. An `incomplete` desired set never removes a peer.
 * - Xray clients: AddPeer/RemovePeer, only where Xray is configured.
 * - Network policy: NodeControl cannot read it back, so it is sent when
 *   reconcile has not sent it to this agent run yet (controller start, new
 *   node), when it changed, when the agent restarted since (it re-applies
 *   its own file, which may have been edited), or when the agent reports
 *   rules missing.
 * - Inner links: ConfigureInnerLink at the link's revision every sweep, a
 *   no-op on a node that has it (§1.3) and a re-creation where it went
 *   missing; a changed link (exit key, obfuscation, endpoint, MTU) is
 *   removed and configured at the next revision; links of removed paths
 *   are taken down.
 */
import type { NetworkPolicy } from "../../core/dataplane/mod.ts";
import { type DesiredLink, type DesiredNode, type DesiredPeer, policyKey } from "./desired.ts";
import type { ObservedNode } from "./observed.ts";

/** What reconcile remembers about a node between sweeps (in memory). */
export interface NodeMemory {
  /** policyKey() of the policy last sent, and the agent run it was sent to. */
  policyKey: string | null;
  /** Estimated start of the agent run (s since the epoch) when last observed. */
  agentStart: number | null;
  /** How far off that estimate may be (s): agentSlackOf() of that observation. */
  agentStartSlack?: number;
  /** The agent's uptime (s) when last observed. */
  uptime: number | null;
  /** linkKey() of each inner link last configured, by node_links id. */
  links: Map<string, string>;
}

export const emptyMemory = (): NodeMemory => ({
  policyKey: null,
  agentStart: null,
  uptime: null,
  links: new Map(),
});

export type Step =
  | { kind: "restart-service"; reason: string }
  | { kind: "push-config"; revision: number; raise: boolean; reason: string }
  | { kind: "add-peer"; protocol: "awg" | "xray"; peer: DesiredPeer; reason: "missing" | "changed" }
  | { kind: "remove-peer"; protocol: "awg" | "xray"; publicKey: string }
  | { kind: "set-network"; policy: NetworkPolicy; reason: string; heal: boolean }
  | { kind: "configure-link"; link: DesiredLink; replace: boolean }
  | { kind: "remove-link"; linkId: string; interfaceName: string };

export interface DiffOptions {
  /** More peer differences than this (or than a quarter of the set) → one PushConfig. */
  fullPushThreshold?: number;
  /** Seconds an agent's start estimate may move before it counts as a restart. */
  restartToleranceS?: number;
}

/** The agent run's start (s since the epoch), from its uptime. */
export const agentStartOf = (o: ObservedNode): number => o.at / 1000 - o.status.uptimeSeconds;

/**
 * How far agentStartOf() may be off (s): the node answered somewhere during
 * the GetStatus call, which a loaded controller or fleet worker can stretch
 * well past the restart tolerance.
 */
export const agentSlackOf = (o: ObservedNode): number => (o.callMs ?? 0) / 1000;

/** The text that changes when an inner link must be re-created. */
export function linkKey(l: DesiredLink): string {
  return JSON.stringify([
    l.slot.index,
    l.mtu,
    l.exitEndpoint,
    l.exit?.awgPublicKey,
    l.exit?.obfuscation,
  ]);
}

const sameIps = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** The steps that bring `observed` to `desired`, in the order to run them. */
export function diffNode(
  desired: DesiredNode,
  observed: ObservedNode,
  memory: NodeMemory,
  opts: DiffOptions = {},
): Step[] {
  const steps: Step[] = [];
  const st = observed.status;

  if (!st.awg.running) {
    steps.push({
      kind: "restart-service",
      reason: `data plane not running (${st.awg.detail || "no detail"})`,
    });
  } else if (st.awg.peerCount < observed.awgPeers.size) {
    steps.push({
      kind: "restart-service",
      reason:
        `data plane live on ${st.awg.peerCount} of ${observed.awgPeers.size} configured peers`,
    });
  }

  steps.push(...peerSteps(desired, observed, opts));

  if (observed.xrayPeers !== null) {
    const want = new Set(desired.xrayPeers.map((p) => p.publicKey.toLowerCase()));
    for (const p of desired.xrayPeers) {
      if (!observed.xrayPeers.has(p.publicKey.toLowerCase())) {
        steps.push({ kind: "add-peer", protocol: "xray", peer: p, reason: "missing" });
      }
    }
    for (const id of observed.xrayPeers) {
      if (!want.has(id)) steps.push({ kind: "remove-peer", protocol: "xray", publicKey: id });
    }
  }

  // Links before the policy: its transits route into them.
  for (const l of desired.links) {
    if (l.exit === null) continue; // the exit was never observed: nothing to dial yet
    const before = memory.links.get(l.linkId);
    steps.push({
      kind: "configure-link",
      link: l,
      replace: before !== undefined && before !== linkKey(l),
    });
  }
  for (const s of desired.staleLinks) {
    steps.push({ kind: "remove-link", linkId: s.linkId, interfaceName: s.interfaceName });
  }

  const key = policyKey(desired.policy);
  const tolerance = opts.restartToleranceS ?? 3;
  // Uptime going back catches a quick restart; a start that moved, one between sweeps far apart.
  const restarted = (memory.uptime !== null && st.uptimeSeconds < memory.uptime) ||
    (memory.agentStart !== null &&
      Math.abs(agentStartOf(observed) - memory.agentStart) >
        tolerance + agentSlackOf(observed) + (memory.agentStartSlack ?? 0));
  const reason = memory.policyKey === null
    ? "first contact of this controller run"
    : memory.policyKey !== key
    ? "policy changed"
    : restarted
    ? "agent restarted"
    : st.policyPending
    ? "agent reports rules missing"
    : null;
  if (reason !== null) {
    steps.push({
      kind: "set-network",
      policy: desired.policy,
      reason,
      heal: memory.policyKey !== null,
    });
  }
  return steps;
}

function peerSteps(desired: DesiredNode, observed: ObservedNode, opts: DiffOptions): Step[] {
  const applied = observed.status.appliedRevision;
  const want = desired.revision;
  if (applied < want) {
    return [{
      kind: "push-config",
      revision: want,
      raise: false,
      reason: applied === 0 ? "fresh node" : `node at revision ${applied}, desired ${want}`,
    }];
  }
  if (applied > want) {
    return [{
      kind: "push-config",
      revision: applied + 1,
      raise: true,
      reason: `node reports revision ${applied}, ahead of the controller's ${want}`,
    }];
  }
  const steps: Step[] = [];
  const wanted = new Set<string>();
  for (const p of desired.awgPeers) {
    wanted.add(p.publicKey);
    const o = observed.awgPeers.get(p.publicKey);
    if (!o) steps.push({ kind: "add-peer", protocol: "awg", peer: p, reason: "missing" });
    else if (!sameIps(o.allowedIps, p.allowedIps)) {
      steps.push({ kind: "add-peer", protocol: "awg", peer: p, reason: "changed" });
    }
  }
  if (!desired.incomplete) {
    for (const key of observed.awgPeers.keys()) {
      if (!wanted.has(key)) steps.push({ kind: "remove-peer", protocol: "awg", publicKey: key });
    }
  }
  const limit = Math.max(opts.fullPushThreshold ?? 16, Math.floor(desired.awgPeers.length / 4));
  if (steps.length > limit && !desired.incomplete) {
    return [{
      kind: "push-config",
      revision: want + 1,
      raise: true,
      reason: `${steps.length} peers differ`,
    }];
  }
  return steps;
}
