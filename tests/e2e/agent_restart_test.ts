// deno-lint-ignore-file no-explicit-any
/**
 * Cold start (CONTRACTS.md §7.8): the agent restores every push from disk
 * with no controller. An agent killed with SIGKILL comes back and adopts
 * its running interface; a node whose every process died (a crash of the
 * whole machine, as far as processes go) comes back with the tunnel
 * working again, the applied revision reported, and a peer added after the
 * last full push (kept in the journal) still there.
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
  wgKeyPair,
} from "../support/agent_harness.ts";

const cap = agentCapability("e2e agent cold start");

labTest(
  "e2e agent: SIGKILL and a whole-node crash, restarted with no controller, serve again from disk",
  cap.ignore,
  async (lab) => {
    const { node, c1, c2 } = await singleNode(lab);

    const { agent, iface } = await startNodeAgent(lab, node);
    const serverKey = (await agent.call("GetStatus", {})).amneziawg.public_key;
    const k1 = wgKeyPair(), k2 = wgKeyPair();
    const p1 = psk(), p2 = psk();
    // A full push at revision 7, then one more peer live (journal only).
    const pushed = await agent.pushAwg([
      { public_key: k1.pub, allowed_ips: ["10.8.0.2/32"], preshared_key: p1 },
    ], 7);
    assert.deepEqual([pushed.applied_revision, pushed.reloaded], ["7", true]);
    await agent.addAwgPeer(k2.pub, ["10.8.0.3/32"], p2);
    await agent.setPolicy({ forwarding: true, masquerade: true });
    const routes = ["203.0.113.0/24"];
    await singleNodeClient(lab, c1, 1, { key: k1, psk: p1, serverKey, routes });
    await singleNodeClient(lab, c2, 2, { key: k2, psk: p2, serverKey, routes });
    assert.ok(await eventually(() => lab.ping(c1, "203.0.113.80"), 20_000), "c1 before");
    assert.ok(await eventually(() => lab.ping(c2, "203.0.113.80"), 20_000), "c2 before");

    // 1. SIGKILL of the agent alone: the daemon keeps the tunnel; the new agent adopts it.
    await agent.crash();
    assert.ok(await lab.ping(c1, "203.0.113.80"), "tunnel survives the agent");
    await agent.start();
    assert.ok(agent.proc.err.some((l) => l.includes('"code":"interface-adopted"')));
    let status = await agent.call("GetStatus", {});
    assert.equal(status.applied_revision, "7");
    assert.equal(status.amneziawg.public_key, serverKey, "same identity");
    assert.ok(await lab.ping(c1, "203.0.113.80"));

    // 2. Every process of the node dies: interfaces gone, nothing serves.
    lab.closeClients();
    await lab.killAll(node);
    await agent.proc.status;
    assert.equal(await lab.ping(c1, "203.0.113.80"), false, "the node is down");
    assert.notEqual((await lab.run(node, ["ip", "link", "show", iface])).code, 0);

    // Restarted with no controller call at all: both peers and the policy are back. The
    // clients' old sessions died with the node; WireGuard re-handshakes after ~15 s of
    // unanswered traffic, hence the long bound.
    await agent.start();
    assert.ok(await eventually(() => lab.ping(c1, "203.0.113.80"), 60_000), "c1 after restart");
    assert.ok(
      await eventually(() => lab.ping(c2, "203.0.113.80"), 60_000),
      "c2 (journal) after restart",
    );
    assert.deepEqual(await lab.tcpProbe(c2, "203.0.113.80", 7000), {
      ok: true,
      from: "198.51.100.1",
    });
    status = await agent.call("GetStatus", {});
    assert.equal(status.applied_revision, "7");
    assert.equal(status.services[0].running, true);
    assert.equal(status.services[0].peer_count, 2);
    // Equal revision after the restart: the interface is up, so a no-op (§1.3).
    const again = await agent.pushAwg([
      { public_key: k1.pub, allowed_ips: ["10.8.0.2/32"], preshared_key: p1 },
    ], 7);
    assert.deepEqual([again.applied_revision, again.reloaded], ["7", false]);
    // Lower revision: refused, nothing changes.
    await assert.rejects(
      agent.pushAwg([], 6),
      (e: any) => e.code === 9 && /stale revision 6/.test(e.details),
    );
    assert.ok(await lab.ping(c2, "203.0.113.80"));
    // The policy rules exist once each (start-up removed what the crashed run left).
    const save = await lab.exec(node, ["iptables-save"]);
    const accepts = save.split("\n").filter((l) => l === `-A FORWARD -i ${iface} -j ACCEPT`);
    assert.equal(accepts.length, 1, save);
    assert.equal((await agent.stop()).code, 0, agent.proc.tail());
  },
);
