/**
 * Runs one step of diff.ts on a node through the NodeCaller: opens the
 * preshared keys it needs, raises revisions in the database first where a
 * push must go above what the node reports (§1.3), and says whether the
 * step changed the node (a heal, recorded by the caller) or only confirmed
 * it (a first policy push, an inner link the node already had).
 */
import type { NetworkPolicy } from "../../core/dataplane/mod.ts";
import { joinHostPort } from "../../core/net/address.ts";
import type { NodeMessage, NodeMethod } from "../fleet/types.ts";
import type { Actor, Service } from "../service/service.ts";
import { type DesiredNode, policyKey } from "./desired.ts";
import { agentSlackOf, agentStartOf, linkKey, type NodeMemory, type Step } from "./diff.ts";
import type { ObservedNode } from "./observed.ts";
import { openPsk, type Sealer } from "./psk.ts";
import {
  AWG,
  innerLinkRequest,
  networkConfigRequest,
  peerMessage,
  pushConfigRequest,
  XRAY,
} from "./requests.ts";
import {
  raiseLinkRevision,
  raiseNodeRevision,
  recordConfirmedRanges,
  removeLink,
} from "./writes.ts";
import { type ConfirmedAnswer, confirmedAnswer } from "./endpoint_confirmations.ts";

export interface StepContext {
  service: Service;
  sealer: Sealer;
  actor: Actor;
  /** One call to the node; `slow` for calls that restart things. */
  call(nodeId: string, method: NodeMethod, req: NodeMessage, slow?: boolean): Promise<NodeMessage>;
}

/** A step that ran; `heal` when it changed the node (recorded in the audit log). */
export interface Done {
  step: Step;
  heal: boolean;
  detail?: Record<string, unknown>;
  /** The node confirmed other endpoint ranges than recorded (profiles must follow). */
  rangesChanged?: boolean;
}

const STALE = /stale revision (\d+) \(last applied (\d+)\)/;

/**
 * What the node answered about the endpoint ranges it now DNATs (our agent
 * lists them; the original node answers none): the pushed ranges it did not
 * confirm are named, so the heal entry shows a node that does not serve
 * part of its pool (profiles leave those out), and an answer that was
 * refused says why.
 */
function rangesDetail(policy: NetworkPolicy, answer: ConfirmedAnswer): Record<string, unknown> {
  const pushed = policy.endpointRanges ?? [];
  const refused = answer.problem === undefined ? {} : { confirmed_ranges_refused: answer.problem };
  if (pushed.length === 0) return refused;
  const confirmed = new Set(answer.ranges.map((r) => `${r.ip} ${r.portMin} ${r.portMax}`));
  const missing = pushed.filter((r) => !confirmed.has(`${r.ip} ${r.portMin} ${r.portMax}`));
  return {
    endpoint_ranges: pushed.length,
    ...(missing.length > 0
      ? {
        unconfirmed_ranges: missing.map((r) =>
          joinHostPort(r.ip, r.portMin) + (r.portMax === r.portMin ? "" : `-${r.portMax}`)
        ),
      }
      : {}),
    ...refused,
  };
}

export async function runStep(
  ctx: StepContext,
  d: DesiredNode,
  o: ObservedNode,
  mem: NodeMemory,
  step: Step,
): Promise<Done> {
  const id = d.nodeId;
  const { sealer, service, actor } = ctx;
  switch (step.kind) {
    case "restart-service":
      await ctx.call(id, "RestartService", { protocol: AWG }, true);
      return { step, heal: true };
    case "push-config": {
      if (step.raise) raiseNodeRevision(service, actor, id, step.revision);
      const peers = await Promise.all(
        d.awgPeers.map(async (p) => peerMessage(p, await openPsk(sealer, p.pskSealed, p.pskLabel))),
      );
      const res = await ctx.call(
        id,
        "PushConfig",
        pushConfigRequest(peers, step.revision),
        true,
      );
      return { step, heal: res.reloaded !== false, detail: { peers: peers.length } };
    }
    case "add-peer": {
      const psk = step.protocol === "awg"
        ? await openPsk(sealer, step.peer.pskSealed, step.peer.pskLabel)
        : "";
      await ctx.call(id, "AddPeer", { peer: peerMessage(step.peer, psk) });
      return { step, heal: true };
    }
    case "remove-peer":
      await ctx.call(id, "RemovePeer", {
        protocol: step.protocol === "awg" ? AWG : XRAY,
        public_key: step.publicKey,
      });
      return { step, heal: true };
    case "set-network": {
      mem.policyKey = "!unsent";
      const res = await ctx.call(id, "SetNetworkConfig", networkConfigRequest(step.policy));
      const answer = confirmedAnswer(res);
      // Not recorded: the policy stays "unsent", so the next pass pushes and records again.
      const rangesChanged = recordConfirmedRanges(service, actor, id, answer.ranges);
      mem.policyKey = policyKey(step.policy);
      mem.agentStart = agentStartOf(o);
      mem.agentStartSlack = agentSlackOf(o);
      return { step, heal: step.heal, detail: rangesDetail(step.policy, answer), rangesChanged };
    }
    case "configure-link": {
      const l = step.link;
      let revision = l.revision;
      if (step.replace) {
        await ctx.call(id, "RemoveInnerLink", { interface: l.slot.interfaceName });
        revision = raiseLinkRevision(service, actor, l.linkId, l.revision + 1);
      }
      const psk = await openPsk(sealer, l.pskSealed, l.pskLabel);
      let res: NodeMessage;
      try {
        res = await ctx.call(id, "ConfigureInnerLink", innerLinkRequest(l, psk, revision));
      } catch (e) {
        const m = STALE.exec((e as Error)?.message ?? "");
        if (!m) throw e;
        // The node holds a later revision than the controller issued (an edited file).
        revision = raiseLinkRevision(service, actor, l.linkId, Number(m[2]) + 1);
        res = await ctx.call(id, "ConfigureInnerLink", innerLinkRequest(l, psk, revision));
      }
      mem.links.set(l.linkId, linkKey(l));
      return { step, heal: res.reloaded === true || step.replace, detail: { revision } };
    }
    case "remove-link":
      await ctx.call(id, "RemoveInnerLink", { interface: step.interfaceName });
      removeLink(service, actor, step.linkId);
      mem.links.delete(step.linkId);
      return { step, heal: true };
  }
}
/** What a heal entry says about a step (no key material). */
export function describe(step: Step): Record<string, unknown> {
  switch (step.kind) {
    case "restart-service":
      return { reason: step.reason };
    case "push-config":
      return { revision: step.revision, reason: step.reason };
    case "add-peer":
      return { protocol: step.protocol, public_key: step.peer.publicKey, reason: step.reason };
    case "remove-peer":
      return { protocol: step.protocol, public_key: step.publicKey };
    case "set-network":
      return { reason: step.reason };
    case "configure-link":
      return {
        interface: step.link.slot.interfaceName,
        exit: step.link.exitNodeId,
        replaced: step.replace,
      };
    case "remove-link":
      return { interface: step.interfaceName };
  }
}
