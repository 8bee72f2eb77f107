/**
 * Desired state: what every node must serve, read from the database
 * (nodes, node_peers, paths, node_links) in a few queries for the whole
 * fleet, then shaped per node by pure functions (CONTRACTS.md §1, §5.5–5.6):
 *
 * - the client interface's peers: the node's own `node_peers`, plus one
 *   edge peer per inner link that ends here (the entry node's WireGuard
 *   key, the link's PSK, allowed IPs = the tunnel addresses of the devices
 *   bound to paths over that edge);
 * - the network policy: the node's three toggles, its endpoint pool as the
 *   UDP ranges the agent DNATs onto its listener (§5.7; a pool that fails
 *   validation is reported and none is sent), and on an entry node one
 *   transit per (device CIDR, inner link) with forwarding forced on;
 * - the inner links this node dials as an entry, and the ones whose paths
 *   are gone (to take down).
 *
 * A node's WireGuard key and obfuscation are the node's own (the agent
 * makes them), so edges need what the nodes reported (`Identity`); an edge
 * whose other end was never observed makes the node's desired state
 * `incomplete`: reconcile then adds but never removes peers there.
 */
import {
  type AwgObfuscation,
  canonicalCidr,
  INNER_LINK_MTU,
  type InnerLinkSlot,
  innerLinkSlot,
  type NetworkPolicy,
  type PortRangeForward,
  type TransitRoute,
  validateEndpointRanges,
  validateNetworkPolicy,
} from "../../core/dataplane/mod.ts";
import { type Db, statement } from "../db/sqlite.ts";
import { linkPskLabel, peerPskLabel } from "./psk.ts";

/** What a node reported about itself (GetStatus), needed by its neighbours' edges. */
export interface Identity {
  awgPublicKey: string;
  obfuscation: AwgObfuscation;
}

export interface DesiredPeer {
  /** node_peers id, or `link:<node_links id>` for an edge peer. */
  id: string;
  protocol: "awg" | "xray";
  publicKey: string;
  /** Canonical order (sorted), so sets compare as strings. */
  allowedIps: string[];
  pskSealed: Uint8Array | null;
  pskLabel: string;
}

export interface DesiredLink {
  linkId: string;
  exitNodeId: string;
  slot: InnerLinkSlot;
  mtu: number;
  revision: number;
  pskSealed: Uint8Array;
  pskLabel: string;
  /** The exit's key and obfuscation; null until the exit was observed. */
  exit: Identity | null;
  /** "host:port" of the exit's AmneziaWG listener. */
  exitEndpoint: string;
}

export interface DesiredNode {
  nodeId: string;
  name: string;
  revision: number;
  policy: NetworkPolicy;
  awgPeers: DesiredPeer[];
  xrayPeers: DesiredPeer[];
  links: DesiredLink[];
  /** node_links rows of this entry whose edge no path uses any more. */
  staleLinks: { linkId: string; interfaceName: string }[];
  /** An edge's other end is unknown: do not remove peers that may be its. */
  incomplete: boolean;
  /** What in the database stops part of this node's state from being built. */
  problems: string[];
}

/** Node rows as reconcile reads them. */
export interface NodeRow {
  id: string;
  name: string;
  host: string;
  status: string;
  forwarding: number;
  masquerade: number;
  isolation: number;
  endpoints: string;
  desired_revision: number;
  /** 1 when the node holds a certificate (onboarded): the fleet driver reaches only those. */
  has_cert: number;
}

export interface PeerRow {
  id: string;
  node_id: string;
  public_key: string;
  psk_sealed: Uint8Array | null;
  allowed_ips: string;
  protocol: "awg" | "xray";
  path_id: string | null;
}

export interface PathRow {
  id: string;
  entry_node_id: string;
  exit_node_id: string;
  mtu: number | null;
}

export interface LinkRow {
  id: string;
  entry_node_id: string;
  exit_node_id: string;
  link_index: number;
  psk_sealed: Uint8Array;
  revision: number;
}

/** Everything desired state is made of, for the whole fleet. */
export interface FleetRows {
  nodes: NodeRow[];
  peers: PeerRow[];
  paths: PathRow[];
  links: LinkRow[];
}

/**
 * Node statuses reconcile drives (pending: not onboarded; disabled: left
 * alone), and only onboarded nodes (with a certificate), as the fleet driver.
 */
export const DRIVEN_STATUSES = ["active", "unreachable"] as const;

const FLEET_SQL = {
  nodes: "SELECT id, name, host, status, forwarding, masquerade, isolation, endpoints, " +
    "desired_revision, cert_pem IS NOT NULL AS has_cert FROM nodes ORDER BY id",
  peers: "SELECT id, node_id, public_key, psk_sealed, allowed_ips, protocol, path_id " +
    "FROM node_peers ORDER BY node_id, public_key",
  paths: "SELECT id, entry_node_id, exit_node_id, mtu FROM paths ORDER BY id",
  links: "SELECT id, entry_node_id, exit_node_id, link_index, psk_sealed, revision " +
    "FROM node_links ORDER BY entry_node_id, link_index",
} as const;

type Statement = ReturnType<Db["prepare"]>;
/**
 * Prepared once per database: every pass reads the fleet, and node:sqlite
 * keeps the native memory of each prepare() well past the statement's use.
 */
const prepared = new WeakMap<Db, Record<keyof typeof FLEET_SQL, Statement>>();

/** Reads the desired-state rows of the fleet (read-only). */
export function readFleetRows(db: Db): FleetRows {
  let st = prepared.get(db);
  if (!st) {
    st = {
      nodes: statement(db, FLEET_SQL.nodes),
      peers: statement(db, FLEET_SQL.peers),
      paths: statement(db, FLEET_SQL.paths),
      links: statement(db, FLEET_SQL.links),
    };
    prepared.set(db, st);
  }
  const s = st;
  const read = () => ({
    nodes: s.nodes.all() as unknown as NodeRow[],
    peers: s.peers.all() as unknown as PeerRow[],
    paths: s.paths.all() as unknown as PathRow[],
    links: s.links.all() as unknown as LinkRow[],
  });
  // One snapshot: a writer between the four reads must not split it.
  if (db.isTransaction) return read();
  db.exec("BEGIN");
  try {
    return read();
  } finally {
    db.exec("COMMIT");
  }
}

const edgeKey = (entry: string, exit: string) => `${entry}>${exit}`;

/** A node's stored endpoint pool as the ranges to push; what fails validation is reported. */
function endpointRanges(node: NodeRow, problems: string[]): PortRangeForward[] {
  try {
    return validateEndpointRanges(JSON.parse(node.endpoints), "endpoints");
  } catch (e) {
    problems.push(`endpoints not pushed: ${(e as Error).message}`);
    return [];
  }
}

/** A peer's allowed IPs in canonical form; what is not a CIDR is reported, not pushed. */
function allowedList(json: string, field: string, problems: string[]): string[] {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    v = null;
  }
  if (!Array.isArray(v)) {
    problems.push(`${field}: not a JSON list`);
    return [];
  }
  const out: string[] = [];
  for (const [i, c] of v.entries()) {
    try {
      out.push(canonicalCidr(c, `${field}[${i}]`));
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  return [...new Set(out)].sort();
}

/** The address a node's AmneziaWG listener is dialled at: its first endpoint IP, else its host. */
export function awgEndpoint(node: NodeRow, port = 443): string {
  let ip = node.host;
  try {
    const eps = JSON.parse(node.endpoints) as PortRangeForward[];
    if (Array.isArray(eps) && typeof eps[0]?.ip === "string") ip = eps[0].ip;
  } catch { /* the host then */ }
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/**
 * The edges (entry → exit) paths use, each with the smallest MTU asked for
 * (default {@link INNER_LINK_MTU}).
 */
export function pathEdges(
  paths: PathRow[],
): Map<string, { entry: string; exit: string; mtu: number }> {
  const out = new Map<string, { entry: string; exit: string; mtu: number }>();
  for (const p of paths) {
    const k = edgeKey(p.entry_node_id, p.exit_node_id);
    const mtu = p.mtu ?? INNER_LINK_MTU;
    const e = out.get(k);
    if (!e) out.set(k, { entry: p.entry_node_id, exit: p.exit_node_id, mtu });
    else e.mtu = Math.min(e.mtu, mtu);
  }
  return out;
}

/**
 * Desired state of every driven node. `identities` holds what nodes last
 * reported about themselves (see the module comment).
 */
export function buildDesired(
  rows: FleetRows,
  identities: ReadonlyMap<string, Identity>,
): Map<string, DesiredNode> {
  const byId = new Map(rows.nodes.map((n) => [n.id, n]));
  const edges = pathEdges(rows.paths);
  const pathById = new Map(rows.paths.map((p) => [p.id, p]));
  const linkByEdge = new Map(rows.links.map((l) => [edgeKey(l.entry_node_id, l.exit_node_id), l]));

  const out = new Map<string, DesiredNode>();
  for (const n of rows.nodes) {
    if (!(DRIVEN_STATUSES as readonly string[]).includes(n.status) || !n.has_cert) continue;
    const problems: string[] = [];
    out.set(n.id, {
      nodeId: n.id,
      name: n.name,
      revision: n.desired_revision,
      policy: {
        forwarding: n.forwarding === 1,
        masquerade: n.masquerade === 1,
        isolation: n.isolation === 1,
        transits: [],
        endpointRanges: endpointRanges(n, problems),
      },
      awgPeers: [],
      xrayPeers: [],
      links: [],
      staleLinks: [],
      incomplete: false,
      problems,
    });
  }

  // Devices bound to each edge: their tunnel addresses ride the inner link.
  const edgeDevices = new Map<string, Set<string>>();
  const transits = new Map<string, TransitRoute[]>();
  for (const p of rows.peers) {
    const d = out.get(p.node_id);
    if (!d) continue;
    const allowedIps = p.protocol === "awg"
      ? allowedList(p.allowed_ips, `node_peers ${p.id} allowed_ips`, d.problems)
      : [];
    const peer: DesiredPeer = {
      id: p.id,
      protocol: p.protocol,
      publicKey: p.public_key,
      allowedIps,
      pskSealed: p.protocol === "awg" ? p.psk_sealed : null,
      pskLabel: peerPskLabel(p.id),
    };
    (p.protocol === "awg" ? d.awgPeers : d.xrayPeers).push(peer);
    const path = p.path_id ? pathById.get(p.path_id) : undefined;
    if (!path || path.entry_node_id !== p.node_id || p.protocol !== "awg") continue;
    const k = edgeKey(path.entry_node_id, path.exit_node_id);
    const link = linkByEdge.get(k);
    if (!link) continue; // not allocated yet: the next sweep has it
    const set = edgeDevices.get(k) ?? new Set<string>();
    for (const ip of allowedIps) set.add(ip);
    edgeDevices.set(k, set);
    const slot = innerLinkSlot(link.link_index);
    const list = transits.get(p.node_id) ?? [];
    for (const ip of allowedIps) {
      list.push({
        deviceCidr: ip,
        innerInterface: slot.interfaceName,
        mark: slot.mark,
        table: slot.table,
      });
    }
    transits.set(p.node_id, list);
  }

  for (const l of rows.links) {
    const entry = out.get(l.entry_node_id);
    const k = edgeKey(l.entry_node_id, l.exit_node_id);
    const edge = edges.get(k);
    const slot = innerLinkSlot(l.link_index);
    if (!edge) {
      entry?.staleLinks.push({ linkId: l.id, interfaceName: slot.interfaceName });
      continue;
    }
    const exitRow = byId.get(l.exit_node_id);
    const exitIdentity = identities.get(l.exit_node_id) ?? null;
    if (entry && exitRow) {
      entry.links.push({
        linkId: l.id,
        exitNodeId: l.exit_node_id,
        slot,
        mtu: edge.mtu,
        revision: l.revision,
        pskSealed: l.psk_sealed,
        pskLabel: linkPskLabel(l.id),
        exit: exitIdentity,
        exitEndpoint: awgEndpoint(exitRow),
      });
    }
    const exit = out.get(l.exit_node_id);
    if (!exit) continue;
    const entryIdentity = identities.get(l.entry_node_id);
    if (!entryIdentity) {
      exit.incomplete = true;
      continue;
    }
    const devices = [...(edgeDevices.get(k) ?? [])].sort();
    if (devices.length === 0) continue; // RemovePeer when none remain (§5.6)
    exit.awgPeers.push({
      id: `link:${l.id}`,
      protocol: "awg",
      publicKey: entryIdentity.awgPublicKey,
      allowedIps: devices,
      pskSealed: l.psk_sealed,
      pskLabel: linkPskLabel(l.id),
    });
  }

  for (const d of out.values()) {
    const list = transits.get(d.nodeId);
    // Forwarding is forced on for transits (§5.6); the canonical, validated form.
    const wanted = list ? { ...d.policy, forwarding: true, transits: list } : d.policy;
    try {
      d.policy = validateNetworkPolicy(wanted);
    } catch (e) {
      d.problems.push(`network policy: ${(e as Error).message}`);
      d.policy = validateNetworkPolicy(d.policy);
    }
    mergeDuplicateKeys(d);
  }
  return out;
}

/** Two rows with one key (an edge peer that is also a device peer): one peer, IPs joined. */
function mergeDuplicateKeys(d: DesiredNode): void {
  const seen = new Map<string, DesiredPeer>();
  const merged: DesiredPeer[] = [];
  for (const p of d.awgPeers) {
    const first = seen.get(p.publicKey);
    if (!first) {
      seen.set(p.publicKey, p);
      merged.push(p);
      continue;
    }
    first.allowedIps = [...new Set([...first.allowedIps, ...p.allowedIps])].sort();
  }
  d.awgPeers = merged;
}

/** A stable text of a policy (endpoint ranges included), to tell whether it changed. */
export function policyKey(p: NetworkPolicy): string {
  return JSON.stringify([
    p.forwarding,
    p.masquerade,
    p.isolation,
    p.transits.map((t) => [t.deviceCidr, t.innerInterface, t.mark, t.table]),
    (p.endpointRanges ?? []).map((r) => [r.ip, r.portMin, r.portMax]),
  ]);
}
