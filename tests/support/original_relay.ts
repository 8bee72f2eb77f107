// deno-lint-ignore-file no-explicit-any
/**
 * A stand-in for the original Go relay's tunnel port, as far as the
 * controller can tell (CONTRACTS.md §3.3, §3.4): TLS 1.3 with the relay
 * certificate and NO ALPN, any Fleet-CA client certificate, then a yamux
 * session in which the relay is the client. It never accepts a stream (the
 * original relay accepts none: a stream the controller opens is never
 * acknowledged), and it forwards a device call the way the original does:
 * a new stream, TLS 1.3 inside with its relay certificate as client and
 * server name `coxswain-grpc`, then a gRPC call with the
 * `x-pharos-device-fp` value it injects.
 *
 * It watches the bytes the controller sends and counts every stream the
 * controller opens (SYN on an even id), so a test can prove none was.
 */
import http2 from "node:http2";
import tls from "node:tls";
import { FLAG_SYN, FrameDecoder, MuxSession } from "../../core/mux/mod.ts";
import { certPem } from "../../core/pki/mod.ts";
import { nodeToWeb, webToNode } from "../../relay/host/web_node.ts";
import type { Fleet, IssuedLeaf } from "./pki_fixture.ts";

export interface OriginalRelay {
  port: number;
  /** Controller sessions accepted so far. */
  sessions: number;
  /** Streams the controller opened (SYN frames seen on the wire); the original takes none. */
  controllerStreams: number;
  /** ALPN negotiated on the last session (false: none, as with the original). */
  lastAlpn: string | false | null;
  /** One gRPC call to the controller; `fp` is injected as x-pharos-device-fp unless null. */
  call(path: string, body: Uint8Array, fp: string | null): Promise<CallResult>;
  close(): Promise<void>;
}

export interface CallResult {
  status: number;
  message: string;
  /** Response DATA (gRPC-framed). */
  body: Uint8Array;
}

/** A gRPC frame holding `pharos.test.v1.EchoRequest { text }` (field 1, a string). */
export function echoRequest(text: string): Uint8Array {
  const t = new TextEncoder().encode(text);
  if (t.length > 127) throw new Error("keep the test text short");
  const msg = new Uint8Array([0x0a, t.length, ...t]);
  const out = new Uint8Array(5 + msg.length);
  new DataView(out.buffer).setUint32(1, msg.length);
  out.set(msg, 5);
  return out;
}

export async function startOriginalRelay(fleet: Fleet, leaf: IssuedLeaf): Promise<OriginalRelay> {
  let current: MuxSession | null = null;
  const sockets = new Set<tls.TLSSocket>();
  const state = {
    sessions: 0,
    controllerStreams: 0,
    lastAlpn: null as string | false | null,
  };
  const server = tls.createServer({
    cert: leaf.chainPem,
    key: leaf.keyPem,
    ca: certPem(fleet.pki.fleet.cert),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
    // No ALPNProtocols: like Go's TLS server without NextProtos.
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.setNoDelay(true);
    state.lastAlpn = socket.alpnProtocol ?? false;
    const web = nodeToWeb(socket);
    const decoder = new FrameDecoder(16 * 1024 * 1024);
    const tap = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, c) {
        for (const f of decoder.push(chunk.slice())) {
          const h = f.header;
          if ((h.flags & FLAG_SYN) !== 0 && h.streamId !== 0 && h.streamId % 2 === 0) {
            state.controllerStreams++;
          }
        }
        c.enqueue(chunk);
      },
    });
    // One controller at a time, as the original; never accept().
    void current?.close();
    current = new MuxSession(
      { readable: web.readable.pipeThrough(tap), writable: web.writable },
      { role: "client", keepAliveIntervalMs: 20_000 },
    );
    state.sessions++;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const caPem = fleet.rootPem + certPem(fleet.pki.fleet.cert);

  return {
    port: (server.address() as { port: number }).port,
    get sessions() {
      return state.sessions;
    },
    get controllerStreams() {
      return state.controllerStreams;
    },
    get lastAlpn() {
      return state.lastAlpn;
    },
    async call(path, body, fp) {
      if (!current || current.isClosed) throw new Error("no controller session");
      const stream = await current.open();
      const sock = tls.connect({
        socket: webToNode(stream) as any,
        servername: "coxswain-grpc",
        ca: caPem,
        cert: leaf.chainPem,
        key: leaf.keyPem,
        ALPNProtocols: ["h2"],
        minVersion: "TLSv1.3",
      });
      sock.on("error", () => {});
      const session = http2.connect("https://coxswain-grpc", { createConnection: () => sock });
      session.on("error", () => {});
      try {
        const headers: http2.OutgoingHttpHeaders = {
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          // A deadline, as every call in the tests has.
          "grpc-timeout": "10S",
        };
        if (fp !== null) headers["x-pharos-device-fp"] = fp;
        const req = session.request(headers);
        req.on("error", () => {});
        const parts: Uint8Array[] = [];
        req.on("data", (c: Uint8Array) => parts.push(new Uint8Array(c)));
        let status = -1;
        let message = "";
        const grab = (h: http2.IncomingHttpHeaders) => {
          if (h["grpc-status"] !== undefined) {
            status = Number(h["grpc-status"]);
            message = decodeURIComponent(String(h["grpc-message"] ?? ""));
          }
        };
        req.on("response", grab);
        req.on("trailers", grab);
        req.end(body);
        await new Promise((r) => req.on("close", r));
        return {
          status,
          message,
          body: new Uint8Array(await new Blob(parts as BlobPart[]).bytes()),
        };
      } finally {
        session.destroy();
        sock.destroy();
      }
    },
    async close() {
      await current?.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
