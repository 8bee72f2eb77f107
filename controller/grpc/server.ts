/**
 * The controller's gRPC server. It never listens on a socket: relays reach
 * it through connections handed over in-process (embedded relay) or as
 * substreams of a reverse tunnel the controller dialled. Inside each, TLS
 * 1.3 with the controller's `coxswain-grpc` certificate, and a client
 * certificate with the relay role (callerGuard).
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import type { Logger } from "../../core/log.ts";
import type { RevocationList, TrustStore } from "../../core/pki/mod.ts";
import { callerGuard } from "./caller_guard.ts";

export interface ControllerGrpcOptions {
  /** `coxswain-grpc` leaf + Fleet CA, PEM. */
  certPem: string;
  keyPem: string;
  /** Fleet CA PEM: the TLS layer's anchor for client certificates. */
  fleetCaPem: string;
  trust: TrustStore;
  revoked: RevocationList;
  log: Logger;
  /** Services to serve: [definition, implementation]. */
  services?: [grpc.ServiceDefinition, grpc.UntypedServiceImplementation][];
}

export interface ControllerGrpc {
  server: grpc.Server;
  /** Takes one byte stream as an accepted connection. */
  accept(conn: Duplex): void;
  close(): void;
}

export function createControllerGrpc(opts: ControllerGrpcOptions): ControllerGrpc {
  const server = new grpc.Server({
    interceptors: [callerGuard(opts.trust, opts.revoked, ["relay"], opts.log)],
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
  });
  for (const [def, impl] of opts.services ?? []) server.addService(def, impl);
  const creds = grpc.ServerCredentials.createSsl(
    Buffer.from(opts.fleetCaPem),
    [{ cert_chain: Buffer.from(opts.certPem), private_key: Buffer.from(opts.keyPem) }],
    true,
  );
  const injector = server.createConnectionInjector(creds);
  return {
    server,
    accept(conn) {
      conn.on("error", () => {});
      injector.injectConnection(conn);
    },
    close() {
      injector.destroy();
      server.forceShutdown();
    },
  };
}
