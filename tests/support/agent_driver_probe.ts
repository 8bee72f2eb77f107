/**
 * Run inside a test network namespace (as root): drives one AmneziaWG
 * driver of the agent through a fixed scenario and prints the interface as
 * it reads back after each step, one JSON line. The "wireguard-kernel"
 * driver (the `wg` tools path used where a kernel module exists) is run
 * against an interface wireguard-go made, since `wg` speaks to both.
 *
 *   deno run -A agent_driver_probe.ts KIND IFACE
 */
import { type AwgKind, type AwgPeer, createAwgDriver } from "../../agent/dataplane/awg.ts";
import { generateWgPrivateKey, wgPublicKey } from "../../agent/identity.ts";
import { NEUTRAL_OBFUSCATION, type WgDump } from "../../core/dataplane/mod.ts";
import { createLogger } from "../../core/log.ts";

const [kind, iface] = Deno.args as [AwgKind, string];
const log = createLogger("probe", { level: "error" });
const runtimeDir = await Deno.makeTempDir({ prefix: "pharos-probe-" });
let helper: Deno.ChildProcess | null = null;
if (kind === "wireguard-kernel") {
  helper = new Deno.Command("wireguard-go", {
    args: ["-f", iface],
    env: { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1", LOG_LEVEL: "error" },
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 300; i++) {
    if (await Deno.stat(`/var/run/wireguard/${iface}.sock`).then(() => true, () => false)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
}
const driver = await createAwgDriver(kind, { log, runtimeDir });
const device = driver.device(iface);
const key = () => wgPublicKey(generateWgPrivateKey());
const psk = () => crypto.getRandomValues(new Uint8Array(32)).toBase64();
const fixed = JSON.parse(Deno.env.get("PROBE_KEYS") ?? "null") as Record<string, string> | null;
const k = fixed ?? { a: key(), b: key(), c: key(), priv: generateWgPrivateKey(), psk: psk() };
const show = (d: WgDump) => ({
  listenPort: d.interface.listenPort,
  publicKey: d.interface.publicKey,
  peers: d.peers.map((p) => ({
    publicKey: p.publicKey,
    presharedKey: p.presharedKey,
    endpoint: p.endpoint,
    allowedIps: [...p.allowedIps].sort(),
    keepalive: p.persistentKeepalive,
  })).sort((x, y) => x.publicKey.localeCompare(y.publicKey)),
});
const steps: unknown[] = [];
try {
  await device.up(1400);
  const a: AwgPeer = {
    publicKey: k.a,
    presharedKey: k.psk,
    allowedIps: ["10.8.0.2/32", "fd00::2/128"],
  };
  const b: AwgPeer = {
    publicKey: k.b,
    allowedIps: ["10.8.0.3/32"],
    endpoint: "192.0.2.9:51820",
    persistentKeepalive: 25,
  };
  const config = { privateKey: k.priv, listenPort: 51999, obfuscation: NEUTRAL_OBFUSCATION };
  await device.sync({ ...config, peers: [a, b] });
  steps.push(show(await device.dump()));
  await device.upsertPeer({ publicKey: k.c, allowedIps: ["10.8.0.4/32"] });
  await device.removePeer(k.a);
  steps.push(show(await device.dump()));
  await device.sync({
    ...config,
    peers: [{ ...b, allowedIps: ["10.8.0.5/32"] }, { publicKey: k.c, allowedIps: ["10.8.0.4/32"] }],
  });
  steps.push(show(await device.dump()));
  const mtu = JSON.parse(
    new TextDecoder().decode(
      (await new Deno.Command("ip", { args: ["-j", "link", "show", iface], stdout: "piped" })
        .output()).stdout,
    ),
  )[0].mtu;
  console.log(JSON.stringify({ ok: true, keys: k, steps, mtu }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: (e as Error).message, steps }));
} finally {
  await device.down().catch(() => {});
  if (helper) {
    try {
      helper.kill("SIGKILL");
    } catch { /* gone */ }
    await helper.status;
  }
  await Deno.remove(runtimeDir, { recursive: true }).catch(() => {});
}
