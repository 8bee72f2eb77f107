/**
 * From an accepted profile to one tunnel: which entry and node to dial
 * (a cascade's entry hop, else the first node with AmneziaWG), the
 * endpoint by the original client's rule (first pool entry, `port_min ≤ 0`
 * → 443; no pool → first node IP at 443), and the config text — with the
 * device's own WireGuard key, which never left it, in place of whatever
 * key the profile carries.
 */
import { toBase64 } from "../encoding.ts";
import { amneziaConfigText } from "../profile/amnezia.ts";
import {
  type AmneziaWgProtocol,
  DEFAULT_PROFILE_MTU,
  knownProtocols,
  type ProfileDocument,
  type ProfileEntry,
  type ProfileNode,
} from "../profile/schema.ts";
import type { AwgObfuscation } from "../dataplane/obfuscation.ts";
import { ClientError } from "./errors.ts";

/** Everything needed to configure the client interface for one node. */
export interface TunnelPlan {
  profile: ProfileEntry;
  node: ProfileNode;
  /** Tunnel address with its mask, e.g. `10.8.0.2/32`. */
  address: string;
  /** Device WireGuard private key, std base64. */
  privateKey: string;
  peer: {
    publicKey: string;
    presharedKey?: string;
    endpoint: { host: string; port: number };
    allowedIps: string[];
    persistentKeepalive: number;
  };
  obfuscation: AwgObfuscation;
  mtu: number;
  /** wg-quick / AmneziaWG style config text (what `awg-quick up` and the Amnezia app take). */
  configText: string;
}

/** Selection of {@link planTunnel}: a profile and a node by id or name (default: first usable). */
export interface TunnelChoice {
  profile?: string;
  node?: string;
}

const KEEPALIVE = 25;

function awgOf(node: ProfileNode): AmneziaWgProtocol | undefined {
  return knownProtocols(node).find((p): p is AmneziaWgProtocol => p.type === "amneziawg");
}

const matches = (want: string | undefined, x: { id: string; name?: string }) =>
  want === undefined || x.id === want || x.name === want;

/** Picks entry and node and renders the config; `no-usable-node` when nothing fits. */
export function planTunnel(
  doc: ProfileDocument,
  wireguardKey: Uint8Array,
  choice: TunnelChoice = {},
): TunnelPlan {
  for (const profile of doc.profiles.filter((p) => matches(choice.profile, p))) {
    const entryId = profile.path?.hops.find((h) => h.role === "entry")?.id;
    const nodes = profile.nodes.filter((n) =>
      matches(choice.node, n) && (entryId === undefined || n.id === entryId) && awgOf(n)
    );
    if (nodes.length === 0) continue;
    return plan(profile, nodes[0], toBase64(wireguardKey));
  }
  throw new ClientError(
    "no-usable-node",
    `the profile has no AmneziaWG node${choice.profile ? ` in profile "${choice.profile}"` : ""}${
      choice.node ? ` named "${choice.node}"` : ""
    }`,
  );
}

function plan(profile: ProfileEntry, node: ProfileNode, privateKey: string): TunnelPlan {
  const awg = awgOf(node)!;
  const own: ProfileNode = {
    ...node,
    protocols: [{ ...awg, params: { ...awg.params, private_key: privateKey } }],
  };
  const p = awg.params;
  const pool = p.endpoints?.[0];
  const endpoint = pool
    ? { host: pool.ip, port: pool.port_min <= 0 ? 443 : pool.port_min }
    : { host: node.endpoints[0], port: 443 };
  if (!endpoint.host) {
    throw new ClientError("no-usable-node", `node "${node.id}" has no endpoint`);
  }
  const mtu = profile.mtu && profile.mtu > 0 ? profile.mtu : DEFAULT_PROFILE_MTU;
  // The renderer re-validates every value that lands in the text (no line injection).
  const configText = amneziaConfigText(own, { endpoint, mtu });
  return {
    profile,
    node,
    address: p.address,
    privateKey,
    peer: {
      publicKey: p.public_key,
      presharedKey: p.preshared_key || undefined,
      endpoint,
      allowedIps: p.allowed_ips?.length ? p.allowed_ips : ["0.0.0.0/0", "::/0"],
      persistentKeepalive: KEEPALIVE,
    },
    obfuscation: p.obfuscation,
    mtu,
    configText,
  };
}
