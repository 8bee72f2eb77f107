// deno-lint-ignore-file no-explicit-any
/**
 * A legitimate device's unary latency through the relay while another
 * device floods it with rapid resets (open 128 calls, reset them, repeat;
 * reconnect when the relay ends the connection), against the quiet latency
 * measured in the same run. Goal: p99 under the flood ≤ 2× quiet p99.
 * `deno task bench "relay under abuse"`, or alone with
 * `deno run -A tests/bench/relay_abuse.ts` (prints, writes nothing).
 */
import { abuseRelay } from "../support/abuse_harness.ts";
import { startResetFlood } from "../support/abuse_reset_flood.ts";
import { type BenchModule, type Figure, figure, percentile } from "./harness.ts";

/** Calls per condition (quiet, flood), in ROUNDS alternating windows so that both see the same background load. */
const CALLS = 1000;
const ROUNDS = 4;
/**
 * The victim's pace: a busy app, under the relay's default per-connection
 * limit of 200 new calls per second, which the attacker is held to as well.
 */
const VICTIM_PER_SECOND = 150;

function unaryOnce(client: any): Promise<void> {
  return new Promise((resolve, reject) =>
    client.Unary({ text: "x" }, (err: any) => (err ? reject(err) : resolve()))
  );
}

/** `n` unary latencies, one call at a time, at most VICTIM_PER_SECOND. */
async function latencies(client: any, n: number): Promise<number[]> {
  const out: number[] = [];
  const gap = 1000 / VICTIM_PER_SECOND;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await unaryOnce(client);
    const ms = performance.now() - t;
    out.push(ms);
    if (ms < gap) await new Promise((r) => setTimeout(r, gap - ms));
  }
  return out;
}

async function measure(kind: "embedded" | "tunnel"): Promise<Figure[]> {
  const h = await abuseRelay(kind);
  try {
    const client = h.client();
    await latencies(client, 100); // warm-up
    const bad = await h.fleet.issue({ kind: "device", name: "flooder" });
    const quiet: number[] = [];
    const loud: number[] = [];
    let resets = 0, connections = 0;
    const goaways: Record<string, number> = {};
    for (let round = 0; round < ROUNDS; round++) {
      quiet.push(...await latencies(client, CALLS / ROUNDS));
      const flood = startResetFlood({
        port: h.port,
        caPem: h.fleet.rootPem,
        certPem: bad.chainPem,
        keyPem: bad.keyPem,
        perRound: 128,
      });
      await latencies(client, 20); // the flood under way
      loud.push(...await latencies(client, CALLS / ROUNDS));
      const r = await flood.stop();
      resets += r.resets;
      connections += r.connections;
      for (const [code, n] of Object.entries(r.goaways)) goaways[code] = (goaways[code] ?? 0) + n;
    }
    console.error(
      `${kind}: flood sent ${resets} resets on ${connections} connections; GOAWAY codes ${
        JSON.stringify(goaways)
      }`,
    );
    const q99 = percentile(quiet, 99);
    const l99 = percentile(loud, 99);
    return [
      figure(
        `unary p99 via ${kind} relay during a rapid-reset flood (${resets} resets, ${connections} connections)`,
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
    "Victim, relay and backend share one Deno process; the attacker runs in a Worker (its own " +
    "thread, as another machine would be). The ratio column is quiet / flood (1.0 = " +
    "unaffected). The flood: one device opening 128 calls, resetting them and repeating, " +
    "reconnecting whenever the relay ends its connection; the victim: one call at a time, at " +
    "most 150 per second; both under the default limits. Quiet and flood windows alternate " +
    "(4 of each, 250 calls each).",
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
