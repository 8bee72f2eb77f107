// deno-lint-ignore-file no-explicit-any
/**
 * Cascade (multi-hop), driven as the controller does (CONTRACTS.md §5.6):
 * an entry node with inner links to two exit nodes, a client on the entry
 * whose traffic the entry policy-routes (transit: fwmark, ip rule, table)
 * into the inner link of the chosen exit, which forwards and masquerades.
 * The internet host sees the exit's address; switching exit is one
 * SetNetworkConfig on the entry, the client untouched. A rebooted entry
 * with its exit down starts, serves its direct peers, and carries the
 * cascaded client again once the exit is back.
 */
import assert from "node:assert/strict";
import {
  agentCapability,
  agentPki,
  AgentProcess,
  eventually,
  Lab,
  labTest,
  nodeStateDir,
  psk,
  startWgClient,
  wgKeyPair,
} from "../support/agent_harness.ts";

const cap = agentCapability("e2e agent cascade");
const INET = "203.0.113.80";

async function cascade(lab: Lab) {
  const [client, direct, entry, exitA, exitB, inet] = await Promise.all(
    ["c", "d", "e", "xa", "xb", "i"].map((t) => lab.ns(t)),
  );
  await lab.link(client, "192.0.2.2/30", entry, "192.0.2.1/30");
  await lab.link(direct, "192.0.2.6/30", entry, "192.0.2.5/30");
  await lab.link(entry, "192.0.2.9/30", exitA, "192.0.2.10/30");
  await lab.link(entry, "192.0.2.13/30", exitB, "192.0.2.14/30");
  await lab.link(entry, "198.51.100.1/30", inet, "198.51.100.2/30");
  await lab.link(exitA, "198.51.100.5/30", inet, "198.51.100.6/30");
  await lab.link(exitB, "198.51.100.9/30", inet, "198.51.100.10/30");
  await lab.exec(entry, ["ip", "route", "add", "default", "via", "198.51.100.2"]);
  await lab.exec(exitA, ["ip", "route", "add", "default", "via", "198.51.100.6"]);
  await lab.exec(exitB, ["ip", "route", "add", "default", "via", "198.51.100.10"]);
  await lab.exec(inet, ["ip", "addr", "add", `${INET}/32`, "dev", "lo"]);
  await lab.echoServer(inet, 7000);

  const pki = await agentPki();
  const [ifE, ifA, ifB, linkA, linkB] = await lab.names.reserve(5);
  const start = async (ns: string, iface: string, name: string) =>
    await AgentProcess.start(lab, ns, await nodeStateDir(pki, lab.tmp, name), pki, { iface });
  const [e, xa, xb] = await Promise.all([
    start(entry, ifE, "entry"),
    start(exitA, ifA, "exitA"),
    start(exitB, ifB, "exitB"),
  ]);
  const st = async (a: AgentProcess) => await a.call("GetStatus", {});
  const [se, sa, sb] = await Promise.all([st(e), st(xa), st(xb)]);

  // Exits: forward and masquerade; the entry's key is an edge peer on each.
  const device = wgKeyPair(), devicePsk = psk();
  const edgeA = psk(), edgeB = psk();
  for (const [x, edge] of [[xa, edgeA], [xb, edgeB]] as const) {
    await x.setPolicy({ forwarding: true, masquerade: true });
    await x.addAwgPeer(se.amneziawg.public_key, ["10.8.0.2/32"], edge);
  }
  // Entry: one inner link per exit (slots 0 and 1), the device as a client peer.
  const link = (
    iface: string,
    port: number,
    exitStatus: any,
    endpoint: string,
    key: string,
    rev: number,
  ) =>
    e.call("ConfigureInnerLink", {
      revision: String(rev),
      config: {
        interface: iface,
        listen_port: port,
        mtu: 1340,
        peer_obfuscation: exitStatus.amneziawg.obfuscation,
        exit: {
          protocol: "PROTOCOL_AMNEZIAWG",
          public_key: exitStatus.amneziawg.public_key,
          preshared_key: key,
          allowed_ips: ["0.0.0.0/0"],
          endpoints: [endpoint],
        },
      },
    });
  const la = await link(linkA, 51820, sa, "192.0.2.10:443", edgeA, 1);
  assert.deepEqual([la.applied_revision, la.reloaded], ["1", true]);
  await link(linkB, 51821, sb, "192.0.2.14:443", edgeB, 1);
  await e.addAwgPeer(device.pub, ["10.8.0.2/32"], devicePsk);
  const transit = (inner: string, mark: number) =>
    e.setPolicy({
      forwarding: true,
      masquerade: true,
      transits: [{ device_cidr: "10.8.0.2/32", inner_interface: inner, mark, table: mark }],
    });
  await transit(linkA, 7100);
  await startWgClient(lab, client, {
    name: `pc${lab.id}c`,
    privateKey: device.priv,
    address: "10.8.0.2/32",
    server: {
      publicKey: se.amneziawg.public_key,
      endpoint: "192.0.2.1:443",
      presharedKey: devicePsk,
    },
    routes: ["203.0.113.0/24"],
  });
  return { client, direct, entry, exitA, exitB, e, xa, xb, se, linkA, linkB, transit };
}

/** The source address the internet host sees for a TCP connection from `ns`. */
async function seenAs(lab: Lab, ns: string): Promise<string | undefined> {
  return (await lab.tcpProbe(ns, INET, 7000)).from;
}

labTest(
  "e2e agent cascade: two hops; the internet sees the exit; switching exit is a route change",
  cap.ignore,
  async (lab) => {
    const c = await cascade(lab);
    assert.ok(await eventually(() => lab.ping(c.client, INET), 30_000), "ping through exit A");
    assert.equal(await seenAs(lab, c.client), "198.51.100.5", "the internet sees exit A");
    // The entry shows the transit (mark, rule, table) on its side only.
    const rules = await lab.exec(c.entry, ["ip", "rule", "show"]);
    assert.match(rules, /fwmark 0x1bbc lookup 7100/);
    assert.match(
      await lab.exec(c.entry, ["ip", "route", "show", "table", "7100"]),
      new RegExp(`default dev ${c.linkA}`),
    );

    // Switch exit: one SetNetworkConfig on the entry. Nothing is done on the client.
    await c.transit(c.linkB, 7101);
    assert.ok(
      await eventually(async () => (await seenAs(lab, c.client)) === "198.51.100.9", 30_000),
      "the internet sees exit B after the switch",
    );
    assert.ok(await lab.ping(c.client, INET));
    assert.doesNotMatch(
      await lab.exec(c.entry, ["ip", "rule", "show"]),
      /lookup 7100/,
      "old rule removed",
    );

    // Inner link revisions (§1.3) and removal.
    const same = await c.e.call("ConfigureInnerLink", {
      revision: "1",
      config: {
        interface: c.linkA,
        listen_port: 51820,
        mtu: 1340,
        peer_obfuscation: c.se.amneziawg.obfuscation,
        exit: {
          public_key: (await c.xa.call("GetStatus", {})).amneziawg.public_key,
          endpoints: ["192.0.2.10:443"],
        },
      },
    });
    assert.deepEqual([same.applied_revision, same.reloaded], ["1", false]);
    assert.deepEqual(await c.e.call("RemoveInnerLink", { interface: c.linkA }), {
      removed: true,
    });
    assert.notEqual((await lab.run(c.entry, ["ip", "link", "show", c.linkA])).code, 0);
    assert.deepEqual(await c.e.call("RemoveInnerLink", { interface: c.linkA }), {
      removed: true,
    });
    assert.ok(await lab.ping(c.client, INET), "the other link still carries the client");
  },
);

labTest(
  "e2e agent cascade: a rebooted entry with its exit down serves direct peers, then the exit again",
  cap.ignore,
  async (lab) => {
    const c = await cascade(lab);
    // A direct peer on the entry (no transit): it leaves by the entry itself.
    const d = wgKeyPair(), dPsk = psk();
    await c.e.addAwgPeer(d.pub, ["10.8.0.3/32"], dPsk);
    await startWgClient(lab, c.direct, {
      name: `pc${lab.id}d`,
      privateKey: d.priv,
      address: "10.8.0.3/32",
      server: {
        publicKey: c.se.amneziawg.public_key,
        endpoint: "192.0.2.5:443",
        presharedKey: dPsk,
      },
      routes: ["203.0.113.0/24"],
    });
    assert.ok(await eventually(() => lab.ping(c.client, INET), 30_000), "cascade up");
    assert.ok(await eventually(() => lab.ping(c.direct, INET), 30_000), "direct up");
    assert.equal(await seenAs(lab, c.direct), "198.51.100.1");

    // The exit goes down, then the entry "reboots" (every process killed) and starts alone.
    lab.closeClients();
    await lab.killAll(c.exitA);
    await lab.killAll(c.entry);
    await c.e.proc.status;
    await c.e.start();
    assert.ok(c.e.proc.err.some((l) => l.includes('"code":"inner-link-up"')), c.e.proc.tail());
    assert.ok(
      await eventually(() => lab.ping(c.direct, INET), 60_000),
      "direct peer served after reboot",
    );
    assert.equal(await seenAs(lab, c.direct), "198.51.100.1");
    assert.equal(await lab.ping(c.client, INET), false, "the cascade waits for its exit");
    const status = await c.e.call("GetStatus", {});
    assert.equal(status.services[0].running, true);
    assert.match(
      status.services[0].detail,
      new RegExp(`inner link ${c.linkA} up to 192\\.0\\.2\\.10:443`),
    );

    // The exit comes back (its own cold start): the cascade carries traffic again.
    await c.xa.start();
    assert.ok(
      await eventually(() => lab.ping(c.client, INET), 90_000),
      "cascade back with its exit",
    );
    assert.equal(await seenAs(lab, c.client), "198.51.100.5");
  },
);
