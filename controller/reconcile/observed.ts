/**
 * Observed state: what a node reports about itself (GetStatus, ListPeers),
 * read into plain values. Tolerant as the rules ask: empty lists may come
 * as null, 64-bit integers as decimal strings or numbers.
 */
import type { AwgObfuscation } from "../../core/dataplane/mod.ts";
import type { NodeMessage } from "../fleet/types.ts";
import type { Identity } from "./desired.ts";
import { ReconcileError } from "./errors.ts";

export interface ObservedService {
  running: boolean;
  /** Peers live on the interface (AWG) / configured clients (Xray). */
  peerCount: number;
  handshakingPeers: number;
  /** Seconds since the newest handshake; -1 = never. */
  newestHandshakeAge: number;
  detail: string;
}

export interface ObservedStatus {
  /** AWG (awg0) revision the node reports applied; 0 = nothing. */
  appliedRevision: number;
  uptimeSeconds: number;
  agentVersion: string;
  awg: ObservedService;
  xray: ObservedService & { configured: boolean };
  identity: Identity | null;
  /** The agent says some network rules it should hold are missing. */
  policyPending: boolean;
}

export interface ObservedPeer {
  publicKey: string;
  /** Sorted. */
  allowedIps: string[];
  /** Counters, when the node reported them (the dashboard shows them; reconcile does not use them). */
  traffic?: PeerTraffic;
}

export interface PeerTraffic {
  /** Last handshake (ms since the epoch); null = never. */
  lastHandshake: number | null;
  rxBytes: number;
  txBytes: number;
}

/** A uint64 byte counter; unreadable or beyond 2^53 reads as 0 rather than failing the observation. */
function counter(v: unknown): number {
  const n = typeof v === "number"
    ? v
    : typeof v === "string" && /^\d{1,20}$/.test(v)
    ? Number(v)
    : 0;
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/** A google.protobuf.Timestamp ({seconds, nanos}) or an RFC 3339 string → ms; zero/absent → null. */
function timestampMs(v: unknown): number | null {
  if (typeof v === "string") {
    const t = Date.parse(v);
    return Number.isNaN(t) || t <= 0 ? null : t;
  }
  const o = obj(v);
  const s = counter(o.seconds);
  return s === 0 ? null : s * 1000 + Math.floor(counter(o.nanos) / 1e6);
}

function trafficOf(ps: Obj): PeerTraffic | undefined {
  if (!("rx_bytes" in ps) && !("tx_bytes" in ps) && !("last_handshake" in ps)) return undefined;
  return {
    lastHandshake: timestampMs(ps.last_handshake),
    rxBytes: counter(ps.rx_bytes),
    txBytes: counter(ps.tx_bytes),
  };
}

export interface ObservedNode {
  /** When the status was read (ms since the epoch). */
  at: number;
  /** How long that GetStatus call took (ms); the node answered within it. */
  callMs?: number;
  status: ObservedStatus;
  /** The client interface's configured peers, by public key. */
  awgPeers: Map<string, ObservedPeer>;
  /** Xray clients (UUIDs); null when Xray is not configured there. */
  xrayPeers: Set<string> | null;
}

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj => (v && typeof v === "object" ? v as Obj : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === "string" ? v : "");

/** An int64 from the wire (decimal string or number); anything else is `bad-answer`. */
export function int64(v: unknown, field: string): number {
  if (v === undefined || v === null || v === "") return 0;
  const n = typeof v === "number"
    ? v
    : typeof v === "string" && /^-?\d{1,19}$/.test(v)
    ? Number(v)
    : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new ReconcileError("bad-answer", `${field}: ${JSON.stringify(v)} is not an integer`);
  }
  return n;
}

const SERVICE_NAMES = ["PROTOCOL_AMNEZIAWG", "PROTOCOL_XRAY_REALITY"];

function service(all: unknown[], protocol: string, index: number): ObservedService {
  const num = SERVICE_NAMES.indexOf(protocol) + 1;
  const s = obj(
    all.find((x) => obj(x).protocol === protocol || obj(x).protocol === num) ?? all[index],
  );
  return {
    running: s.running === true,
    peerCount: int64(s.peer_count, `${protocol}.peer_count`),
    handshakingPeers: int64(s.handshaking_peers, `${protocol}.handshaking_peers`),
    newestHandshakeAge: s.newest_handshake_age_seconds === undefined
      ? -1
      : int64(s.newest_handshake_age_seconds, `${protocol}.newest_handshake_age_seconds`),
    detail: str(s.detail),
  };
}

function obfuscationOf(o: Obj): AwgObfuscation {
  const out: Record<string, unknown> = {};
  for (const k of ["jc", "jmin", "jmax", "s1", "s2", "s3", "s4", "h1", "h2", "h3", "h4"]) {
    out[k] = int64(o[k], `amneziawg.obfuscation.${k}`);
  }
  for (const k of ["i1", "i2", "i3", "i4", "i5"]) if (str(o[k]) !== "") out[k] = o[k];
  return out as unknown as AwgObfuscation;
}

/** GetStatus → ObservedStatus. */
export function parseStatus(res: NodeMessage): ObservedStatus {
  const services = list(res.services);
  const awg = obj(res.amneziawg);
  const key = str(awg.public_key);
  const xray = service(services, "PROTOCOL_XRAY_REALITY", 1);
  const awgService = service(services, "PROTOCOL_AMNEZIAWG", 0);
  return {
    appliedRevision: int64(res.applied_revision, "applied_revision"),
    uptimeSeconds: int64(res.uptime_seconds, "uptime_seconds"),
    agentVersion: str(res.agent_version),
    awg: awgService,
    xray: { ...xray, configured: xray.running || !/not configured/.test(xray.detail) },
    identity: key === ""
      ? null
      : { awgPublicKey: key, obfuscation: obfuscationOf(obj(awg.obfuscation)) },
    policyPending: /network rules pending/.test(awgService.detail),
  };
}

/** ListPeers (AmneziaWG) → peers by public key. */
export function parseAwgPeers(res: NodeMessage): Map<string, ObservedPeer> {
  const out = new Map<string, ObservedPeer>();
  for (const ps of list(res.peers)) {
    const p = obj(obj(ps).peer);
    const publicKey = str(p.public_key);
    if (publicKey === "") continue;
    const allowedIps = [...new Set(list(p.allowed_ips).map(str).filter((s) => s !== ""))].sort();
    const traffic = trafficOf(obj(ps));
    out.set(publicKey, traffic ? { publicKey, allowedIps, traffic } : { publicKey, allowedIps });
  }
  return out;
}

/** ListPeers (Xray) → client UUIDs (lower case). */
export function parseXrayPeers(res: NodeMessage): Set<string> {
  const out = new Set<string>();
  for (const ps of list(res.peers)) {
    const p = obj(obj(ps).peer);
    const id = (str(p.public_key) || str(p.id)).toLowerCase();
    if (id !== "") out.add(id);
  }
  return out;
}
