/**
 * Loads the gRPC contracts in this folder with @grpc/proto-loader. Every
 * program (controller, agent, relay, tests) takes its service definitions
 * from here so that they never drift apart.
 */
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

export const PROTO_DIR = fileURLToPath(new URL(".", import.meta.url));

export const NODE_PROTO = "pharos/node/v1/node.proto";
export const ACCOUNT_PROTO = "pharos/account/v1/account.proto";

/** Loader options: field names as written in .proto, 64-bit ints as strings. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

export function loadProto(file: string): protoLoader.PackageDefinition {
  return protoLoader.loadSync(file, LOADER_OPTIONS);
}
