// deno-lint-ignore-file no-explicit-any
/**
 * A controller-side gRPC server for relay tests: the Echo service (four call
 * kinds, failures on request) plus a stand-in ClaimEnrollment, served over
 * TLS with the controller's `coxswain-grpc` certificate and reachable only
 * by connection injection (as the real controller's server is).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { fileURLToPath } from "node:url";
import { certPem } from "../../core/pki/mod.ts";
import { ACCOUNT_PROTO, loadProto } from "../../proto/load.ts";
import type { Fleet } from "./pki_fixture.ts";

const echoDef = protoLoader.loadSync(fileURLToPath(new URL("./echo.proto", import.meta.url)), {
  keepCase: true,
  longs: String,
  defaults: true,
});
export const echoPkg = (grpc.loadPackageDefinition(echoDef) as any).pharos.test.v1;
const accountPkg = (grpc.loadPackageDefinition(loadProto(ACCOUNT_PROTO)) as any).pharos.account.v1;

function metadataOf(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k] = String(v);
  return out;
}

function failure(code: number, text: string): grpc.ServiceError {
  const md = new grpc.Metadata();
  md.set("x-echo-trailer", "failed");
  return Object.assign(new Error(text), {
    code,
    details: `echo failure: ${text}`,
    metadata: md,
  }) as grpc.ServiceError;
}

export interface EchoBackend {
  server: grpc.Server;
  /** Hands one accepted byte stream to the gRPC server. */
  accept(conn: Duplex): void;
  /** Connections the server has been handed (to cut them in tests). */
  connections: Duplex[];
  /** Hands one in-process pipe end (plain HTTP/2) to the gRPC server. */
  acceptInProcess(conn: Duplex): void;
  /** Also listens on loopback TCP (a direct baseline for benchmarks); returns the port. */
  listenTcp(): Promise<number>;
  close(): void;
}

export async function startEchoBackend(fleet: Fleet): Promise<EchoBackend> {
  const leaf = await fleet.issue({ kind: "controller-server" });
  const creds = grpc.ServerCredentials.createSsl(
    Buffer.from(certPem(fleet.pki.fleet.cert)),
    [{ cert_chain: Buffer.from(leaf.chainPem), private_key: Buffer.from(leaf.keyPem) }],
    true,
  );
  const connections: Duplex[] = [];
  const server = new grpc.Server({ "grpc.max_receive_message_length": 32 * 1024 * 1024 });
  const dropIfAsked = (n: number, req: { drop_after: number }) => {
    // Exactly once, at the requested point: the handler may keep running after the cut.
    if (req.drop_after > 0 && n === req.drop_after) { for (const c of connections) c.destroy(); }
  };
  server.addService(echoPkg.Echo.service, {
    Unary(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      const r = call.request;
      if (r.fail_code) return cb(failure(r.fail_code, r.text));
      const md = new grpc.Metadata();
      md.set("x-echo-trailer", "done");
      md.set("x-echo-authority", call.getHost()); // the :authority the backend received
      cb(null, { text: r.text, metadata: metadataOf(call.metadata), blob: r.blob }, md);
    },
    ServerStream(call: grpc.ServerWritableStream<any, any>) {
      const r = call.request;
      let i = 0;
      const next = () => {
        if (call.cancelled) return;
        if (i === r.fail_after && r.fail_code) {
          return call.emit("error", failure(r.fail_code, r.text));
        }
        dropIfAsked(i, r);
        if (i >= r.count) {
          const md = new grpc.Metadata();
          md.set("x-echo-trailer", `sent-${i}`);
          return call.end(md);
        }
        call.write({ text: r.text, seq: i++, metadata: i === 1 ? metadataOf(call.metadata) : {} });
        setTimeout(next, 1);
      };
      next();
    },
    ClientStream(call: grpc.ServerReadableStream<any, any>, cb: grpc.sendUnaryData<any>) {
      const parts: string[] = [];
      call.on("data", (m) => parts.push(m.text));
      call.on(
        "end",
        () => cb(null, { text: parts.join(","), metadata: metadataOf(call.metadata) }),
      );
    },
    Bidi(call: grpc.ServerDuplexStream<any, any>) {
      let n = 0;
      call.on("data", (m) => {
        if (m.fail_code) return call.emit("error", failure(m.fail_code, m.text));
        dropIfAsked(n, m);
        const blob = m.count > 1 ? Buffer.concat(Array(m.count).fill(m.blob)) : m.blob;
        call.write({ text: m.text.toUpperCase(), seq: n++, blob });
      });
      call.on("end", () => call.end());
    },
  });
  server.addService(accountPkg.AccountSync.service, {
    ClaimEnrollment(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      cb(null, {
        relay_addr: "claimed:" + call.request.token,
        ca_fingerprint: JSON.stringify(metadataOf(call.metadata)),
      });
    },
    Authenticate(_call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      cb(null, { user_id: "u1" });
    },
  });
  const injector = server.createConnectionInjector(creds);
  const pipes = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  return {
    server,
    connections,
    accept(conn) {
      connections.push(conn);
      injector.injectConnection(conn);
    },
    acceptInProcess(conn) {
      connections.push(conn);
      pipes.injectConnection(conn);
    },
    listenTcp: () =>
      new Promise<number>((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", creds, (err, port) => (err ? reject(err) : resolve(port)))
      ),
    close() {
      for (const c of connections) c.destroy();
      server.forceShutdown();
    },
  };
}
