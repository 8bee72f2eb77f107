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
import { until, WAIT_MS } from "../support/wait.ts";
import { type BenchModule, type Figure, figure, percentile } from "./harness.ts";

/**
 * Warm-up plus measured calls stay under the relay's per-connection burst
 * (400 calls, refilled at 200/s: relay/stream_limits.ts), so the latency and
 * not the limiter is measured.
 */
const WARMUP_CALLS = 50;
const UNARY_CALLS = 300;
const STREAM_MESSAGES = 400;
const STREAM_MESSAGE_BYTES = 64 * 1024;

function unaryOnce(client: any): Promise<void> {
  return new Promise((resolve, reject) =>
    client.Unary({ text: "x" }, (err: any) => (err ? reject(err) : resolve()))
  );
}

async function unaryLatencies(client: any): Promise<number[]> {
  for (let i = 0; i < WARMUP_CALLS; i++) await unaryOnce(client);
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

/** "tunnel (plain h2)": our controller, no inner TLS; "tunnel": inner TLS (original controller). */
type Kind = "embedded" | "tunnel" | "tunnel (plain h2)";

async function measure(kind: Kind): Promise<Figure[]> {
  const h = await relayHarness(
    kind === "embedded"
      ? (_accept, _fleet, _leaf, acceptInProcess) =>
        Promise.resolve(embeddedTransport(acceptInProcess))
      : kind === "tunnel"
      ? async (accept, fleet, leaf) => (await startTunnel(accept, fleet, leaf)).transport
      : async (accept, fleet, leaf, acceptInProcess) => {
        const t = await startTunnel(accept, fleet, leaf, { acceptPlain: acceptInProcess });
        await until(() => t.slot.inProcess, WAIT_MS, "the relay to take plain HTTP/2");
        return t.transport;
      },
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
    "baseline is client and server alone. Through a remote relay with an original controller " +
    '("tunnel") a call crosses three TLS layers (client↔relay, the tunnel, and the ' +
    "relay↔controller TLS inside each tunnel substream) instead of one; our controller announces " +
    'plain HTTP/2 ("tunnel (plain h2)"), which drops the inner one. On one thread all layers ' +
    "share one core; on separate hosts each hop carries only its own share (see the Relay-Go " +
    "baseline section for the relay as its own process). The embedded relay has no inner TLS " +
    "(in-process pipe).",
  async run() {
    return [
      ...(await measure("embedded")),
      ...(await measure("tunnel")),
      ...(await measure("tunnel (plain h2)")),
    ];
  },
};
