// deno-lint-ignore-file no-explicit-any
/**
 * A legitimate device's unary latency through the relay while another
 * device floods it with rapid resets (open 128 calls, reset them, repeat),
 * against the quiet latency measured in the same run. Goal: p99 under the
 * flood ≤ 2× quiet p99. Run alone with
 * `deno run -A tests/bench/relay_abuse.ts` (prints, writes nothing).
 */
import { DEFAULT_STREAM_LIMITS } from "../../relay/stream_limits.ts";
import { abuseRelay } from "../support/abuse_harness.ts";
import { deviceResetRounds } from "../support/h2_attacks.ts";
import { RawH2 } from "../support/h2_raw.ts";
import { type BenchModule, type Figure, figure, percentile } from "./harness.ts";

const CALLS = 1000;

function unaryOnce(client: any): Promise<void> {
  return new Promise((resolve, reject) =>
    client.Unary({ text: "x" }, (err: any) => (err ? reject(err) : resolve()))
  );
}

async function latencies(client: any, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await unaryOnce(client);
    out.push(performance.now() - t);
  }
  return out;
}

async function measure(kind: "embedded" | "tunnel"): Promise<Figure[]> {
  // The victim calls back to back (thousands per second, unlike a phone): lift the per-second
  // limits so that only the flood, not the victim's own pace, is measured. Concurrency limits stay.
  const unlimited = { perSecond: 1e6, burst: 1e6 };
  const d = DEFAULT_STREAM_LIMITS.device;
  const h = await abuseRelay(kind, {
    limits: {
      device: {
        ...d,
        connection: { ...d.connection, ...unlimited },
        peer: { ...d.peer, ...unlimited },
      },
    },
  });
  try {
    const client = h.client();
    await latencies(client, 200); // warm-up
    const quiet = await latencies(client, CALLS);
    const bad = await h.fleet.issue({ kind: "device", name: "flooder" });
    const attacker = await RawH2.connect({
      port: h.port,
      caPem: h.fleet.rootPem,
      certPem: bad.chainPem,
      keyPem: bad.keyPem,
    });
    let flooding = true;
    let resets = 0;
    const flood = (async () => {
      for (let i = 0; i < 10_000 && flooding && !attacker.closed; i++) {
        resets += (await deviceResetRounds(attacker, 1, 128)).resetsSent;
      }
    })();
    const loud = await latencies(client, CALLS);
    flooding = false;
    await flood;
    attacker.close();
    const q99 = percentile(quiet, 99);
    const l99 = percentile(loud, 99);
    return [
      figure(
        `unary p99 via ${kind} relay during a rapid-reset flood (${resets} resets)`,
        l99,
        "ms",
        "quiet p99",
        q99,
        { lowerIsBetter: true, target: "≥ 0.5 (flood p99 ≤ 2× quiet)" },
      ),
      figure(
        `unary p50 via ${kind} relay during the flood`,
        percentile(loud, 50),
        "ms",
        "quiet p50",
        percentile(quiet, 50),
        { lowerIsBetter: true },
      ),
    ];
  } finally {
    await h.close();
  }
}

export const relayAbuseBench: BenchModule = {
  section: "Relay under abuse",
  notes:
    "Attacker, victim, relay and backend share one Deno process. The ratio column is quiet / " +
    "flood (1.0 = unaffected); the flood is one device opening 128 calls, resetting them and " +
    "repeating, which the relay refuses beyond its limits and paces towards the controller.",
  async run() {
    return [...(await measure("embedded")), ...(await measure("tunnel"))];
  },
};

if (import.meta.main) {
  const { renderSection } = await import("./report.ts");
  const figures = await relayAbuseBench.run();
  console.log(
    renderSection(
      relayAbuseBench.section,
      figures,
      `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
      new Date().toISOString().slice(0, 10),
      relayAbuseBench.notes,
    ),
  );
  Deno.exit(0);
}
