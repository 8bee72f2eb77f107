// deno-lint-ignore-file no-explicit-any
/**
 * Always-on reconcile against real agents (agent process in a namespace,
 * wireguard-go as the data plane), driven through a direct NodeCaller:
 * - a peer removed (and a stranger added) behind the controller's back;
 * - the data plane losing its live peers, and wireguard-go killed;
 * - the agent's state file edited while it was down (a peer dropped, one
 *   changed, a revision the controller never issued);
 * each healed within two sweeps (pass numbers, not wall time), recorded as
 * a heal row whose audit entry the chain verifies; a node that fails every
 * call does not hold up the others.
 */
import assert from "node:assert/strict";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { Reconciler } from "../../controller/reconcile/reconciler.ts";
import {
  agentCapability,
  agentPki,
  AgentProcess,
  eventually,
  type Lab,
  labTest,
  nodeStateDir,
  psk,
  wgKeyPair,
} from "../support/agent_harness.ts";
import { DirectNodeCaller } from "../support/direct_node_caller.ts";
import {
  addNode,
  addPeer,
  type ControllerFixture,
  controllerFixture,
  healAudit,
  type HealRow,
  healsOf,
} from "../support/reconcile_fixture.ts";

const cap = agentCapability("integration reconcile heals");
const AWG = "PROTOCOL_AMNEZIAWG";
const INTERVAL_MS = 1000;
/** Bound of every wait: generous, so a loaded machine never trips it. */
const WAIT_MS = 60_000;

async function listed(agent: AgentProcess): Promise<Map<string, string[]>> {
  const r = await agent.call("ListPeers", { protocol: AWG });
  return new Map((r.peers ?? []).map((p: any) => [p.peer.public_key, p.peer.allowed_ips]));
}

/** The live interface's peers: public key → preshared key (wg show dump). */
async function live(lab: Lab, ns: string, iface: string): Promise<Map<string, string>> {
  const out = await lab.exec(ns, ["wg", "show", iface, "dump"]);
  return new Map(
    out.trim().split("\n").slice(1).filter((l) => l).map((l) => {
      const [key, presharedKey] = l.split("\t");
      return [key, presharedKey];
    }),
  );
}

async function startAgent(lab: Lab, pki: Awaited<ReturnType<typeof agentPki>>, tag: string) {
  const ns = await lab.ns(tag);
  const [iface] = await lab.names.reserve(1);
  const dir = await nodeStateDir(pki, lab.tmp, tag);
  const agent = await AgentProcess.start(lab, ns, dir, pki, { iface });
  return { ns, iface, dir, agent };
}

function callerFor(pki: Awaited<ReturnType<typeof agentPki>>): DirectNodeCaller {
  return new DirectNodeCaller({
    rootPem: pki.fleet.rootPem,
    chainPem: pki.controller.chainPem,
    keyPem: pki.controller.keyPem,
  });
}

/** The first heal of `nodeId` after pass `after` with an action matching `match`. */
async function healWith(
  f: ControllerFixture,
  nodeId: string,
  after: number,
  match: (a: Record<string, unknown>) => boolean,
): Promise<HealRow> {
  let found: HealRow | undefined;
  await eventually(() => {
    found = healsOf(f.db, nodeId).find((h) => h.sweep > after && h.actions.some(match));
    return found !== undefined;
  }, WAIT_MS);
  assert.ok(found, "a heal record with the expected action");
  return found;
}

/** The heal is in the audit log, by the reconciler, and the chain verifies. */
function assertAudited(f: ControllerFixture, heal: HealRow): void {
  const entry = healAudit(f.db, heal.id);
  assert.ok(entry, "the heal has its audit entry");
  assert.equal(entry.actor, "system:reconcile");
  assert.equal(verifyAudit(f.db).ok, true);
}

labTest(
  "integration reconcile: drift healed within two sweeps and audited; a failing node does not stop the others",
  cap.ignore,
  async (lab) => {
    const pki = await agentPki();
    const { ns, iface, agent } = await startAgent(lab, pki, "a");
    const f = await controllerFixture(lab.tmp);
    const caller = callerFor(pki);
    const a = addNode(f, "node-a");
    const dead = addNode(f, "node-dead");
    // The namespace has no default route, so no masquerade (the agent would refuse it).
    f.nodes.setPolicy("cli:test", a, { masquerade: false });
    caller.set(a, { target: `unix:${agent.socket}`, serverName: "localhost" });
    caller.set(dead, { target: `unix:${lab.tmp}/nobody.sock`, serverName: "localhost" });
    const keys = [wgKeyPair(), wgKeyPair(), wgKeyPair()];
    const psks = keys.map(() => psk());
    for (const [i, k] of keys.entries()) {
      await addPeer(f, a, { publicKey: k.pub, allowedIps: [`10.8.0.${i + 2}/32`], psk: psks[i] });
    }
    const rec = new Reconciler({
      service: f.service,
      caller,
      sealer: f.keystore,
      intervalMs: INTERVAL_MS,
      callTimeoutMs: 5000,
    });
    try {
      rec.start();
      // The first sweep pushes the desired set, PSKs included, despite the dead node.
      assert.ok(await eventually(async () => (await listed(agent)).size === 3, WAIT_MS));
      const livePsk = await live(lab, ns, iface);
      keys.forEach((k, i) => assert.equal(livePsk.get(k.pub), psks[i], `PSK of peer ${i}`));
      assert.ok(await eventually(() => rec.lastError(dead) !== undefined, WAIT_MS));
      assert.match(rec.lastError(dead)!, /grpc-14|UNAVAILABLE|connect/i);
      assert.ok(await eventually(() => rec.stats().errors >= 1, WAIT_MS), "counted per pass");
      assert.equal(rec.lastError(a), undefined, "node-a is fine");

      // 1. A peer removed and a stranger added behind the controller's back.
      const stranger = wgKeyPair();
      const p0 = rec.stats().passes;
      await agent.call("RemovePeer", { protocol: AWG, public_key: keys[1].pub });
      await agent.addAwgPeer(stranger.pub, ["10.8.0.99/32"]);
      assert.ok(
        await eventually(async () => {
          const l = await listed(agent);
          return l.size === 3 && l.has(keys[1].pub) && !l.has(stranger.pub);
        }, WAIT_MS),
        "the peer set is the desired one again",
      );
      const heal = await healWith(
        f,
        a,
        p0 - 1,
        (x) => x.kind === "add-peer" && x.public_key === keys[1].pub,
      );
      assert.ok(heal.sweep <= p0 + 2, `healed in pass ${heal.sweep}, at most two after ${p0}`);
      assert.ok(
        healsOf(f.db, a).some((h) =>
          h.actions.some((x) => x.kind === "remove-peer" && x.public_key === stranger.pub)
        ),
      );
      assertAudited(f, heal);
      assert.equal((await live(lab, ns, iface)).get(keys[1].pub), psks[1], "re-added with its PSK");

      // 2. The data plane loses its live peers (the daemon's state, not the agent's file).
      const p1 = rec.stats().passes;
      for (const k of keys) await lab.exec(ns, ["wg", "set", iface, "peer", k.pub, "remove"]);
      assert.equal((await live(lab, ns, iface)).size, 0);
      assert.ok(
        await eventually(async () => (await live(lab, ns, iface)).size === 3, WAIT_MS),
        "live peers back",
      );
      const restart = await healWith(f, a, p1 - 1, (x) => x.kind === "restart-service");
      assert.ok(restart.sweep <= p1 + 2, `restart in pass ${restart.sweep}`);
      assert.match(String(restart.actions[0].reason), /live on 0 of 3/);
      assertAudited(f, restart);

      // 3. wireguard-go killed: whoever restarts it first (the agent's supervisor or
      // RestartService), the node serves the full set again and reconcile sees it so.
      const pids = (await lab.exec(ns, ["pgrep", "-f", `wireguard-go -f ${iface}`])).trim()
        .split("\n").map(Number).filter((n) => n > 0);
      assert.ok(pids.length >= 1, "wireguard-go runs");
      for (const pid of pids) Deno.kill(pid, "SIGKILL");
      assert.ok(
        await eventually(() => {
          const o = rec.observed(a);
          return o !== undefined && o.at > Date.now() - 5000 && o.status.awg.running &&
            o.status.awg.peerCount === 3;
        }, WAIT_MS),
        "reconcile observes the data plane running with its three peers",
      );
      assert.equal((await live(lab, ns, iface)).size, 3);
      assert.ok(rec.stats().heals >= 1, "the heal is counted");
    } finally {
      await rec.stop();
      caller.close();
      f.close();
    }
  },
);

labTest(
  "integration reconcile: the agent's state file edited while it was down is healed at the next sweeps",
  cap.ignore,
  async (lab) => {
    const pki = await agentPki();
    const { dir, agent } = await startAgent(lab, pki, "b");
    const f = await controllerFixture(lab.tmp);
    const caller = callerFor(pki);
    const b = addNode(f, "node-b");
    f.nodes.setPolicy("cli:test", b, { masquerade: false });
    caller.set(b, { target: `unix:${agent.socket}`, serverName: "localhost" });
    const keys = [wgKeyPair(), wgKeyPair(), wgKeyPair()];
    for (const [i, k] of keys.entries()) {
      await addPeer(f, b, { publicKey: k.pub, allowedIps: [`10.8.0.${i + 2}/32`], psk: psk() });
    }
    const rec = new Reconciler({
      service: f.service,
      caller,
      sealer: f.keystore,
      intervalMs: INTERVAL_MS,
      callTimeoutMs: 5000,
    });
    try {
      rec.start();
      assert.ok(await eventually(async () => (await listed(agent)).size === 3, WAIT_MS));
      assert.equal((await agent.call("GetStatus", {})).applied_revision, "2");

      // A run of a few seconds at least, so its restart shows (uptime goes back).
      assert.ok(
        await eventually(() => (rec.observed(b)?.status.uptimeSeconds ?? 0) >= 5, WAIT_MS),
      );
      // The controller's clients are closed before the agent goes away (the fleet
      // driver's job in the controller); reconcile keeps its memory across stop/start.
      await rec.stop();
      caller.drop(b);
      assert.equal((await agent.stop()).code, 0);
      const file = `${dir}/awg.json`;
      const doc = JSON.parse(await Deno.readTextFile(file));
      const peers = doc.value.peers.filter((p: any) => p.publicKey !== keys[1].pub);
      peers.find((p: any) => p.publicKey === keys[0].pub).allowedIps = ["10.9.9.9/32"];
      doc.value = { revision: "77", peers };
      for await (const e of Deno.readDir(dir)) {
        if (e.name.startsWith("awg.journal-")) await Deno.remove(`${dir}/${e.name}`);
      }
      await Deno.writeTextFile(file, JSON.stringify(doc));
      await agent.start();
      const edited = await listed(agent);
      assert.equal(edited.size, 2, "the agent restored the edited file");
      assert.deepEqual(edited.get(keys[0].pub), ["10.9.9.9/32"]);

      const p0 = rec.stats().passes;
      rec.start();
      assert.ok(
        await eventually(async () => {
          const l = await listed(agent);
          return l.size === 3 && l.get(keys[0].pub)?.[0] === "10.8.0.2/32";
        }, WAIT_MS),
        "peers healed",
      );
      const heal = await healWith(f, b, p0, (x) => x.kind === "push-config");
      assert.ok(heal.sweep <= p0 + 2, `healed in pass ${heal.sweep}, at most two after ${p0}`);
      const push = heal.actions.find((x) => x.kind === "push-config")!;
      assert.equal(push.revision, 78);
      assert.match(String(push.reason), /revision 77, ahead of the controller's 2/);
      assert.ok(
        heal.actions.some((x) => x.kind === "set-network" && x.reason === "agent restarted"),
        "the network policy is re-sent to the restarted agent",
      );
      assert.equal((await agent.call("GetStatus", {})).applied_revision, "78");
      assert.equal(f.nodes.require(b).desiredRevision, 78, "the controller recorded the raise");
      assertAudited(f, heal);
    } finally {
      await rec.stop();
      caller.close();
      f.close();
    }
  },
);
