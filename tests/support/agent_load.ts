/**
 * Load driver for the agent benchmark, run inside the node's namespace so
 * it reaches NodeControl over TCP as a controller does (no test
 * forwarder in the path). Reads {root, key, chain} from the file given and,
 * on one connection: `trivial` calls of a method that touches nothing
 * (ListPeers for XRay), `count` AddPeer calls one after another (each peer
 * with its own preshared key), then `count2` AddPeer calls with
 * `concurrency` in flight. Prints one JSON line with the latencies, then
 * keeps the connection until its stdin ends.
 *
 *   deno run -A agent_load.ts PKI_JSON HOST:PORT TRIVIAL COUNT COUNT2 CONCURRENCY
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { NodeControlClient } from "../../agent/proto.ts";
import { generateWgPrivateKey, wgPublicKey } from "../../agent/identity.ts";

const [pkiFile, target, ...nums] = Deno.args;
const [trivial, count, count2, concurrency] = nums.map(Number);
const pki = JSON.parse(await Deno.readTextFile(pkiFile));
// deno-lint-ignore no-explicit-any
const client: any = new NodeControlClient(
  target,
  grpc.credentials.createSsl(Buffer.from(pki.root), Buffer.from(pki.key), Buffer.from(pki.chain)),
  { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" },
);
const call = (method: string, req: unknown) =>
  new Promise((resolve, reject) =>
    client[method](
      req,
      { deadline: Date.now() + 60_000 },
      (e: unknown, r: unknown) => e ? reject(e) : resolve(r),
    )
  );
let n = 0;
const peer = () => {
  const i = n++;
  return {
    protocol: "PROTOCOL_AMNEZIAWG",
    public_key: wgPublicKey(generateWgPrivateKey()),
    preshared_key: crypto.getRandomValues(new Uint8Array(32)).toBase64(),
    allowed_ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`],
  };
};
async function timed(
  k: number,
  fn: () => Promise<unknown>,
): Promise<{ latenciesMs: number[]; totalMs: number }> {
  const latenciesMs: number[] = [];
  const start = performance.now();
  for (let i = 0; i < k; i++) {
    const t = performance.now();
    await fn();
    latenciesMs.push(performance.now() - t);
  }
  return { latenciesMs, totalMs: performance.now() - start };
}
for (let i = 0; i < 20; i++) await call("ListPeers", { protocol: "PROTOCOL_XRAY_REALITY" }); // warm-up
const trivialRun = await timed(
  trivial,
  () => call("ListPeers", { protocol: "PROTOCOL_XRAY_REALITY" }),
);
const sequential = await timed(count, () => call("AddPeer", { peer: peer() }));
const start = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async (_, w) => {
    for (let i = w; i < count2; i += concurrency) await call("AddPeer", { peer: peer() });
  }),
);
const concurrent = { count: count2, totalMs: performance.now() - start, concurrency };
console.log(JSON.stringify({ trivial: trivialRun, sequential, concurrent }));
// Stay connected (the benchmark measures memory now) until stdin ends.
for await (const _ of Deno.stdin.readable) { /* wait */ }
client.close();
