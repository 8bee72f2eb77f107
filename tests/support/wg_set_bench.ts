/**
 * Benchmark baseline, run inside a network namespace: starts wireguard-go
 * on IFACE and adds N peers one by one with `wg set IFACE peer K
 * preshared-key /dev/stdin allowed-ips 10.x.y.z/32` (each its own PSK, as
 * the agent adds them), the way a node without an agent would be driven.
 * Prints one JSON line: {"latenciesMs": [...], "totalMs": n}.
 *
 *   deno run -A wg_set_bench.ts IFACE N
 */
import { generateWgPrivateKey, wgPublicKey } from "../../agent/identity.ts";

const [iface, countText] = Deno.args;
const count = Number(countText);
const daemon = new Deno.Command("wireguard-go", {
  args: ["-f", iface],
  env: { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1", LOG_LEVEL: "error" },
  stdout: "null",
  stderr: "null",
}).spawn();
try {
  for (let i = 0; i < 500; i++) {
    if (await Deno.stat(`/var/run/wireguard/${iface}.sock`).then(() => true, () => false)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const keys = Array.from({ length: count }, () => wgPublicKey(generateWgPrivateKey()));
  const psks = keys.map(() => crypto.getRandomValues(new Uint8Array(32)).toBase64());
  const latencies: number[] = [];
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    const child = new Deno.Command("wg", {
      args: [
        "set",
        iface,
        "peer",
        keys[i],
        "preshared-key",
        "/dev/stdin",
        "allowed-ips",
        `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`,
      ],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(psks[i] + "\n"));
    await w.close();
    const out = await child.output();
    if (out.code !== 0) throw new Error(`wg set failed: ${new TextDecoder().decode(out.stderr)}`);
    latencies.push(performance.now() - t);
  }
  console.log(JSON.stringify({ latenciesMs: latencies, totalMs: performance.now() - start }));
} finally {
  daemon.kill("SIGKILL");
  await daemon.status;
}
