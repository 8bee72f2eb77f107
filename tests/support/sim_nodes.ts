// deno-lint-ignore-file no-explicit-any
/**
 * Simulated nodes for the reconcile benchmark: real gRPC NodeControl
 * servers (grpc-js, mTLS with a node certificate), many in one process,
 * each answering from memory with the agent's rules for what reconcile
 * uses (GetStatus, ListPeers, PushConfig with the revision rules, AddPeer,
 * RemovePeer, SetNetworkConfig, RestartService, inner links). Node i starts
 * with peers simKey(i, 0..k-1), so a controller can write the same desired
 * state without being told.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { toBase64 } from "../../core/encoding.ts";
import { decodeConfig, nodeControlService, nodeTypes } from "../../agent/proto.ts";
import type { NodeCaller, NodeMessage, NodeMethod } from "../../controller/fleet/types.ts";

/** Peer j of simulated node i: a 32-byte key (base64) unique per (i, j). */
export function simKey(i: number, j: number): string {
  const b = new Uint8Array(32).fill(7);
  b[0] = i & 255;
  b[1] = i >> 8;
  b[2] = j & 255;
  b[3] = j >> 8;
  return toBase64(b);
}

/** Peer j of node i's tunnel address. */
export const simIp = (i: number, j: number) => `10.${(i >> 8) + 64}.${i & 255}.${j + 2}/32`;

export interface SimOptions {
  count: number;
  peersPerNode: number;
  chainPem: string;
  keyPem: string;
  rootPem: string;
  /** Told of every AddPeer (the benchmark times heals with it). */
  onAddPeer?: (node: number, key: string) => void;
}

/** What one simulated node holds. */
export interface SimNode {
  revision: number;
  /** Client-interface peers: public key → allowed IPs. */
  peers: Map<string, string[]>;
  /** Inner links: interface → revision. */
  links: Map<string, number>;
  /** The last SetNetworkConfig's config, as received. */
  policy: Record<string, unknown> | null;
  /** Calls received, by method. */
  calls: Map<string, number>;
  started: number;
  /** Counters ListPeers reports per peer (handshake in unix seconds); zeros when absent. */
  traffic: Map<string, { rx: number; tx: number; handshake: number }>;
  /**
   * The endpoint ranges SetNetworkConfig answers it serves, given the pushed
   * ones (as the PharosVPN agent confirms them); unset: none, as the original node.
   */
  confirms?: (pushed: any[]) => any[];
}

const OBF = {
  jc: 4,
  jmin: 40,
  jmax: 70,
  s1: 50,
  s2: 60,
  s3: 0,
  s4: 0,
  h1: 11,
  h2: 12,
  h3: 13,
  h4: 14,
};

/** Node i's unary methods: request → response (throws a gRPC status object). */
function methods(
  i: number,
  n: SimNode,
  opts: Pick<SimOptions, "onAddPeer">,
): Record<string, (req: any) => any> {
  const unary = (fn: (req: any) => any) => fn;
  const peerStates = () =>
    [...n.peers].map(([key, ips]) => ({
      peer: { id: "", protocol: "PROTOCOL_AMNEZIAWG", public_key: key, allowed_ips: ips },
      last_handshake: n.traffic.get(key)?.handshake
        ? { seconds: String(n.traffic.get(key)!.handshake), nanos: 0 }
        : null,
      rx_bytes: String(n.traffic.get(key)?.rx ?? 0),
      tx_bytes: String(n.traffic.get(key)?.tx ?? 0),
    }));
  return {
    GetStatus: unary(() => ({
      agent_version: "sim",
      uptime_seconds: String(Math.floor((Date.now() - n.started) / 1000)),
      services: [
        {
          protocol: "PROTOCOL_AMNEZIAWG",
          running: true,
          listening: true,
          peer_count: n.peers.size,
          detail: `awg0 up, ${n.peers.size} peers`,
          newest_handshake_age_seconds: "-1",
          handshaking_peers: 0,
        },
        { protocol: "PROTOCOL_XRAY_REALITY", running: false, detail: "not configured" },
      ],
      amneziawg: { public_key: simKey(i, 65535), obfuscation: OBF },
      xray: { public_key: "" },
      applied_revision: String(n.revision),
    })),
    GetMetrics: unary(() => ({ peers: peerStates() })),
    ListPeers: unary(() => ({ peers: peerStates() })),
    PushConfig: unary((req) => {
      const rev = Number(req.revision);
      if (rev < n.revision) {
        throw {
          code: grpc.status.FAILED_PRECONDITION,
          details: `stale revision ${rev} (last applied ${n.revision})`,
        };
      }
      if (rev === n.revision && rev > 0) return { applied_revision: String(rev), reloaded: false };
      const cfg = decodeConfig(nodeTypes.AmneziaWGConfig, req.config) as any;
      n.peers = new Map(cfg.peers.map((p: any) => [p.public_key, p.allowed_ips]));
      n.revision = rev;
      return { applied_revision: String(rev), reloaded: true };
    }),
    AddPeer: unary((req) => {
      n.peers.set(req.peer.public_key, req.peer.allowed_ips ?? []);
      opts.onAddPeer?.(i, req.peer.public_key);
      return { peer_id: req.peer.id, applied: true };
    }),
    RemovePeer: unary((req) => {
      n.peers.delete(req.public_key);
      return { peer_id: "", applied: true };
    }),
    RestartService: unary(() => ({ restarted: true })),
    SetNetworkConfig: unary((req) => {
      n.policy = req.config;
      if (n.confirms) {
        return { applied: true, endpoint_ranges: n.confirms(req.config.endpoint_ranges ?? []) };
      }
      return { applied: true };
    }),
    ConfigureInnerLink: unary((req) => {
      const name = req.config.interface;
      const rev = Number(req.revision);
      const cur = n.links.get(name) ?? 0;
      if (rev < cur) {
        throw {
          code: grpc.status.FAILED_PRECONDITION,
          details: `stale revision ${rev} (last applied ${cur})`,
        };
      }
      n.links.set(name, rev);
      return { applied_revision: String(rev), reloaded: rev !== cur };
    }),
    RemoveInnerLink: unary((req) => {
      n.links.delete(req.interface);
      return { removed: true };
    }),
  };
}

/**
 * The gRPC handlers of node i: its methods, counted, and a WatchEvents that
 * stays open and silent (as an agent's does between events) until `streams`
 * are ended at shutdown.
 */
function handlers(i: number, n: SimNode, opts: SimOptions, streams: Set<any>) {
  const out: grpc.UntypedServiceImplementation = {
    WatchEvents: (call: any) => {
      streams.add(call);
      const forget = () => streams.delete(call);
      call.on("cancelled", forget);
      call.on("error", forget);
    },
  };
  for (const [name, fn] of Object.entries(methods(i, n, opts))) {
    out[name] = (call: any, cb: any) => {
      n.calls.set(name, (n.calls.get(name) ?? 0) + 1);
      try {
        cb(null, fn(call.request));
      } catch (e) {
        cb(e);
      }
    };
  }
  return out;
}

/** A fresh simulated node i holding peers simKey(i, 0..peers-1). */
export function simNode(i: number, peers: number): SimNode {
  return {
    revision: 1,
    peers: new Map(Array.from({ length: peers }, (_, j) => [simKey(i, j), [simIp(i, j)]])),
    links: new Map(),
    policy: null,
    calls: new Map(),
    started: Date.now(),
    traffic: new Map(),
  };
}

/**
 * The same nodes without a network: a NodeCaller answering in memory, to
 * tell the reconcile loop's own cost from the transport's. Answers come
 * in the proto's JSON shape, as the wire gives them.
 */
export class InMemorySimCaller implements NodeCaller {
  readonly nodes: SimNode[] = [];
  readonly #methods: Record<string, (req: any) => any>[] = [];
  readonly #index = new Map<string, number>();

  constructor(ids: string[], peersPerNode: number) {
    ids.forEach((id, i) => {
      const n = simNode(i, peersPerNode);
      this.nodes.push(n);
      this.#methods.push(methods(i, n, {}));
      this.#index.set(id, i);
    });
  }

  call(nodeId: string, method: NodeMethod, request: NodeMessage): Promise<NodeMessage> {
    const i = this.#index.get(nodeId);
    if (i === undefined) return Promise.reject(new Error(`no node ${nodeId}`));
    try {
      // Answers are plain JSON (no bytes): copied so no object is shared with the caller.
      const res = this.#methods[i][method](request);
      return Promise.resolve(JSON.parse(JSON.stringify(res)));
    } catch (e) {
      return Promise.reject(new Error(String((e as { details?: string }).details ?? e)));
    }
  }
}

export interface SimFleet {
  ports: number[];
  nodes: SimNode[];
  /** Removes peer j from node i (a change behind the controller's back). */
  removePeer(i: number, j: number): void;
  close(): Promise<void>;
}

export async function startSimFleet(opts: SimOptions): Promise<SimFleet> {
  const creds = grpc.ServerCredentials.createSsl(
    Buffer.from(opts.rootPem),
    [{ private_key: Buffer.from(opts.keyPem), cert_chain: Buffer.from(opts.chainPem) }],
    true,
  );
  const nodes: SimNode[] = [];
  const servers: grpc.Server[] = [];
  const ports: number[] = [];
  const streams = new Set<any>();
  for (let i = 0; i < opts.count; i++) {
    const n = simNode(i, opts.peersPerNode);
    const server = new grpc.Server();
    server.addService(nodeControlService, handlers(i, n, opts, streams));
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", creds, (err, p) => (err ? reject(err) : resolve(p)))
    );
    nodes.push(n);
    servers.push(server);
    ports.push(port);
  }
  return {
    ports,
    nodes,
    removePeer(i, j) {
      nodes[i].peers.delete(simKey(i, j));
    },
    async close() {
      for (const s of streams) s.end();
      streams.clear();
      await Promise.all(
        servers.map((s) => new Promise<void>((r) => s.tryShutdown(() => r()))),
      );
    },
  };
}
