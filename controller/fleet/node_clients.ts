/**
 * The fleet driver's gRPC side, run in its worker process (worker_main.ts):
 * one grpc-js NodeControl client per node, over mTLS 1.3 with the
 * controller's client certificate, a WatchEvents stream kept open on each
 * (reopened with a bounded backoff), and unary calls on request.
 *
 * TLS 1.3 only. The node's certificate must chain to the Fleet CA (the TLS library checks
 * the chain against root + Fleet CA) and be byte-for-byte the pinned one
 * (checked here, synchronously, in checkServerIdentity). That the pinned
 * certificate carries the node role and is not revoked is checked by the
 * parent before it hands a node over (verification is asynchronous, which
 * grpc-js's hook is not).
 */
import * as grpc from "@grpc/grpc-js";
import tls from "node:tls";
import { loadProto, NODE_PROTO } from "../../proto/load.ts";
import type { FleetErrorCode } from "./errors.ts";
import type { FromWorker, WireError, WorkerIdentity, WorkerNode } from "./wire.ts";

/** Not an IP: the TLS server name (the node certificate is pinned by DER instead). */
const SERVER_NAME = "pharos-node";
/** WatchEvents is reopened after 0.5 s, doubling to this. */
const WATCH_BACKOFF_MAX_MS = 15_000;
/** Consecutive timed-out calls after which the channel is dropped and dialled anew. */
const TIMEOUTS_BEFORE_REDIAL = 2;

// deno-lint-ignore no-explicit-any
type AnyClient = grpc.Client & Record<string, any>;

let ctor: grpc.ServiceClientConstructor | null = null;
function nodeControl(): grpc.ServiceClientConstructor {
  if (!ctor) {
    // deno-lint-ignore no-explicit-any
    const pkg = grpc.loadPackageDefinition(loadProto(NODE_PROTO)) as any;
    ctor = pkg.pharos.node.v1.NodeControl as grpc.ServiceClientConstructor;
  }
  return ctor;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

class NodeConn {
  readonly client: AnyClient;
  /** The last TLS handshake saw another certificate than the pinned one. */
  mismatch = false;
  timeouts = 0;
  #watch: grpc.ClientReadableStream<unknown> | null = null;
  #watchTimer: ReturnType<typeof setTimeout> | undefined;
  #watchBackoff = 500;
  #closed = false;

  constructor(
    readonly node: WorkerNode,
    identity: WorkerIdentity,
    private readonly emit: (m: FromWorker) => void,
  ) {
    const pin = Uint8Array.fromBase64(node.pinDer);
    const context = tls.createSecureContext({
      ca: identity.caPem,
      key: identity.keyPem,
      cert: identity.chainPem,
      minVersion: "TLSv1.3",
    });
    const creds = grpc.credentials.createFromSecureContext(
      context,
      {
        checkServerIdentity: (_host, cert) => {
          const raw = cert?.raw;
          this.mismatch = !(raw && sameBytes(new Uint8Array(raw), pin));
          return this.mismatch
            ? new Error("the node presents another certificate than its pinned one")
            : undefined;
        },
      },
    );
    const Ctor = nodeControl();
    this.client = new Ctor(node.target, creds, {
      "grpc.ssl_target_name_override": SERVER_NAME,
      "grpc.default_authority": SERVER_NAME,
      "grpc.enable_retries": 0,
      // Nodes restart all the time: come back within seconds, not grpc-js's 2 min.
      "grpc.initial_reconnect_backoff_ms": 500,
      "grpc.max_reconnect_backoff_ms": 5000,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.max_send_message_length": 64 * 1024 * 1024,
      // channelz keeps call counters and a trace per channel and subchannel; nothing reads them.
      "grpc.enable_channelz": 0,
    }) as AnyClient;
    this.#openWatch();
  }

  #openWatch(): void {
    if (this.#closed) return;
    const call = this.client.WatchEvents({}) as grpc.ClientReadableStream<unknown>;
    this.#watch = call;
    let announced = false;
    const announce = () => {
      if (announced) return;
      announced = true;
      this.#watchBackoff = 500;
      this.emit({ t: "watch", nodeId: this.node.id, state: "open" });
    };
    call.on("metadata", announce);
    call.on("data", (event: unknown) => {
      announce();
      this.emit({ t: "event", nodeId: this.node.id, event });
    });
    let ended = false;
    const end = (reason: string) => {
      if (ended) return;
      ended = true;
      if (this.#watch === call) this.#watch = null;
      if (this.#closed) return;
      this.emit({ t: "watch", nodeId: this.node.id, state: "ended", reason });
      const wait = this.#watchBackoff;
      this.#watchBackoff = Math.min(this.#watchBackoff * 2, WATCH_BACKOFF_MAX_MS);
      this.#watchTimer = setTimeout(() => this.#openWatch(), wait);
    };
    call.on("error", (e: grpc.ServiceError) => end(e.details || e.message));
    call.on("end", () => end("stream ended"));
  }

  call(method: string, request: unknown, timeoutMs: number): Promise<unknown> {
    const fn = this.client[method];
    if (typeof fn !== "function" || method === "WatchEvents") {
      return Promise.reject(wireError("node-error", `no unary NodeControl method ${method}`, 12));
    }
    return new Promise((resolve, reject) => {
      fn.call(
        this.client,
        request,
        { deadline: Date.now() + timeoutMs },
        (err: grpc.ServiceError | null, res: unknown) => {
          if (!err) {
            this.timeouts = 0;
            this.#watchBackoff = 500;
            return resolve(res);
          }
          reject(this.#classify(err));
        },
      );
    });
  }

  #classify(err: grpc.ServiceError): CallError {
    const details = err.details || err.message;
    if (err.code === grpc.status.DEADLINE_EXCEEDED) {
      // Only a connected channel that swallows calls is suspect: one still
      // connecting (many handshakes at a controller start) is left to finish,
      // or a re-dial storm would undo every handshake in progress.
      if (this.client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY) {
        this.timeouts++;
      }
      return wireError("timeout", `no answer before the deadline (${details})`, err.code);
    }
    if (err.code === grpc.status.UNAVAILABLE) {
      if (this.mismatch) {
        return wireError(
          "identity-mismatch",
          `${this.node.target} presents another certificate than the node's pinned one`,
          err.code,
        );
      }
      return wireError("unreachable", details, err.code);
    }
    return wireError("node-error", details, err.code);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#watchTimer);
    try {
      this.#watch?.cancel();
    } catch { /* gone */ }
    try {
      this.client.close();
    } catch { /* closed */ }
  }
}

class CallError extends Error {
  constructor(readonly wire: WireError) {
    super(wire.message);
  }
}

function wireError(code: FleetErrorCode, message: string, grpcCode?: number): CallError {
  return new CallError({ code, message, ...(grpcCode === undefined ? {} : { grpcCode }) });
}

/** Every node connection of the worker, kept in line with what the parent sends. */
export class NodeClients {
  #identity: WorkerIdentity | null = null;
  #conns = new Map<string, NodeConn>();

  constructor(private readonly emit: (m: FromWorker) => void) {}

  setIdentity(identity: WorkerIdentity): void {
    this.#identity = identity;
    // Every connection presents the new certificate from now on.
    for (const [id, c] of this.#conns) {
      c.close();
      this.#conns.set(id, new NodeConn(c.node, identity, this.emit));
    }
  }

  /** Opens, keeps, re-dials (anything changed) or closes connections to match `nodes`. */
  setNodes(nodes: WorkerNode[]): void {
    const want = new Map(nodes.map((n) => [n.id, n]));
    for (const [id, c] of this.#conns) {
      const n = want.get(id);
      if (!n || n.key !== c.node.key) {
        c.close();
        this.#conns.delete(id);
      }
    }
    if (!this.#identity) return;
    for (const n of want.values()) {
      if (!this.#conns.has(n.id)) this.#conns.set(n.id, new NodeConn(n, this.#identity, this.emit));
    }
  }

  async call(nodeId: string, method: string, request: unknown, timeoutMs: number): Promise<
    { ok: true; response: unknown } | { ok: false; error: WireError }
  > {
    let c = this.#conns.get(nodeId);
    if (!c) {
      return {
        ok: false,
        error: { code: "unknown-node", message: `node ${nodeId} is not connected by the driver` },
      };
    }
    if (c.timeouts >= TIMEOUTS_BEFORE_REDIAL && this.#identity) {
      // A connection that swallows calls (a peer gone without a FIN): dial anew.
      c.close();
      c = new NodeConn(c.node, this.#identity, this.emit);
      this.#conns.set(nodeId, c);
    }
    try {
      return { ok: true, response: await c.call(method, request, timeoutMs) };
    } catch (e) {
      if (e instanceof CallError) return { ok: false, error: e.wire };
      return { ok: false, error: { code: "node-error", message: (e as Error).message } };
    }
  }

  close(): void {
    for (const c of this.#conns.values()) c.close();
    this.#conns.clear();
  }
}
