/**
 * grpc.health.v1 on the controller's gRPC server (the in-process twin the
 * embedded relay reaches, same services as the tunnelled one): Check says
 * SERVING, then NOT_SERVING once the controller marks itself so.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import { Devices } from "../../controller/devices.ts";
import { createControllerGrpc } from "../../controller/grpc/server.ts";
import { Revocations } from "../../controller/revocation.ts";
import { serviceCert } from "../../controller/service_certs.ts";
import { openState } from "../../controller/state.ts";
import { createLogger } from "../../core/log.ts";
import { certPem } from "../../core/pki/mod.ts";
import { duplexPair } from "../../relay/transport.ts";
import { within } from "../support/wait.ts";

/** One unary Health/Check over a fresh in-process pipe: the response message bytes and grpc-status. */
function check(accept: (c: import("node:stream").Duplex) => void) {
  const [mine, theirs] = duplexPair();
  accept(theirs);
  const client = http2.connect("http://controller", { createConnection: () => mine });
  return within(
    new Promise<{ body: Uint8Array; status: string | undefined }>((resolve, reject) => {
      const req = client.request({
        ":method": "POST",
        ":path": "/grpc.health.v1.Health/Check",
        "content-type": "application/grpc",
        te: "trailers",
      });
      const chunks: Buffer[] = [];
      let status: string | undefined;
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("trailers", (t) => status = String(t["grpc-status"]));
      req.on("error", reject);
      // Done once the client's session has closed: tearing the server down under a session
      // still closing can abort the process inside nghttp2 (denoland/deno#36788).
      req.on(
        "end",
        () => client.close(() => resolve({ body: new Uint8Array(Buffer.concat(chunks)), status })),
      );
      req.end(Buffer.from([0, 0, 0, 0, 0])); // HealthCheckRequest{service: ""}
    }),
    10_000,
    "Health/Check",
  );
}

Deno.test("grpc health: Check answers SERVING, then NOT_SERVING", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pharos-health-" });
  const state = await openState(dir, { create: true });
  const log = createLogger("grpc", { level: "error" });
  const server = await serviceCert(state, "controller-server");
  const revocations = new Revocations(state.db, log);
  const g = createControllerGrpc({
    certPem: server.chainPem,
    keyPem: server.keyPem,
    fleetCaPem: certPem(state.pki.cas.fleet.cert),
    trust: state.pki.trust,
    revoked: revocations.list,
    devices: new Devices(state.db, revocations),
    log,
  });
  try {
    const up = await check((c) => g.acceptInProcess(c));
    assert.equal(up.status, "0");
    // length-prefixed HealthCheckResponse{status: SERVING (1)}
    assert.deepEqual([...up.body], [0, 0, 0, 0, 2, 0x08, 0x01]);
    g.health.setStatus("", "NOT_SERVING");
    const down = await check((c) => g.acceptInProcess(c));
    assert.deepEqual([...down.body], [0, 0, 0, 0, 2, 0x08, 0x02]);
  } finally {
    g.close();
    state.close();
    await Deno.remove(dir, { recursive: true });
  }
});
