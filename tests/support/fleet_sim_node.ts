/**
 * A simulated node for the fleet driver's soak (fleet_soak.ts): a real
 * grpc-js NodeControl server over mTLS with a node certificate, answering
 * GetStatus and holding WatchEvents streams (sending an event every
 * `eventEveryMs`, or staying silent when 0), the rest UNIMPLEMENTED. Run as
 * its own process so that it can be stopped gracefully (SIGTERM: the server
 * shuts down, sending GOAWAY) or killed with -9.
 *
 *   stdin:  {"chainPem", "keyPem", "caPem", "port", "eventEveryMs"}
 *   stdout: {"ready": true, "port": N}
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { loadProto, NODE_PROTO } from "../../proto/load.ts";

interface SimConfig {
  chainPem: string;
  keyPem: string;
  caPem: string;
  port: number;
  eventEveryMs: number;
}

const cfg = JSON.parse(await new Response(Deno.stdin.readable).text()) as SimConfig;
// deno-lint-ignore no-explicit-any
const pkg = grpc.loadPackageDefinition(loadProto(NODE_PROTO)) as any;
const service = pkg.pharos.node.v1.NodeControl.service as grpc.ServiceDefinition;
const started = Date.now();
const streams = new Set<grpc.ServerWritableStream<unknown, unknown>>();

const server = new grpc.Server();
const unimplemented: grpc.handleUnaryCall<unknown, unknown> = (_call, cb) =>
  cb({ code: grpc.status.UNIMPLEMENTED, details: "simulated node" });
const handlers: grpc.UntypedServiceImplementation = {};
for (const name of Object.keys(service)) handlers[name] = unimplemented;
handlers.GetStatus = ((_call, cb) =>
  cb(null, {
    agent_version: "sim-1",
    uptime_seconds: String(Math.floor((Date.now() - started) / 1000)),
    applied_revision: "0",
    services: [],
  })) as grpc.handleUnaryCall<unknown, unknown>;
handlers.WatchEvents = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
  streams.add(call);
  call.on("cancelled", () => streams.delete(call));
  call.on("error", () => streams.delete(call));
}) as grpc.handleServerStreamingCall<unknown, unknown>;
server.addService(service, handlers);

const creds = grpc.ServerCredentials.createSsl(
  Buffer.from(cfg.caPem),
  [{ cert_chain: Buffer.from(cfg.chainPem), private_key: Buffer.from(cfg.keyPem) }],
  true,
);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync(`127.0.0.1:${cfg.port}`, creds, (err, p) => err ? reject(err) : resolve(p))
);
if (cfg.eventEveryMs > 0) {
  setInterval(() => {
    const at = Date.now();
    for (const s of streams) {
      s.write({
        at: { seconds: String(Math.floor(at / 1000)), nanos: (at % 1000) * 1e6 },
        type: "EVENT_TYPE_HANDSHAKE_UP",
        protocol: "PROTOCOL_AMNEZIAWG",
        peer_id: "sim",
        message: "",
        source_endpoint: "",
        rx_bytes: "0",
        tx_bytes: "0",
      });
    }
  }, cfg.eventEveryMs);
}
Deno.addSignalListener("SIGTERM", () => {
  for (const s of streams) s.end();
  server.tryShutdown(() => Deno.exit(0));
  setTimeout(() => Deno.exit(0), 3000);
});
console.log(JSON.stringify({ ready: true, port }));
