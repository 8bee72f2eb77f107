/**
 * Real-tool checks of the data-plane renderers, as root in a throwaway
 * network namespace: Debian's wireguard-go provides the interface, the real
 * `wg setconf` reads a rendered (and stripped) AmneziaWG config, the UAPI
 * socket takes a rendered `set` request, `wg show dump` is read back with our
 * parser; and the network-policy rule set is applied with the real iptables
 * and ip, then torn down to exactly the state before.
 */
import assert from "node:assert/strict";
import { x25519 } from "@noble/curves/ed25519.js";
import { capability, hasCommand, isRoot } from "../support/capability.ts";
import { run } from "../support/run.ts";
import {
  addQuietNamespace,
  deleteNamespace,
  inNamespace,
  settleNamespace,
} from "../support/netns.ts";
import {
  generateObfuscation,
  NEUTRAL_OBFUSCATION,
  parseWgDump,
  renderNetworkPolicy,
  renderServerConfig,
  renderUapiSet,
  stripAwgKeys,
  stripAwgUapiKeys,
  type WgDump,
} from "../../core/dataplane/mod.ts";

const wgCap = capability(
  "e2e wg setconf",
  isRoot() && hasCommand("wireguard-go") && hasCommand("wg", ["--version"]) &&
    hasCommand("ip", ["-V"]) && hasCommand("sysctl", ["-n", "kernel.ostype"]),
  "needs root, wireguard-go, wireguard-tools (wg), iproute2 and sysctl (procps)",
);
const fwCap = capability(
  "e2e netpolicy apply",
  isRoot() && hasCommand("ip", ["-V"]) && hasCommand("iptables", ["--version"]) &&
    hasCommand("ip6tables", ["--version"]) && hasCommand("iptables-save", ["--version"]) &&
    hasCommand("sysctl", ["-n", "kernel.ostype"]),
  "needs root, iproute2, iptables/ip6tables and sysctl (procps)",
);

const uniq = () => crypto.getRandomValues(new Uint8Array(3)).toHex();

/** A WireGuard keypair; the private key clamped as `wg` stores it. */
function keyPair(): { priv: string; pub: string } {
  const sk = x25519.utils.randomSecretKey();
  sk[0] &= 248;
  sk[31] = (sk[31] & 127) | 64;
  return { priv: sk.toBase64(), pub: x25519.getPublicKey(sk).toBase64() };
}
const psk = () => crypto.getRandomValues(new Uint8Array(32)).toBase64();

async function must(cmd: string, args: string[], stdin?: string): Promise<string> {
  const r = await run(cmd, args, stdin === undefined ? {} : { stdin });
  assert.equal(r.code, 0, `${cmd} ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves `p`, or rejects after `ms` (the timer is always cleared). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends one UAPI request and returns the reply up to the blank line. */
async function uapi(socket: string, request: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    await conn.write(new TextEncoder().encode(request));
    const dec = new TextDecoder();
    let reply = "";
    const buf = new Uint8Array(4096);
    for (let i = 0; i < 64 && !reply.endsWith("\n\n"); i++) {
      const n = await within(conn.read(buf), 5000, "UAPI reply");
      if (n === null) break;
      reply += dec.decode(buf.subarray(0, n));
    }
    return reply;
  } finally {
    conn.close();
  }
}

function peerByKey(dump: WgDump, key: string) {
  const p = dump.peers.find((x) => x.publicKey === key);
  assert.ok(p, `peer ${key} missing from dump`);
  return p;
}

Deno.test({
  name: "e2e: real wg setconf and UAPI accept rendered configs (wireguard-go in a netns)",
  ignore: wgCap.ignore,
  sanitizeResources: false,
  async fn() {
    const ns = `pharos-wgt-${uniq()}`;
    const ifname = `pwt${uniq()}`;
    const socket = `/var/run/wireguard/${ifname}.sock`;
    const dir = await Deno.makeTempDir({ prefix: "pharos-wgt-" });
    let child: Deno.ChildProcess | undefined;
    let outcome: Promise<Deno.CommandOutput> | undefined;
    try {
      await addQuietNamespace(ns);
      child = new Deno.Command("ip", {
        args: ["netns", "exec", ns, "wireguard-go", "-f", ifname],
        env: { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1", LOG_LEVEL: "error" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      outcome = child.output();
      let up = false;
      for (let i = 0; i < 100 && !up; i++) {
        up = await Deno.stat(socket).then(() => true, () => false);
        if (!up) await sleep(50);
      }
      assert.ok(up, `wireguard-go did not create ${socket} within 5 s`);

      // 1. A server config, neutral obfuscation, AWG keys stripped, through `wg setconf`.
      const server = keyPair();
      const peers = [
        {
          publicKey: keyPair().pub,
          presharedKey: psk(),
          allowedIps: ["10.0.0.3/32", "fd00::3/128"],
        },
        { publicKey: keyPair().pub, allowedIps: ["10.0.0.4/32"], endpoint: "192.0.2.10:51820" },
        { publicKey: keyPair().pub, allowedIps: [], endpoint: "[2001:db8::10]:443" },
      ];
      const listenPort = 20000 + (crypto.getRandomValues(new Uint16Array(1))[0] % 30000);
      const conf = renderServerConfig({
        interfaceName: "awg0",
        innerLink: false,
        privateKey: server.priv,
        listenPort,
        obfuscation: NEUTRAL_OBFUSCATION,
        peers,
      }, { allowNeutral: true });
      const file = `${dir}/${ifname}.conf`;
      await Deno.writeTextFile(file, stripAwgKeys(conf, "wg-setconf"));
      await must("ip", ["netns", "exec", ns, "wg", "setconf", ifname, file]);
      const dump = parseWgDump(
        await must("ip", ["netns", "exec", ns, "wg", "show", ifname, "dump"]),
      );
      assert.equal(dump.interface.privateKey, server.priv);
      assert.equal(dump.interface.publicKey, server.pub);
      assert.equal(dump.interface.listenPort, listenPort);
      assert.equal(dump.peers.length, peers.length);
      for (const p of peers) {
        const got = peerByKey(dump, p.publicKey);
        assert.equal(got.presharedKey, p.presharedKey ?? null);
        assert.deepEqual([...got.allowedIps].sort(), [...p.allowedIps].sort());
        assert.equal(got.endpoint, p.endpoint ?? null);
      }

      // The unstripped AWG config is what plain wg refuses: the stripping is needed.
      const raw = `${dir}/raw.conf`;
      await Deno.writeTextFile(raw, conf);
      const refused = await run("ip", ["netns", "exec", ns, "wg", "setconf", ifname, raw]);
      assert.notEqual(refused.code, 0);

      // 2. A UAPI request (generated obfuscation, AWG keys stripped) straight to the socket.
      const fresh = { publicKey: keyPair().pub, presharedKey: psk() };
      const request = renderUapiSet({
        privateKey: server.priv,
        replacePeers: true,
        obfuscation: generateObfuscation(),
        peers: [{
          ...fresh,
          endpoint: "198.51.100.7:443",
          persistentKeepalive: 25,
          allowedIps: ["0.0.0.0/0", "::/0"],
        }],
      });
      const rejected = await uapi(socket, request);
      assert.match(rejected, /^errno=-?[1-9][0-9]*\n\n$/, "wireguard-go must refuse AWG keys");
      const reply = await uapi(socket, stripAwgUapiKeys(request));
      assert.equal(reply, "errno=0\n\n");
      const after = parseWgDump(
        await must("ip", ["netns", "exec", ns, "wg", "show", ifname, "dump"]),
      );
      assert.equal(after.peers.length, 1);
      const only = peerByKey(after, fresh.publicKey);
      assert.equal(only.presharedKey, fresh.presharedKey);
      assert.equal(only.endpoint, "198.51.100.7:443");
      assert.equal(only.persistentKeepalive, 25);
      assert.deepEqual([...only.allowedIps].sort(), ["0.0.0.0/0", "::/0"]);
    } finally {
      if (child) {
        try {
          child.kill("SIGTERM");
        } catch { /* already gone */ }
        const done = await within(outcome!, 5000, "wireguard-go exit").catch(() => null);
        if (!done) {
          try {
            child.kill("SIGKILL");
          } catch { /* already gone */ }
          await within(outcome!, 5000, "wireguard-go kill").catch(() => null);
        }
      }
      await deleteNamespace(ns);
      await Deno.remove(socket).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "e2e: rendered network policy applies with real iptables/ip and tears down cleanly",
  ignore: fwCap.ignore,
  async fn() {
    const ns = `pharos-npt-${uniq()}`;
    const inNs = (argv: string[]) => run("ip", ["netns", "exec", ns, ...argv]);
    const state = async () =>
      [
        (await inNs(["iptables-save"])).stdout,
        (await inNs(["ip6tables-save"])).stdout,
        (await inNs(["ip", "rule", "show"])).stdout,
        (await inNs(["ip", "-6", "rule", "show"])).stdout,
        (await inNs(["ip", "route", "show", "table", "all"])).stdout,
        (await inNs(["ip", "-6", "route", "show", "table", "all"])).stdout,
      ].map((s, i) =>
        // iptables-nft lists a table only once it has held a rule: compare rules, not headers.
        s.split("\n").filter((l) => i > 1 || l.startsWith("-A ")).join("\n")
      );
    try {
      // Quiet IPv6 (no link-local, no DAD): the kernel must not add routes after the snapshot.
      await addQuietNamespace(ns);
      // Stand-ins for awg0, the inner links and the egress device (no dummy module here: veth pairs).
      for (const dev of ["awg0", "awg1", "awg2", "eth0"]) {
        await inNamespace(ns, [
          "ip",
          "link",
          "add",
          dev,
          "type",
          "veth",
          "peer",
          "name",
          `${dev}p`,
        ]);
        await inNamespace(ns, ["ip", "link", "set", dev, "up"]);
        await inNamespace(ns, ["ip", "link", "set", `${dev}p`, "up"]);
      }
      await inNamespace(ns, ["ip", "addr", "add", "203.0.113.7/32", "dev", "eth0"]);
      await inNamespace(ns, ["ip", "addr", "add", "2001:db8::7/128", "dev", "eth0", "nodad"]);
      await settleNamespace(ns);
      const before = await state();
      const rendered = renderNetworkPolicy({
        policy: {
          forwarding: true,
          masquerade: true,
          isolation: true,
          transits: [
            { deviceCidr: "10.0.0.5/32", innerInterface: "awg1", mark: 7100, table: 7100 },
            { deviceCidr: "10.0.0.6/32", innerInterface: "awg1", mark: 7100, table: 7100 },
            { deviceCidr: "10.0.0.9/32", innerInterface: "awg2", mark: 7101, table: 7101 },
            { deviceCidr: "fd00::5/128", innerInterface: "awg1", mark: 7100, table: 7100 },
          ],
        },
        interfaces: { client: "awg0", egress: "eth0" },
        endpointDiversity: {
          listenPort: 443,
          reservedPorts: [51820],
          ranges: [
            { ip: "203.0.113.7", portMin: 2000, portMax: 60000 },
            { ip: "2001:db8::7", portMin: 2000, portMax: 2000 },
          ],
        },
      });
      assert.deepEqual(rendered.unresolved, []);
      for (const argv of [...rendered.preUp, ...rendered.postUp]) {
        const r = await inNs(argv);
        assert.equal(r.code, 0, `${argv.join(" ")}: ${r.stderr}`);
      }
      const applied = await state();
      assert.notDeepEqual(applied, before);
      assert.ok(applied[0].includes("-A FORWARD -i awg0 -o awg0 -j DROP"));
      assert.ok(applied[2].includes("fwmark 0x1bbc lookup 7100"));
      for (const argv of rendered.postDown) {
        const r = await inNs(argv);
        assert.equal(r.code, 0, `${argv.join(" ")}: ${r.stderr}`);
      }
      assert.deepEqual(await state(), before);
    } finally {
      await deleteNamespace(ns);
    }
  },
});
