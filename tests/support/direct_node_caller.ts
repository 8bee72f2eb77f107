// deno-lint-ignore-file no-explicit-any
/**
 * A NodeCaller (controller/fleet/types.ts) that reaches agents directly
 * with grpc-js and the controller-client certificate, one client per node:
 * what the reconcile tests and benchmark use in place of the fleet driver.
 * Failures reject with a PharosError `grpc-<status>` carrying the details.
 * `drop(nodeId)` closes a node's client: do it before an agent is killed or
 * restarted (Deno's HTTP/2 client must not see a server vanish under an
 * open session, denoland/deno#36788).
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { PharosError } from "../../core/errors.ts";
import { NodeControlClient } from "../../agent/proto.ts";
import type {
  NodeCaller,
  NodeCallOptions,
  NodeMessage,
  NodeMethod,
} from "../../controller/fleet/types.ts";

export interface NodeAddress {
  /** gRPC target: "host:port" or "unix:/path". */
  target: string;
  /** The name the node certificate carries (TLS server name). */
  serverName: string;
}

export interface CallerIdentity {
  /** Root CA (PEM): what node chains must lead to. */
  rootPem: string;
  /** Controller client leaf + Fleet CA. */
  chainPem: string;
  keyPem: string;
}

export class DirectNodeCaller implements NodeCaller {
  readonly #addresses = new Map<string, NodeAddress>();
  readonly #clients = new Map<string, any>();
  readonly #creds: grpc.ChannelCredentials;
  /** Calls made, by method (benchmarks report them). */
  readonly counts = new Map<string, number>();

  constructor(identity: CallerIdentity) {
    this.#creds = grpc.credentials.createSsl(
      Buffer.from(identity.rootPem),
      Buffer.from(identity.keyPem),
      Buffer.from(identity.chainPem),
    );
  }

  /** Where node `nodeId` answers (replaces an earlier address and its client). */
  set(nodeId: string, address: NodeAddress): void {
    this.drop(nodeId);
    this.#addresses.set(nodeId, address);
  }

  drop(nodeId: string): void {
    const c = this.#clients.get(nodeId);
    this.#clients.delete(nodeId);
    try {
      c?.close();
    } catch { /* closed */ }
  }

  close(): void {
    for (const id of [...this.#clients.keys()]) this.drop(id);
  }

  #client(nodeId: string): any {
    let c = this.#clients.get(nodeId);
    if (c) return c;
    const a = this.#addresses.get(nodeId);
    if (!a) throw new PharosError("unknown-node", `no address for node ${nodeId}`);
    c = new NodeControlClient(a.target, this.#creds, {
      "grpc.ssl_target_name_override": a.serverName,
      "grpc.default_authority": a.serverName,
      "grpc.enable_retries": 0,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
    this.#clients.set(nodeId, c);
    return c;
  }

  call(
    nodeId: string,
    method: NodeMethod,
    request: NodeMessage,
    opts: NodeCallOptions = {},
  ): Promise<NodeMessage> {
    this.counts.set(method, (this.counts.get(method) ?? 0) + 1);
    let client: any;
    try {
      client = this.#client(nodeId);
    } catch (e) {
      return Promise.reject(e);
    }
    const config = request.config instanceof Uint8Array
      ? { ...request, config: Buffer.from(request.config) }
      : request;
    return new Promise((resolve, reject) =>
      client[method](
        config,
        { deadline: Date.now() + (opts.timeoutMs ?? 10_000) },
        (err: any, res: NodeMessage) =>
          err
            ? reject(
              new PharosError(
                `grpc-${err.code}`,
                `${method} on node ${nodeId}: ${err.details ?? err.message}`,
              ),
            )
            : resolve(res),
      )
    );
  }
}
