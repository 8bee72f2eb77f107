// deno-lint-ignore-file no-explicit-any
/**
 * The relay's cost: unary latency and streaming throughput through the
 * embedded and tunnel transports, each against a direct TLS connection to
 * the same backend measured in the same run.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { embeddedTransport } from "../../relay/transport.ts";
import { echoPkg } from "../support/echo_backend.ts";
import { type Harness, relayHarness } from "../support/relay_harness.ts";
import { startTunnel } from "../support/tunnel_fixture.ts";
import { type BenchModule, type Figure, figure, percentile } from "./harness.ts";

const UNARY_CALLS = 2000;
const STREAM_MESSAGES = 400;
const STREAM_MESSAGE_BYTES = 64 * 1024;

function unaryOnce(client: any): Promise<void> {
  return new Promise((resolve, reject) =>
    client.Unary({ text: "x" }, (err: any) => (err ? reject(err) : resolve()))
  );
}

async function unaryLatencies(client: any): Promise<number[]> {
  for (let i = 0; i < 200; i++) await unaryOnce(client); // warm-up
  const out: number[] = [];
  for (let i = 0; i < UNARY_CALLS; i++) {
    const t = performance.now();
    await unaryOnce(client);
    out.push(performance.now() - t);
  }
  return out;
}

/** Bytes per second echoed through a bidi stream (both directions counted). */
async function bidiThroughput(client: any): Promise<number> {
  const blob = Buffer.alloc(STREAM_MESSAGE_BYTES, 7);
  const t = performance.now();
  const call = client.Bidi();
  let got = 0;
  const done = new Promise<void>((resolve, reject) => {
    call.on("data", () => got++);
    call.on("error", reject);
    call.on(
      "status",
      (s: grpc.StatusObject) => (s.code === 0 ? resolve() : reject(new Error(s.details))),
    );
  });
  for (let i = 0; i < STREAM_MESSAGES; i++) {
    if (!call.write({ text: "m", blob })) await new Promise((r) => call.once("drain", r));
  }
  call.end();
  await done;
  if (got !== STREAM_MESSAGES) throw new Error(`bidi echoed ${got} of ${STREAM_MESSAGES}`);
  return (2 * STREAM_MESSAGES * STREAM_MESSAGE_BYTES) / ((performance.now() - t) / 1000);
}

function directClient(h: Harness, port: number): any {
  const creds = grpc.credentials.createSsl(
    Buffer.from(h.fleet.rootPem),
    Buffer.from(h.relayLeaf.keyPem),
    Buffer.from(h.relayLeaf.chainPem),
  );
  return new echoPkg.Echo(`127.0.0.1:${port}`, creds, {
    "grpc.ssl_target_name_override": "coxswain-grpc",
    "grpc.max_receive_message_length": 32 * 1024 * 1024,
  });
}

async function measure(kind: "embedded" | "tunnel"): Promise<Figure[]> {
  const h = await relayHarness(
    kind === "embedded"
      ? (_accept, _fleet, _leaf, acceptInProcess) =>
        Promise.resolve(embeddedTransport(acceptInProcess))
      : async (accept, fleet, leaf) => (await startTunnel(accept, fleet, leaf)).transport,
  );
  try {
    const direct = directClient(h, await h.backend.listenTcp());
    const viaRelay = h.client();
    const d = await unaryLatencies(direct);
    const r = await unaryLatencies(viaRelay);
    const dThroughput = await bidiThroughput(direct);
    const rThroughput = await bidiThroughput(viaRelay);
    direct.close();
    const added = percentile(r, 50) - percentile(d, 50);
    const target = kind === "embedded" ? "added p50 ≤ 0.3 ms" : "added p50 ≤ 1 ms";
    return [
      figure(
        `unary p50 via ${kind} relay (added ${added.toFixed(3)} ms)`,
        percentile(r, 50),
        "ms",
        "direct TLS p50",
        percentile(d, 50),
        {
          lowerIsBetter: true,
          target,
        },
      ),
      figure(
        `unary p99 via ${kind} relay`,
        percentile(r, 99),
        "ms",
        "direct TLS p99",
        percentile(d, 99),
        { lowerIsBetter: true },
      ),
      figure(
        `bidi streaming via ${kind} relay`,
        rThroughput / 1e6,
        "MB/s",
        "direct TLS",
        dThroughput / 1e6,
        {
          target: "≥ 0.8× direct",
        },
      ),
    ];
  } finally {
    await h.close();
  }
}

export const relayBench: BenchModule = {
  section: "Relay",
  notes:
    "Client, relay and controller share one Deno process (one thread) here, while the direct " +
    "baseline is client and server alone. Through a remote relay a call crosses three TLS layers " +
    "(client↔relay, the tunnel, and the relay↔controller TLS inside each tunnel substream that the " +
    "original Go programs require) instead of one, so on one thread streaming tops out near 1/3 of " +
    "direct; on separate hosts each hop carries only its own share. The embedded relay has no inner " +
    "TLS (in-process pipe).",
  async run() {
    return [...(await measure("embedded")), ...(await measure("tunnel"))];
  },
};
