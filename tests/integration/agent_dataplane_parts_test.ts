// deno-lint-ignore-file no-explicit-any
/**
 * The agent's data-plane parts against the real tools, in network
 * namespaces:
 * - the two AmneziaWG configuration paths — the UAPI socket (wireguard-go,
 *   amneziawg-go) and the `wg`/`awg` tools (kernel modules; exercised here
 *   on an interface wireguard-go made, since `wg` drives both) — leave an
 *   interface in the same state after the same steps;
 * - the network-policy applier: every change is a difference, applying the
 *   same policy twice changes nothing, a rule someone deleted comes back,
 *   a restart removes exactly what the previous run added and re-applies,
 *   and teardown leaves the namespace exactly as it was.
 */
import assert from "node:assert/strict";
import { PolicyApplier } from "../../agent/dataplane/netpolicy.ts";
import { StateStore } from "../../agent/store.ts";
import { createLogger } from "../../core/log.ts";
import { agentCapability, Lab, labTest } from "../support/agent_harness.ts";
import { run } from "../support/run.ts";

const cap = agentCapability("integration agent data-plane parts");
const PROBE = new URL("../support/agent_driver_probe.ts", import.meta.url).pathname;

labTest(
  "integration agent: UAPI and wg-tools drivers agree step by step (wireguard-go interfaces)",
  cap.ignore,
  async (lab) => {
    const ns = await lab.ns("d");
    const [i1, i2] = await lab.names.reserve(2);
    const probe = async (kind: string, iface: string, keys?: unknown) => {
      const r = await run("ip", [
        "netns",
        "exec",
        ns,
        Deno.execPath(),
        "run",
        "-A",
        PROBE,
        kind,
        iface,
      ], {
        env: keys ? { PROBE_KEYS: JSON.stringify(keys) } : {},
      });
      const out = JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "{}");
      assert.ok(out.ok, `${kind}: ${out.error ?? r.stderr}`);
      return out;
    };
    const uapi = await probe("wireguard-go", i1);
    const tools = await probe("wireguard-kernel", i2, uapi.keys);
    assert.deepEqual(tools.steps, uapi.steps);
    assert.equal(uapi.mtu, 1400);
    assert.equal(tools.mtu, 1400);
    const [first, second, third] = uapi.steps;
    assert.equal(first.listenPort, 51999);
    assert.equal(first.peers.length, 2);
    const a = first.peers.find((p: any) => p.publicKey === uapi.keys.a);
    assert.equal(a.presharedKey, uapi.keys.psk, "per-peer preshared key");
    assert.deepEqual(a.allowedIps, ["10.8.0.2/32", "fd00::2/128"]);
    const b = first.peers.find((p: any) => p.publicKey === uapi.keys.b);
    assert.deepEqual([b.endpoint, b.keepalive], ["192.0.2.9:51820", 25]);
    assert.deepEqual(
      second.peers.map((p: any) => p.publicKey).sort(),
      [uapi.keys.b, uapi.keys.c].sort(),
    );
    assert.deepEqual(third.peers.find((p: any) => p.publicKey === uapi.keys.b).allowedIps, [
      "10.8.0.5/32",
    ]);
  },
);

Deno.test({
  name:
    "integration agent: policy applier is idempotent, heals drift, restarts cleanly, tears down exactly",
  ignore: cap.ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const lab = await Lab.create();
    const dir = await Deno.makeTempDir({ prefix: "pharos-policy-" });
    try {
      const ns = await lab.ns("p");
      // Stand-ins for the client interface, an inner link and the egress device.
      for (const dev of ["awg0", "awg7", "eth0"]) {
        await lab.exec(ns, ["ip", "link", "add", dev, "type", "veth", "peer", "name", `${dev}p`]);
        await lab.exec(ns, ["ip", "link", "set", dev, "up"]);
        await lab.exec(ns, ["ip", "link", "set", `${dev}p`, "up"]);
      }
      await lab.exec(ns, ["ip", "addr", "add", "198.51.100.1/30", "dev", "eth0"]);
      await lab.exec(ns, ["ip", "route", "add", "default", "via", "198.51.100.2"]);
      const inNs = (argv: string[]) => run("ip", ["netns", "exec", ns, ...argv]);
      const snapshot = async () =>
        [
          (await inNs(["iptables-save"])).stdout,
          (await inNs(["ip6tables-save"])).stdout,
          (await inNs(["ip", "rule", "show"])).stdout,
          (await inNs(["ip", "route", "show", "table", "all"])).stdout,
        ].map((s, i) =>
          s.split("\n").filter((l) => i > 1 || l.startsWith("-A ")).sort().join("\n")
        );
      const before = await snapshot();
      const store = new StateStore(dir);
      await store.open();
      let commands = 0;
      const make = () =>
        new PolicyApplier({
          store,
          log: createLogger("test", { level: "error" }),
          clientInterface: "awg0",
          listenPort: 443,
          diversity: { ips: ["198.51.100.1"], portMin: 2000, portMax: 2010 },
          run: (argv) => {
            commands++;
            return inNs(argv);
          },
        });
      const full = {
        forwarding: true,
        masquerade: true,
        isolation: true,
        transits: [{ deviceCidr: "10.8.0.2/32", innerInterface: "awg7", mark: 7100, table: 7100 }],
      };
      let applier = make();
      await applier.restore([51820]);
      await applier.set(full);
      const applied = await snapshot();
      assert.match(applied[0], /-A POSTROUTING -o eth0 -j MASQUERADE/, "egress autodetected");
      assert.match(
        applied[0],
        /--dport 2000:2010 -m addrtype --dst-type LOCAL -j DNAT --to-destination 198\.51\.100\.1:443/,
      );
      assert.match(applied[2], /fwmark 0x1bbc lookup 7100/);

      // The same policy again: no add or remove, only checks.
      commands = 0;
      await applier.set(full);
      assert.deepEqual(await snapshot(), applied, "idempotent");
      // Drift: a rule deleted behind the agent's back is re-added by the next apply.
      await lab.exec(ns, ["iptables", "-D", "FORWARD", "-i", "awg0", "-j", "ACCEPT"]);
      await applier.set(full);
      assert.deepEqual(await snapshot(), applied, "healed");
      // A smaller policy: exactly the difference goes.
      await applier.set({ forwarding: true, masquerade: false, isolation: false, transits: [] });
      const smaller = await snapshot();
      assert.doesNotMatch(smaller[0], /MASQUERADE|-i awg0 -o awg0 -j DROP|MARK/);
      assert.doesNotMatch(smaller[2], /7100/);
      // A failing change (transit to an interface that does not exist) is rolled back.
      await assert.rejects(
        applier.set({
          ...full,
          transits: [{
            deviceCidr: "10.8.0.2/32",
            innerInterface: "awg9",
            mark: 7101,
            table: 7101,
          }],
        }),
        (e: any) => e.code === "policy-failed" && e.status === 13,
      );
      assert.deepEqual(await snapshot(), smaller, "rolled back to the previous rule set");
      // A crashed agent: the next one removes what the file lists, then applies it again.
      await applier.set(full);
      applier.close();
      applier = make();
      await applier.restore([51820]);
      assert.deepEqual(await snapshot(), applied, "restart re-applies, no duplicates");
      // Forwarding off: the dead-end rules only (and DNAT, which needs no forwarding).
      await applier.set({ forwarding: false, masquerade: false, isolation: false, transits: [] });
      const off = await snapshot();
      assert.match(off[0], /-A FORWARD -i awg0 -j DROP/);
      assert.match(off[1], /-A FORWARD -i awg0 -j DROP/);
      await applier.teardown();
      applier.close();
      assert.deepEqual(await snapshot(), before, "teardown removes exactly what was added");
    } finally {
      await lab.cleanup();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
