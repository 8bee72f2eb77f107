/**
 * NodeControl request messages for reconcile's steps (CONTRACTS.md §1.2),
 * as the fleet driver's NodeCaller takes them: snake_case fields, int64 as
 * decimal strings, PushConfig's `config` as the encoded AmneziaWGConfig
 * (agent/proto.ts, the agent's own decoder's types).
 */
import { type NetworkPolicy, obfuscationMessage } from "../../core/dataplane/mod.ts";
import { encodeConfig, nodeTypes } from "../../agent/proto.ts";
import type { NodeMessage } from "../fleet/types.ts";
import type { DesiredLink, DesiredPeer } from "./desired.ts";

export const AWG = "PROTOCOL_AMNEZIAWG";
export const XRAY = "PROTOCOL_XRAY_REALITY";

/** A Peer message; `psk` already opened (base64, "" = none). */
export function peerMessage(p: DesiredPeer, psk: string): NodeMessage {
  return {
    id: p.id,
    protocol: p.protocol === "awg" ? AWG : XRAY,
    public_key: p.publicKey,
    allowed_ips: p.allowedIps,
    preshared_key: psk,
    endpoints: [],
    flow: "",
  };
}

/** PushConfig of the whole client-interface peer set at `revision`. */
export function pushConfigRequest(peers: NodeMessage[], revision: number): NodeMessage {
  return {
    protocol: AWG,
    revision: String(revision),
    config: encodeConfig(nodeTypes.AmneziaWGConfig, { peers }),
  };
}

/** SetNetworkConfig: the toggles, transits and endpoint ranges (§5.5–5.7). */
export function networkConfigRequest(p: NetworkPolicy): NodeMessage {
  return {
    config: {
      forwarding: p.forwarding,
      masquerade: p.masquerade,
      isolation: p.isolation,
      transits: p.transits.map((t) => ({
        device_cidr: t.deviceCidr,
        inner_interface: t.innerInterface,
        mark: t.mark,
        table: t.table,
      })),
      endpoint_ranges: (p.endpointRanges ?? []).map((r) => ({
        ip: r.ip,
        port_min: r.portMin,
        port_max: r.portMax,
      })),
    },
  };
}

/** ConfigureInnerLink on the entry: the exit as its single peer, all traffic (§5.6). */
export function innerLinkRequest(l: DesiredLink, psk: string, revision: number): NodeMessage {
  return {
    revision: String(revision),
    config: {
      interface: l.slot.interfaceName,
      listen_port: l.slot.listenPort,
      mtu: l.mtu,
      peer_obfuscation: obfuscationMessage(l.exit!.obfuscation),
      exit: {
        id: l.linkId,
        protocol: AWG,
        public_key: l.exit!.awgPublicKey,
        allowed_ips: ["0.0.0.0/0"],
        preshared_key: psk,
        endpoints: [l.exitEndpoint],
        flow: "",
      },
    },
  };
}
