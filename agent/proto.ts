/**
 * The NodeControl contract as the agent uses it: the gRPC service
 * definition (proto/load.ts) and protobufjs types for the `config` bytes of
 * PushConfig (AmneziaWGConfig / XRayRealityConfig), decoded with the same
 * field names (snake_case) and 64-bit integers as strings.
 */
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { loadProto, NODE_PROTO, PROTO_DIR } from "../proto/load.ts";
import { invalid } from "./errors.ts";

// deno-lint-ignore no-explicit-any
const pkg = grpc.loadPackageDefinition(loadProto(NODE_PROTO)) as any;
/** The client constructor (tests and the controller side). */
export const NodeControlClient = pkg.pharos.node.v1.NodeControl as grpc.ServiceClientConstructor;
export const nodeControlService: grpc.ServiceDefinition = NodeControlClient.service;

const root = new protobuf.Root();
root.resolvePath = (_origin, target) =>
  target.startsWith("google/protobuf/") ? target : `${PROTO_DIR}/${target}`;
root.loadSync(NODE_PROTO, { keepCase: true });
export const nodeTypes = {
  AmneziaWGConfig: root.lookupType("pharos.node.v1.AmneziaWGConfig"),
  XRayRealityConfig: root.lookupType("pharos.node.v1.XRayRealityConfig"),
};

const TO_OBJECT: protobuf.IConversionOptions = {
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
};

/** A Peer message as the service receives it. */
export interface ProtoPeer {
  id: string;
  protocol: string;
  public_key: string;
  allowed_ips: string[];
  preshared_key: string;
  endpoints: string[];
  flow: string;
}

export interface ProtoXrayConfig {
  peers: ProtoPeer[];
  dest: string;
  server_names: string[];
  short_ids: string[];
  port: number;
}

/** Largest `config` accepted (65,536 peers fit well below it). */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** Decodes PushConfig bytes; malformed bytes are INVALID_ARGUMENT. */
export function decodeConfig(type: protobuf.Type, bytes: Uint8Array): Record<string, unknown> {
  if (bytes.length > MAX_CONFIG_BYTES) {
    throw invalid("config-too-large", `config: ${bytes.length} bytes, at most ${MAX_CONFIG_BYTES}`);
  }
  try {
    return type.toObject(type.decode(bytes), TO_OBJECT);
  } catch (e) {
    throw invalid(
      "bad-config-bytes",
      `config: not a valid ${type.name} message (${(e as Error).message})`,
    );
  }
}

/** Encodes a config message (tests, benchmarks and a controller). */
export function encodeConfig(type: protobuf.Type, value: Record<string, unknown>): Uint8Array {
  const msg = type.fromObject(value);
  const err = type.verify(msg);
  if (err) throw new Error(`${type.name}: ${err}`);
  return type.encode(msg).finish();
}
