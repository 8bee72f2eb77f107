/**
 * Cascade (multi-hop) helpers (CONTRACTS.md §5.6, DESIGN.md §5): inner-link
 * slot allocation and path MTU.
 *
 * MTU model. Every hop decrypts and re-encrypts (the entry's transit rule
 * routes the device's *inner* packet into the inner link), so overheads do
 * not nest: a path carries a packet of size P iff every segment does. A
 * segment towards node N carries P + overhead on the underlay, where
 * overhead = IP header (20 for IPv4, 40 for IPv6) + UDP 8 + WireGuard data
 * header 16 + Poly1305 tag 16 — 60 bytes over IPv4, 80 over IPv6 — plus N's
 * AmneziaWG S4, the random prefix on every transport message. (Jc/Jmin/Jmax
 * junk and S1–S3 only touch handshake packets.) Inner links run at a fixed
 * configured MTU (1340), which must fit its segment; the path MTU is the
 * smallest of the client leg's capacity and the inner links' MTUs, and must
 * stay ≥ 1280 (the IPv6 minimum).
 */
import { DataplaneError } from "./errors.ts";
import { OBFUSCATION_LIMITS } from "./obfuscation.ts";
import { checkInt, checkMtu, MTU_MIN } from "./validate.ts";

/** Index i ↔ interface awg{i+1}, listen port 51820 + i, fwmark = table = 7100 + i. */
export const INNER_LINK_BASE = { port: 51820, markAndTable: 7100 } as const;
/** Highest index: awg999 is the last name the interface pattern admits. */
export const MAX_INNER_LINK_INDEX = 998;
/** MTU of every inner link (the original's constant). */
export const INNER_LINK_MTU = 1340;
/** A path has at most this many nodes (2 segments). */
export const MAX_PATH_NODES = 3;
/** Bytes a WireGuard data packet adds on the underlay, by IP family. */
export const WG_OVERHEAD = { 4: 60, 6: 80 } as const;
/** Underlay MTU assumed when none is known. */
export const DEFAULT_UNDERLAY_MTU = 1500;

/**
 * The profile `mtu` the original Go controller writes for a cascade of
 * `nodes` nodes (1 = no cascade): 1420 − 80 × (nodes − 1), never below 576
 * — 1340, 1260 and 1180 for 2, 3 and 4 nodes. Our profile reader accepts
 * these values; our own controller computes the MTU with {@link computePathMtu}.
 */
export function originalCascadeMtu(nodes: number): number {
  const n = checkInt(nodes, "nodes", 1, 65535);
  return Math.max(576, 1420 - 80 * (n - 1));
}

/** What an inner link at index i uses on its entry node. */
export interface InnerLinkSlot {
  index: number;
  interfaceName: string;
  listenPort: number;
  mark: number;
  table: number;
}

/** The slot for index `i` (0 … {@link MAX_INNER_LINK_INDEX}). */
export function innerLinkSlot(index: number): InnerLinkSlot {
  const i = checkInt(index, "index", 0, MAX_INNER_LINK_INDEX);
  return {
    index: i,
    interfaceName: `awg${i + 1}`,
    listenPort: INNER_LINK_BASE.port + i,
    mark: INNER_LINK_BASE.markAndTable + i,
    table: INNER_LINK_BASE.markAndTable + i,
  };
}

/** The slot with the smallest index not in `used` (the entry node's existing links). */
export function allocateInnerLink(used: Iterable<number>): InnerLinkSlot {
  const taken = new Set(used);
  for (let i = 0; i <= MAX_INNER_LINK_INDEX; i++) {
    if (!taken.has(i)) return innerLinkSlot(i);
  }
  throw new DataplaneError(
    "no-free-inner-link",
    "innerLinks",
    `all ${MAX_INNER_LINK_INDEX + 1} inner-link slots of this node are in use`,
  );
}

/** One node on a path, in order from entry to exit. */
export interface PathHop {
  /** Node id (nodes on a path must be distinct). */
  id: string;
  /** IP family the previous hop (or the client) uses to reach this node. */
  family: 4 | 6;
  /** This node's underlay MTU; default {@link DEFAULT_UNDERLAY_MTU}. */
  underlayMtu?: number;
  /** This node's AmneziaWG S4 (transport padding); default 0. */
  s4?: number;
}

/** One segment's figures. */
export interface PathSegment {
  /** `"client"` for the first segment. */
  from: string;
  to: string;
  /** Largest inner packet the underlay carries without fragmenting. */
  capacity: number;
  /** MTU this segment imposes (its capacity for the client leg, the link MTU for inner links). */
  mtu: number;
}

/** The result of {@link computePathMtu}. */
export interface PathMtu {
  /** MTU to give the device's tunnel (the profile `mtu`). */
  mtu: number;
  segments: PathSegment[];
}

/**
 * Computes the path MTU for 1-3 nodes (see the module comment). Throws a
 * DataplaneError when the path is empty, too long, repeats a node, an inner
 * link's MTU exceeds its segment, or the result falls below 1280.
 */
export function computePathMtu(
  hops: readonly PathHop[],
  options: { innerLinkMtu?: number; clientUnderlayMtu?: number } = {},
): PathMtu {
  if (!Array.isArray(hops) || hops.length === 0) {
    throw new DataplaneError("path-empty", "path", "a path needs at least one node");
  }
  if (hops.length > MAX_PATH_NODES) {
    throw new DataplaneError(
      "path-too-long",
      "path",
      `${hops.length} nodes; at most ${MAX_PATH_NODES} (2 segments) are allowed`,
    );
  }
  const linkMtu = checkMtu(options.innerLinkMtu ?? INNER_LINK_MTU, "innerLinkMtu");
  const clientUnderlay = checkInt(
    options.clientUnderlayMtu ?? DEFAULT_UNDERLAY_MTU,
    "clientUnderlayMtu",
    576,
    65535,
  );
  const ids = new Set<string>();
  const checked = hops.map((h, i) => {
    const f = `path[${i}]`;
    if (typeof h !== "object" || h === null || typeof h.id !== "string" || h.id === "") {
      throw new DataplaneError("bad-hop", `${f}.id`, "each hop needs a node id");
    }
    if (ids.has(h.id)) {
      throw new DataplaneError("path-repeats-node", `${f}.id`, `node ${h.id} appears twice`);
    }
    ids.add(h.id);
    if (h.family !== 4 && h.family !== 6) {
      throw new DataplaneError("bad-hop", `${f}.family`, "must be 4 or 6");
    }
    return {
      id: h.id,
      family: h.family as 4 | 6,
      underlay: checkInt(h.underlayMtu ?? DEFAULT_UNDERLAY_MTU, `${f}.underlayMtu`, 576, 65535),
      s4: checkInt(h.s4 ?? 0, `${f}.s4`, 0, OBFUSCATION_LIMITS.s4),
    };
  });
  const segments: PathSegment[] = checked.map((hop, i) => {
    const underlay = Math.min(i === 0 ? clientUnderlay : checked[i - 1].underlay, hop.underlay);
    const capacity = underlay - WG_OVERHEAD[hop.family] - hop.s4;
    const from = i === 0 ? "client" : checked[i - 1].id;
    if (i > 0 && linkMtu > capacity) {
      throw new DataplaneError(
        "inner-link-mtu-too-large",
        `path[${i}]`,
        `inner link ${from} → ${hop.id} runs at MTU ${linkMtu} but its underlay carries only ${capacity}`,
      );
    }
    return { from, to: hop.id, capacity, mtu: i === 0 ? capacity : linkMtu };
  });
  const mtu = Math.min(...segments.map((s) => s.mtu));
  if (mtu < MTU_MIN) {
    throw new DataplaneError(
      "path-mtu-too-small",
      "path",
      `path MTU ${mtu} is below ${MTU_MIN}; use fewer hops, a larger underlay MTU or smaller S4`,
    );
  }
  return { mtu, segments };
}
