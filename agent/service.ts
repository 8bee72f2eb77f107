/**
 * NodeControl (CONTRACTS.md §1.2–1.5) on top of the agent's data plane.
 * Every field of every request is validated and re-serialised by
 * core/dataplane before anything is written or run (§7.6); a bad request
 * changes nothing and answers INVALID_ARGUMENT naming the field.
 *
 * Departures from the original node, each a fix of §7: ListPeers never
 * returns preshared keys (§7.7); XRay config, revision and inner links are
 * persisted and restored (§7.8).
 */
import {
  type AwgObfuscation,
  canonicalCidr,
  canonicalEndpoint,
  checkArray,
  checkInnerInterface,
  checkMtu,
  checkPort,
  checkWgKey,
  DEFAULT_MTU,
  MAX_ENDPOINT_RANGES,
  obfuscationMessage,
  validateEndpointRanges,
  validateObfuscation,
} from "../core/dataplane/mod.ts";
import type { Logger } from "../core/log.ts";
import type { AwgPeer } from "./dataplane/awg.ts";
import { checkFlowValue, type XrayPush } from "./dataplane/xray.ts";
import { AgentError, asAgentError, GrpcCode, invalid } from "./errors.ts";
import type { AgentEvent } from "./events.ts";
import type { InnerLinkConfig } from "./inner_links.ts";
import type { AgentNode } from "./node.ts";
import { decodeConfig, nodeTypes, type ProtoPeer, type ProtoXrayConfig } from "./proto.ts";
import { AGENT_VERSION } from "./version.ts";

const AWG = "PROTOCOL_AMNEZIAWG";
const XRAY = "PROTOCOL_XRAY_REALITY";
const UNSPECIFIED = "PROTOCOL_UNSPECIFIED";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Obj = Record<string, unknown>;

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/** int64 from the wire (a decimal string with longs: String). */
function revisionOf(v: unknown, field: string): bigint {
  const s = typeof v === "number" ? String(v) : str(v) || "0";
  if (!/^-?[0-9]{1,19}$/.test(s)) throw invalid("bad-revision", `${field}: not an integer`);
  const r = BigInt(s);
  if (r < 0n) throw invalid("bad-revision", `${field}: ${r} is negative`);
  return r;
}

function unsupported(protocol: string): AgentError {
  return new AgentError(
    "unknown-protocol",
    `protocol ${
      protocol || "(none)"
    } is not served here; use PROTOCOL_AMNEZIAWG or PROTOCOL_XRAY_REALITY`,
    GrpcCode.UNIMPLEMENTED,
  );
}

/** A checked AmneziaWG peer (only key, PSK, allowed IPs and first endpoint are used, §1.4). */
export function checkAwgPeer(p: ProtoPeer | Obj | null | undefined, field: string): AwgPeer {
  if (!p || typeof p !== "object") throw invalid("missing-peer", `${field}: missing`);
  const q = p as Obj;
  if (str(q.public_key) === "") throw invalid("missing-key", `${field}.public_key: empty`);
  const publicKey = checkWgKey(q.public_key, `${field}.public_key`);
  const psk = str(q.preshared_key);
  const presharedKey = psk === "" ? undefined : checkWgKey(psk, `${field}.preshared_key`);
  const allowed = checkArray(q.allowed_ips ?? [], `${field}.allowed_ips`, 256).map((c, i) =>
    canonicalCidr(c, `${field}.allowed_ips[${i}]`)
  );
  const allowedIps = [...new Set(allowed)];
  const endpoints = checkArray(q.endpoints ?? [], `${field}.endpoints`, 64);
  const first = endpoints.findIndex((e) => e !== "");
  const endpoint = first < 0
    ? undefined
    : canonicalEndpoint(endpoints[first], `${field}.endpoints[${first}]`);
  return { publicKey, presharedKey, allowedIps, endpoint };
}

/** A checked VLESS client: UUID from public_key, falling back to id (§1.4). */
function checkXrayPeer(p: Obj | null | undefined, field: string): { id: string; flow: string } {
  if (!p || typeof p !== "object") throw invalid("missing-peer", `${field}: missing`);
  const raw = str(p.public_key) || str(p.id);
  if (raw === "") throw invalid("missing-key", `${field}.public_key: empty (the VLESS UUID)`);
  const id = raw.toLowerCase();
  if (!UUID.test(id)) {
    throw invalid("bad-uuid", `${field}.public_key: ${JSON.stringify(raw)} is not a UUID`);
  }
  return { id, flow: checkFlowValue(str(p.flow)) };
}

function checkXrayConfig(c: ProtoXrayConfig): XrayPush {
  if (!c.port) throw invalid("bad-port", "config.port: 0 is not a port");
  const port = checkPort(c.port, "config.port");
  const seen = new Set<string>();
  const clients = checkArray(c.peers ?? [], "config.peers", 65536).map((p, i) => {
    const x = checkXrayPeer(p as Obj, `config.peers[${i}]`);
    if (seen.has(x.id)) throw invalid("duplicate", `config.peers[${i}]: UUID listed twice`);
    seen.add(x.id);
    return x.flow ? x : { id: x.id };
  });
  return {
    port,
    dest: str(c.dest),
    serverNames: checkArray(c.server_names ?? [], "config.server_names", 64) as string[],
    shortIds: checkArray(c.short_ids ?? [], "config.short_ids", 64) as string[],
    clients,
  };
}

function checkInnerLink(c: Obj | null | undefined, node: AgentNode): InnerLinkConfig {
  if (!c || typeof c !== "object") throw invalid("missing-config", "config: missing");
  const name = str(c.interface);
  if (name === "") throw invalid("missing-interface", "config.interface: empty");
  if (name === "awg0" || name === node.settings.interface) {
    throw invalid("bad-interface", `config.interface: ${name} is the client interface`);
  }
  const iface = checkInnerInterface(name, "config.interface");
  const exit = c.exit as Obj | null;
  if (!exit || typeof exit !== "object") throw invalid("missing-exit", "config.exit: missing");
  if (str(exit.public_key) === "") throw invalid("missing-key", "config.exit.public_key: empty");
  const endpoints = checkArray(exit.endpoints ?? [], "config.exit.endpoints", 64);
  const first = endpoints.findIndex((e) => e !== "");
  if (first < 0) throw invalid("missing-endpoint", "config.exit.endpoints: none given");
  const peer = checkAwgPeer({ ...exit, endpoints: [] }, "config.exit");
  const endpoint = canonicalEndpoint(endpoints[first], `config.exit.endpoints[${first}]`, {
    allowHostname: true,
  });
  if (!c.peer_obfuscation) {
    throw invalid("missing-obfuscation", "config.peer_obfuscation: missing (the exit's set)");
  }
  const peerObfuscation: AwgObfuscation = validateObfuscation(
    toObfuscation(c.peer_obfuscation as Obj),
    {
      field: "config.peer_obfuscation",
      allowNeutral: true,
    },
  );
  if (!node.driver.obfuscation && !isNeutral(peerObfuscation)) {
    throw new AgentError(
      "obfuscation-unsupported",
      `this node runs plain WireGuard (${node.driver.kind}) and cannot speak the exit's ` +
        "AmneziaWG obfuscation; install amneziawg here or give the exit plain WireGuard",
      GrpcCode.FAILED_PRECONDITION,
    );
  }
  const listenPort = checkPort(c.listen_port, "config.listen_port");
  if (listenPort === node.settings.awgPort) {
    throw invalid("port-in-use", `config.listen_port: ${listenPort} is the client interface's`);
  }
  const mtu = !c.mtu ? DEFAULT_MTU : checkMtu(c.mtu, "config.mtu");
  return {
    interface: iface,
    listenPort,
    mtu,
    peerObfuscation,
    exit: {
      publicKey: peer.publicKey,
      presharedKey: peer.presharedKey,
      allowedIps: peer.allowedIps,
      endpoint,
    },
  };
}

const OBF_NUMBERS = ["jc", "jmin", "jmax", "s1", "s2", "s3", "s4", "h1", "h2", "h3", "h4"] as const;

function toObfuscation(o: Obj): Obj {
  const out: Obj = {};
  for (const k of OBF_NUMBERS) out[k] = o[k] ?? 0;
  for (const k of ["i1", "i2", "i3", "i4", "i5"]) if (str(o[k]) !== "") out[k] = o[k];
  return out;
}

function isNeutral(o: AwgObfuscation): boolean {
  return o.jc === 0 && o.jmin === 0 && o.jmax === 0 && o.s1 === 0 && o.s2 === 0 && o.s3 === 0 &&
    o.s4 === 0 && o.h1 === 1 && o.h2 === 2 && o.h3 === 3 && o.h4 === 4 &&
    !o.i1 && !o.i2 && !o.i3 && !o.i4 && !o.i5;
}

function checkPolicy(c: Obj | null | undefined) {
  if (!c || typeof c !== "object") throw invalid("missing-config", "config: missing");
  const transits = checkArray(c.transits ?? [], "config.transits", 4096).map((t) => {
    const x = t as Obj;
    return {
      deviceCidr: x.device_cidr,
      innerInterface: x.inner_interface,
      mark: x.mark,
      table: x.table,
    };
  });
  // Checked here under their wire names; the applier checks the whole policy again.
  const ranges = checkArray(c.endpoint_ranges ?? [], "config.endpoint_ranges", MAX_ENDPOINT_RANGES)
    .map((r) => {
      const x = (r ?? {}) as Obj;
      return { ip: x.ip, portMin: x.port_min, portMax: x.port_max };
    });
  const endpointRanges = validateEndpointRanges(ranges, "config.endpoint_ranges");
  return {
    forwarding: c.forwarding === true,
    masquerade: c.masquerade === true,
    isolation: c.isolation === true,
    transits,
    endpointRanges,
  };
}

/** EndpointRange messages of a SetNetworkConfigResponse. */
function rangeMessages(ranges: readonly { ip: string; portMin: number; portMax: number }[]) {
  return ranges.map((r) => ({ ip: r.ip, port_min: r.portMin, port_max: r.portMax }));
}

function timestamp(unixSeconds: number) {
  const s = Math.floor(unixSeconds);
  return { seconds: String(s), nanos: Math.floor((unixSeconds - s) * 1e9) };
}

/** An event as the Event message of the contract (int64 as decimal strings). */
export function eventMessage(e: AgentEvent) {
  return {
    at: timestamp(e.at),
    type: e.type,
    protocol: AWG,
    peer_id: e.peerId,
    message: e.message,
    source_endpoint: e.sourceEndpoint,
    rx_bytes: e.rxBytes.toString(),
    tx_bytes: e.txBytes.toString(),
  };
}

/** The unary NodeControl methods, each request → response; errors are AgentErrors. */
export interface NodeControlCore {
  /** Runs one unary method (the name as in the .proto). */
  call(method: string, request: Obj): Promise<Obj>;
}

/**
 * The method handlers (they run in the agent's main process; the gRPC
 * front forwards calls to them). A failure logs one JSON line with its code
 * and throws an AgentError carrying the gRPC status to answer.
 */
export function nodeControlCore(node: AgentNode, log: Logger): NodeControlCore {
  const awgPeerStates = async () => {
    const { dump } = await node.counters();
    const live = new Map((dump?.peers ?? []).map((p) => [p.publicKey, p]));
    return node.client.peers.map((p) => {
      const l = live.get(p.publicKey);
      return {
        peer: {
          id: "",
          protocol: AWG,
          public_key: p.publicKey,
          allowed_ips: p.allowedIps,
          preshared_key: "", // never sent back (CONTRACTS.md §7.7)
          endpoints: p.endpoint ? [p.endpoint] : l?.endpoint ? [l.endpoint] : [],
          flow: "",
        },
        last_handshake: l && l.latestHandshake > 0 ? timestamp(l.latestHandshake) : null,
        rx_bytes: (l?.rxBytes ?? 0n).toString(),
        tx_bytes: (l?.txBytes ?? 0n).toString(),
      };
    });
  };

  const methods: Record<string, (req: Obj) => Promise<unknown>> = {
    GetStatus: async () => {
      const awg = await node.awgStatus();
      const x = node.xray.status();
      return {
        agent_version: AGENT_VERSION,
        uptime_seconds: String(node.uptimeSeconds),
        services: [
          {
            protocol: AWG,
            running: awg.running,
            listening: awg.running,
            peer_count: awg.peers,
            detail: awg.detail,
            newest_handshake_age_seconds: String(awg.newestHandshakeAge),
            handshaking_peers: awg.handshaking,
          },
          {
            protocol: XRAY,
            running: x.running,
            listening: x.running,
            peer_count: x.clients,
            detail: x.detail,
            newest_handshake_age_seconds: "-1",
            handshaking_peers: 0,
          },
        ],
        amneziawg: {
          public_key: node.identity.awgPublicKey,
          obfuscation: obfuscationMessage(node.obfuscation),
        },
        xray: { public_key: node.identity.realityPublicKey },
        applied_revision: node.client.revision.toString(),
      };
    },

    GetMetrics: async () => {
      const peers = await awgPeerStates();
      let rx = 0n, tx = 0n;
      for (const p of peers) {
        rx += BigInt(p.rx_bytes);
        tx += BigInt(p.tx_bytes);
      }
      return {
        peers,
        total_rx_bytes: rx.toString(),
        total_tx_bytes: tx.toString(),
        handshakes_total: node.observer.handshakesTotal.toString(),
        errors_total: node.observer.errorsTotal.toString(),
      };
    },

    PushConfig: async (req: Obj) => {
      const revision = revisionOf(req.revision, "revision");
      const bytes = req.config instanceof Uint8Array ? req.config : new Uint8Array(0);
      const protocol = str(req.protocol);
      if (protocol === AWG) {
        const cfg = decodeConfig(nodeTypes.AmneziaWGConfig, bytes) as { peers: ProtoPeer[] };
        const peers = checkArray(cfg.peers, "config.peers", 65536).map((p, i) =>
          checkAwgPeer(p as ProtoPeer, `config.peers[${i}]`)
        );
        const seen = new Set<string>();
        peers.forEach((p, i) => {
          if (seen.has(p.publicKey)) {
            throw invalid("duplicate", `config.peers[${i}].public_key: listed twice`);
          }
          seen.add(p.publicKey);
        });
        const r = await node.client.push(peers, revision);
        return { applied_revision: r.applied.toString(), reloaded: r.reloaded };
      }
      if (protocol === XRAY) {
        const cfg = decodeConfig(nodeTypes.XRayRealityConfig, bytes) as unknown as ProtoXrayConfig;
        const r = await node.xray.push(checkXrayConfig(cfg), revision);
        return { applied_revision: r.applied.toString(), reloaded: r.reloaded };
      }
      throw unsupported(protocol);
    },

    AddPeer: async (req: Obj) => {
      const p = req.peer as Obj | null;
      if (!p) throw invalid("missing-peer", "peer: missing");
      const protocol = str(p.protocol);
      if (protocol === AWG) {
        await node.client.addPeer(checkAwgPeer(p, "peer"));
        return { peer_id: str(p.id), applied: true };
      }
      if (protocol === XRAY) {
        const x = checkXrayPeer(p, "peer");
        const applied = await node.xray.addClient(x.flow ? x : { id: x.id });
        return { peer_id: x.id, applied };
      }
      throw unsupported(protocol);
    },

    RemovePeer: async (req: Obj) => {
      const protocol = str(req.protocol);
      const key = str(req.public_key);
      if (key === "") throw invalid("missing-key", "public_key: empty");
      if (protocol === AWG) {
        await node.client.removePeer(checkWgKey(key, "public_key"));
        return { peer_id: "", applied: true };
      }
      if (protocol === XRAY) {
        const id = checkXrayPeer({ public_key: key }, "request").id;
        return { peer_id: id, applied: await node.xray.removeClient(id) };
      }
      throw unsupported(protocol);
    },

    ListPeers: async (req: Obj) => {
      const protocol = str(req.protocol) || UNSPECIFIED;
      if (protocol === AWG || protocol === UNSPECIFIED) return { peers: await awgPeerStates() };
      if (protocol === XRAY) {
        return {
          peers: (node.xray.config?.clients ?? []).map((c) => ({
            peer: {
              id: c.id,
              protocol: XRAY,
              public_key: c.id,
              allowed_ips: [],
              preshared_key: "",
              endpoints: [],
              flow: c.flow ?? "",
            },
            last_handshake: null,
            rx_bytes: "0",
            tx_bytes: "0",
          })),
        };
      }
      throw unsupported(protocol);
    },

    RestartService: async (req: Obj) => {
      const protocol = str(req.protocol);
      if (protocol === AWG) await node.client.restart();
      else if (protocol === XRAY) await node.xray.restart();
      else throw unsupported(protocol);
      return { restarted: true };
    },

    SetNetworkConfig: async (req: Obj) => {
      const policy = checkPolicy(req.config as Obj | null);
      await node.policy.set(policy);
      // What reaches the listener: its port on local addresses and the runs DNATed (ranges on
      // local addresses, split around the listener and reserved ports, within the rule cap).
      return { applied: true, endpoint_ranges: rangeMessages(node.policy.forwarded) };
    },

    ConfigureInnerLink: async (req: Obj) => {
      const revision = revisionOf(req.revision, "revision");
      const config = checkInnerLink(req.config as Obj | null, node);
      const r = await node.inner.configure(config, revision);
      return { applied_revision: r.applied.toString(), reloaded: r.reloaded };
    },

    RemoveInnerLink: async (req: Obj) => {
      const name = str(req.interface);
      if (name === "") throw invalid("missing-interface", "interface: empty");
      if (name === "awg0" || name === node.settings.interface) {
        throw new AgentError(
          "client-interface",
          `interface: ${name} is the client interface, not an inner link`,
          GrpcCode.INTERNAL,
        );
      }
      return { removed: await node.inner.remove(checkInnerInterface(name, "interface")) };
    },
  };

  return {
    async call(method, req) {
      const fn = methods[method];
      try {
        if (!fn) {
          throw new AgentError(
            "unknown-method",
            `${method} is not a unary NodeControl method`,
            GrpcCode.UNIMPLEMENTED,
          );
        }
        return (await fn(req ?? {})) as Obj;
      } catch (e) {
        const err = asAgentError(e);
        const level = err.status === GrpcCode.INTERNAL ? "error" : "warn";
        log[level]("NodeControl call failed", {
          code: err.code,
          method,
          status: err.status,
          error: err.message,
        });
        throw err;
      }
    },
  };
}
