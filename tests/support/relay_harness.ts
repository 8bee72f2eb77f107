// deno-lint-ignore-file no-explicit-any
/** Wires a fleet, an Echo backend and a relay together for relay tests. */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createLogger } from "../../core/log.ts";
import { certPem, RevocationList } from "../../core/pki/mod.ts";
import { type RunningRelay, startRelay } from "../../relay/relay.ts";
import type { BackendTransport } from "../../relay/transport.ts";
import { echoPkg, startEchoBackend } from "./echo_backend.ts";
import { type Fleet, type IssuedLeaf, makeFleet } from "./pki_fixture.ts";

export interface Harness {
  fleet: Fleet;
  backend: Awaited<ReturnType<typeof startEchoBackend>>;
  relay: RunningRelay;
  revoked: RevocationList;
  relayLeaf: IssuedLeaf;
  device: IssuedLeaf;
  logs: string[];
  client(leaf?: IssuedLeaf | null): any;
  close(): Promise<void>;
}

/** Builds the harness; `transport` gets the backend's accept function. */
export async function relayHarness(
  makeTransport: (
    accept: (c: import("node:stream").Duplex) => void,
    fleet: Fleet,
    relayLeaf: IssuedLeaf,
    acceptInProcess: (c: import("node:stream").Duplex) => void,
  ) => Promise<BackendTransport>,
  opts: { maxMessageBytes?: number; handshakeTimeoutMs?: number } = {},
): Promise<Harness> {
  const fleet = await makeFleet();
  const backend = await startEchoBackend(fleet);
  const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["localhost", "127.0.0.1"] });
  const device = await fleet.issue({ kind: "device", name: "test phone" });
  const revoked = new RevocationList();
  const logs: string[] = [];
  const transport = await makeTransport(
    (c) => backend.accept(c),
    fleet,
    relayLeaf,
    (c) => backend.acceptInProcess(c),
  );
  const relay = await startRelay({
    listen: { hostname: "127.0.0.1", port: 0 },
    certPem: relayLeaf.chainPem,
    keyPem: relayLeaf.keyPem,
    caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
    deviceCaPem: certPem(fleet.pki.device.cert),
    trust: fleet.trust,
    revoked,
    transport,
    log: createLogger("relay", { sink: (l) => logs.push(l) }),
    maxMessageBytes: opts.maxMessageBytes,
    handshakeTimeoutMs: opts.handshakeTimeoutMs,
  });
  const clients: any[] = [];
  return {
    fleet,
    backend,
    relay,
    revoked,
    relayLeaf,
    device,
    logs,
    client(leaf = device) {
      const creds = grpc.credentials.createSsl(
        Buffer.from(fleet.rootPem),
        leaf ? Buffer.from(leaf.keyPem) : null,
        leaf ? Buffer.from(leaf.chainPem) : null,
      );
      const c = new echoPkg.Echo(`localhost:${relay.port}`, creds, {
        "grpc.max_receive_message_length": 32 * 1024 * 1024,
        "grpc.max_send_message_length": 32 * 1024 * 1024,
        "grpc.enable_retries": 0,
      });
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await relay.close();
      await transport.close?.();
      backend.close();
    },
  };
}

/** Promise wrapper of a unary call. */
export function unary(
  client: any,
  method: string,
  req: unknown,
  md = new grpc.Metadata(),
): Promise<any> {
  return new Promise((resolve, reject) => {
    let result: { err: any; res: any } | undefined;
    let status: grpc.StatusObject | undefined;
    const settle = () => {
      if (!result || !status) return;
      if (result.err) reject(result.err);
      else resolve({ res: result.res, trailers: status.metadata.getMap() });
    };
    const call = client[method](
      req,
      md,
      { deadline: Date.now() + 10_000 },
      (err: any, res: any) => {
        result = { err, res };
        settle();
      },
    );
    call.on("status", (s: grpc.StatusObject) => {
      status = s;
      settle();
    });
  });
}
