/**
 * The JSON-lines protocol between the fleet driver (parent) and its gRPC
 * worker process (worker_main.ts): one JSON object per line on the worker's
 * stdin (commands) and stdout (answers and events). Byte fields travel as
 * `{"$b64": "..."}` so that a NodeMessage survives the trip unchanged.
 */
import { decodeText } from "../../core/encoding.ts";

/** The TLS identity the worker presents and the CAs it accepts. */
export interface WorkerIdentity {
  /** Controller client leaf + Fleet CA, PEM. */
  chainPem: string;
  keyPem: string;
  /** Root + Fleet CA, PEM: what a node's chain must lead to. */
  caPem: string;
}

/** A node the worker keeps a connection to. */
export interface WorkerNode {
  id: string;
  /** gRPC target: `host:port` (IPv6 bracketed), or a local forwarder for relayed nodes. */
  target: string;
  /** DER of the node's pinned certificate, base64: the only certificate accepted. */
  pinDer: string;
  /** Changes whenever anything about the connection changes (target, pin, identity). */
  key: string;
}

export type ToWorker =
  | { t: "identity"; identity: WorkerIdentity }
  | { t: "nodes"; nodes: WorkerNode[] }
  | { t: "call"; id: number; nodeId: string; method: string; request: unknown; timeoutMs: number }
  /** Asks for the worker's memory figures (answered with a "memory" line). */
  | { t: "memory"; id: number }
  /** Test hook: the worker aborts at once (proves the supervisor). */
  | { t: "crash" };

/** The worker process's memory (bytes), as Deno.memoryUsage() gives it. */
export interface WorkerMemory {
  rss: number;
  /** V8 heap in use and reserved. */
  heapUsed: number;
  heapTotal: number;
  /** Memory of JS objects bound to native ones (buffers). */
  external: number;
}

export interface WireError {
  /** FleetError code (see errors.ts). */
  code: string;
  message: string;
  /** gRPC status code when the node (or grpc-js) answered one. */
  grpcCode?: number;
}

export type FromWorker =
  | { t: "ready"; pid: number }
  | { t: "reply"; id: number; ok: true; response: unknown }
  | { t: "reply"; id: number; ok: false; error: WireError }
  | { t: "event"; nodeId: string; event: unknown }
  | { t: "memory"; id: number; usage: WorkerMemory }
  | { t: "watch"; nodeId: string; state: "open" | "ended"; reason?: string }
  | {
    t: "log";
    level: "debug" | "info" | "warn" | "error";
    msg: string;
    fields?: Record<string, unknown>;
  };

/** Replaces every byte array (Uint8Array, Buffer) with `{"$b64"}`, recursively. */
export function encodeBytes(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $b64: new Uint8Array(v).toBase64() };
  if (Array.isArray(v)) return v.map(encodeBytes);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = encodeBytes(x);
    return out;
  }
  return v;
}

/** Undoes encodeBytes: `{"$b64"}` objects become Uint8Array. */
export function decodeBytes(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decodeBytes);
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === "$b64" && typeof o.$b64 === "string") {
      return Uint8Array.fromBase64(o.$b64);
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) out[k] = decodeBytes(x);
    return out;
  }
  return v;
}

/** Splits a byte stream into text lines (the last partial line is kept until more arrives). */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  const text = decodeText(stream);
  for await (const chunk of text) {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim() !== "") yield line;
    }
  }
  if (buf.trim() !== "") yield buf;
}
