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
import { WAIT_MS, within } from "./wait.ts";

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
  const transport = await within(
    makeTransport(
      (c) => backend.accept(c),
      fleet,
      relayLeaf,
      (c) => backend.acceptInProcess(c),
    ),
    WAIT_MS,
    "the relay's transport to the controller",
  );
  const relay = await within(
    startRelay({
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
    }),
    WAIT_MS,
    "the relay to start",
  );
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
      await within(relay.close(), WAIT_MS, "the relay to close");
      await within(transport.close?.() ?? Promise.resolve(), WAIT_MS, "the transport to close");
      backend.close();
    },
  };
}

/** Deadline of a test's gRPC call: generous, so load never trips it. */
export const CALL_DEADLINE_MS = 10_000;

/** A deadline `ms` from now, for the call options of a gRPC call in a test. */
export function deadline(ms = CALL_DEADLINE_MS): { deadline: number } {
  return { deadline: Date.now() + ms };
}

/** Promise wrapper of a unary call, with a deadline (and a bound on its status past it). */
export function unary(
  client: any,
  method: string,
  req: unknown,
  md = new grpc.Metadata(),
): Promise<any> {
  const call = new Promise<any>((resolve, reject) => {
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
      deadline(),
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
  return within(call, CALL_DEADLINE_MS + WAIT_MS, `the ${method} call's answer and status`);
}
