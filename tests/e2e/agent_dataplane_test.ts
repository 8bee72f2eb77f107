// deno-lint-ignore-file no-explicit-any
/**
 * The agent as it runs on a node, in network namespaces: a node namespace
 * running `agent run` with wireguard-go as the AmneziaWG stand-in, two
 * WireGuard clients (wireguard-go + wg) in their own namespaces, and an
 * "internet" namespace with a host that echoes the source address it sees.
 * Everything is driven through NodeControl as the controller would.
 */
import assert from "node:assert/strict";
import {
  agentCapability,
  eventually,
  labTest,
  psk,
  singleNode,
  singleNodeClient,
  startNodeAgent,
  watchEvents,
  wgKeyPair,
} from "../support/agent_harness.ts";

const cap = agentCapability("e2e agent data plane");

labTest(
  "e2e agent: peers by gRPC carry ping and TCP with masquerade; isolation; forwarding off; removal",
  cap.ignore,
  async (lab) => {
    const { node, c1, c2 } = await singleNode(lab);
    // Endpoint diversity: UDP 2000-2100 on both node addresses reach the listener (DNAT).
    const { agent } = await startNodeAgent(lab, node, {
      extra: ["--endpoint-ips", "192.0.2.1,192.0.2.5", "--endpoint-ports", "2000-2100"],
    });
    const status = await agent.call("GetStatus", {});
    const serverKey = status.amneziawg.public_key;
    assert.match(status.services[0].detail, /plain WireGuard \(wireguard-go\): obfuscation off/);
    assert.match(
      status.services[0].detail,
      /UDP 2000-2100 on 192\.0\.2\.1,192\.0\.2\.5 forwarded to :443/,
    );
    assert.equal(
      status.amneziawg.obfuscation.h1,
      1,
      "neutral obfuscation reported for plain WireGuard",
    );
    assert.equal(status.applied_revision, "0");

    await agent.setPolicy({ forwarding: true, masquerade: true });
    const events = watchEvents(agent);

    const k1 = wgKeyPair(), k2 = wgKeyPair();
    const p1 = psk(), p2 = psk();
    const added = await agent.addAwgPeer(k1.pub, ["10.8.0.2/32"], p1);
    assert.equal(added.applied, true);
    await agent.addAwgPeer(k2.pub, ["10.8.0.3/32"], p2);
    const routes = ["203.0.113.0/24", "10.8.0.0/24"];
    await singleNodeClient(lab, c1, 1, { key: k1, psk: p1, serverKey, routes });
    // c2 uses a port of the advertised range, not the listener's own.
    await singleNodeClient(lab, c2, 2, { key: k2, psk: p2, serverKey, routes, port: 2077 });

    // Ping and TCP to the internet host; it sees the node's address (masquerade).
    assert.ok(await eventually(() => lab.ping(c1, "203.0.113.80"), 20_000), "c1 ping");
    const tcp = await lab.tcpProbe(c1, "203.0.113.80", 7000);
    assert.deepEqual(tcp, { ok: true, from: "198.51.100.1" });
    assert.ok(
      await eventually(() => lab.ping(c2, "203.0.113.80"), 20_000),
      "c2 ping via port 2077",
    );

    // The connect event names the client's source endpoint.
    assert.ok(
      await eventually(
        () =>
          events.events.some((e) =>
            e.type === "EVENT_TYPE_PEER_CONNECTED" && e.peer_id === k1.pub &&
            e.source_endpoint.startsWith("192.0.2.2:")
          ),
        10_000,
      ),
      `no PEER_CONNECTED for c1: ${JSON.stringify(events.events)}`,
    );

    // Without isolation the clients reach each other; with it they do not.
    assert.ok(
      await eventually(() => lab.ping(c1, "10.8.0.3"), 10_000),
      "c1 → c2 without isolation",
    );
    await agent.setPolicy({ forwarding: true, masquerade: true, isolation: true });
    assert.equal(await lab.ping(c1, "10.8.0.3"), false, "isolation blocks client to client");
    assert.ok(await lab.ping(c1, "203.0.113.80"), "isolation keeps the internet");

    // Forwarding off: the node is a dead end.
    await agent.setPolicy({ forwarding: false });
    assert.equal(await lab.ping(c1, "203.0.113.80"), false, "forwarding off");
    assert.equal((await lab.tcpProbe(c1, "203.0.113.80", 7000, { timeoutMs: 1500 })).ok, false);
    await agent.setPolicy({ forwarding: true, masquerade: true });
    assert.ok(await eventually(() => lab.ping(c1, "203.0.113.80"), 10_000), "forwarding back on");

    // Counters, then removal stops the traffic.
    const metrics = await agent.call("GetMetrics", {});
    const m1 = metrics.peers.find((p: any) => p.peer.public_key === k1.pub);
    assert.ok(BigInt(m1.rx_bytes) > 0n && BigInt(m1.tx_bytes) > 0n);
    assert.equal(m1.peer.preshared_key, "", "preshared keys are never sent back");
    assert.ok(BigInt(metrics.handshakes_total) >= 2n);
    const removed = await agent.call("RemovePeer", {
      protocol: "PROTOCOL_AMNEZIAWG",
      public_key: k1.pub,
    });
    assert.equal(removed.applied, true);
    assert.equal(await lab.ping(c1, "203.0.113.80"), false, "removed peer carries nothing");
    assert.ok(await lab.ping(c2, "203.0.113.80"), "the other peer is untouched");
    assert.ok(
      await eventually(
        () =>
          events.events.some((e) =>
            e.type === "EVENT_TYPE_PEER_DISCONNECTED" && e.peer_id === k1.pub
          ),
        10_000,
      ),
      "PEER_DISCONNECTED after removal",
    );
    const list = await agent.call("ListPeers", { protocol: "PROTOCOL_AMNEZIAWG" });
    assert.deepEqual(list.peers.map((p: any) => p.peer.public_key), [k2.pub]);
    events.cancel();
    const stopped = await agent.stop();
    assert.equal(stopped.code, 0, agent.proc.tail());
  },
);
