/**
 * Reconcile's pure parts: desired state built from rows (edges, transits,
 * stale links, bad rows), observed state read from answers (null lists,
 * int64 strings, bad integers), and the steps the diff finds for each kind
 * of drift (CONTRACTS.md §1.3 revision rules, §5.6 cascade).
 */
import assert from "node:assert/strict";
import { NEUTRAL_OBFUSCATION } from "../../core/dataplane/mod.ts";
import {
  buildDesired,
  type DesiredNode,
  type FleetRows,
  type Identity,
  type NodeRow,
} from "../../controller/reconcile/desired.ts";
import {
  diffNode,
  emptyMemory,
  linkKey,
  type NodeMemory,
  type Step,
} from "../../controller/reconcile/diff.ts";
import {
  type ObservedNode,
  parseAwgPeers,
  parseStatus,
  parseXrayPeers,
} from "../../controller/reconcile/observed.ts";
import { policyKey } from "../../controller/reconcile/desired.ts";
import { Paths } from "../../controller/service/paths.ts";
import { AuditFollower } from "../../controller/reconcile/changes.ts";
import { Reconciler } from "../../controller/reconcile/reconciler.ts";
import { peerPskLabel, sealPsk } from "../../controller/reconcile/psk.ts";
import { ACTOR, addNode, addPeer, controllerFixture } from "../support/reconcile_fixture.ts";

const K = (n: number) => btoa(String.fromCharCode(...new Uint8Array(32).fill(n)));
const NOW = 1_900_000_000_000;

function node(id: string, over: Partial<NodeRow> = {}): NodeRow {
  return {
    id,
    name: id,
    host: `198.51.100.${id.length}`,
    status: "active",
    forwarding: 1,
    masquerade: 1,
    isolation: 0,
    endpoints: "[]",
    desired_revision: 3,
    has_cert: 1,
    ...over,
  };
}

function rows(over: Partial<FleetRows> = {}): FleetRows {
  return { nodes: [node("n1")], peers: [], paths: [], links: [], ...over };
}

function peerRow(nodeId: string, n: number, ips: string[], pathId: string | null = null) {
  return {
    id: `p${n}`,
    node_id: nodeId,
    public_key: K(n),
    psk_sealed: null,
    allowed_ips: JSON.stringify(ips),
    protocol: "awg" as const,
    path_id: pathId,
  };
}

function observed(over: {
  revision?: number;
  running?: boolean;
  live?: number;
  peers?: [string, string[]][];
  xray?: string[] | null;
  uptime?: number;
  pending?: boolean;
} = {}): ObservedNode {
  const peers = new Map(
    (over.peers ?? []).map(([k, ips]) => [k, { publicKey: k, allowedIps: [...ips].sort() }]),
  );
  return {
    at: NOW,
    status: {
      appliedRevision: over.revision ?? 3,
      uptimeSeconds: over.uptime ?? 100,
      agentVersion: "t",
      awg: {
        running: over.running ?? true,
        peerCount: over.live ?? peers.size,
        handshakingPeers: 0,
        newestHandshakeAge: -1,
        detail: over.running === false ? "awg0 not up" : "awg0 up",
      },
      xray: {
        running: false,
        configured: over.xray != null,
        peerCount: 0,
        handshakingPeers: 0,
        newestHandshakeAge: -1,
        detail: "",
      },
      identity: null,
      policyPending: over.pending ?? false,
    },
    awgPeers: peers,
    xrayPeers: over.xray ? new Set(over.xray) : null,
  };
}

function desiredOf(r: FleetRows, ids: Map<string, Identity> = new Map(), id = "n1"): DesiredNode {
  const d = buildDesired(r, ids).get(id);
  assert.ok(d);
  return d;
}

/** Memory of a node that got the policy and has run since NOW/1000 - 100. */
function settled(d: DesiredNode): NodeMemory {
  return {
    policyKey: policyKey(d.policy),
    agentStart: NOW / 1000 - 100,
    uptime: 100,
    links: new Map(),
  };
}

const kinds = (steps: Step[]) => steps.map((s) => s.kind);

Deno.test("reconcile diff: a node in step needs nothing", () => {
  const d = desiredOf(rows({ peers: [peerRow("n1", 1, ["10.8.0.2/32"])] }));
  const o = observed({ peers: [[K(1), ["10.8.0.2/32"]]] });
  assert.deepEqual(diffNode(d, o, settled(d)), []);
});

Deno.test("reconcile diff: revisions — fresh, behind, ahead (§1.3)", () => {
  const d = desiredOf(rows({ peers: [peerRow("n1", 1, ["10.8.0.2/32"])] }));
  const fresh = diffNode(d, observed({ revision: 0 }), settled(d));
  assert.deepEqual(fresh, [{
    kind: "push-config",
    revision: 3,
    raise: false,
    reason: "fresh node",
  }]);
  const behind = diffNode(d, observed({ revision: 2 }), settled(d))[0];
  assert.deepEqual([behind.kind, (behind as { revision: number }).revision], ["push-config", 3]);
  const ahead = diffNode(d, observed({ revision: 41 }), settled(d))[0] as Step & {
    kind: "push-config";
  };
  assert.equal(ahead.revision, 42);
  assert.equal(ahead.raise, true);
  assert.match(ahead.reason, /reports revision 41, ahead of the controller's 3/);
});

Deno.test("reconcile diff: missing, changed and extra peers; incomplete never removes", () => {
  const d = desiredOf(rows({
    peers: [peerRow("n1", 1, ["10.8.0.2/32"]), peerRow("n1", 2, ["10.8.0.3/32"])],
  }));
  const o = observed({ peers: [[K(2), ["10.8.0.30/32"]], [K(9), ["10.8.0.9/32"]]] });
  const steps = diffNode(d, o, settled(d));
  assert.deepEqual(steps.map((s) => [s.kind, "reason" in s ? s.reason : ""]), [
    ["add-peer", "missing"],
    ["add-peer", "changed"],
    ["remove-peer", ""],
  ]);
  assert.equal((steps[2] as { publicKey: string }).publicKey, K(9));
  const incomplete = { ...d, incomplete: true };
  assert.deepEqual(kinds(diffNode(incomplete, o, settled(d))), ["add-peer", "add-peer"]);
});

Deno.test("reconcile diff: many differences become one PushConfig at the next revision", () => {
  const peers = Array.from({ length: 40 }, (_, i) => peerRow("n1", i + 1, [`10.8.1.${i}/32`]));
  const d = desiredOf(rows({ peers }));
  const steps = diffNode(d, observed(), settled(d), { fullPushThreshold: 8 });
  assert.deepEqual(steps, [{
    kind: "push-config",
    revision: 4,
    raise: true,
    reason: "40 peers differ",
  }]);
});

Deno.test("reconcile diff: a stopped or blank data plane is restarted first", () => {
  const d = desiredOf(rows({ peers: [peerRow("n1", 1, ["10.8.0.2/32"])] }));
  const down = diffNode(
    d,
    observed({ running: false, peers: [[K(1), ["10.8.0.2/32"]]] }),
    settled(d),
  );
  assert.deepEqual(kinds(down), ["restart-service"]);
  const blank = diffNode(d, observed({ live: 0, peers: [[K(1), ["10.8.0.2/32"]]] }), settled(d));
  assert.match((blank[0] as { reason: string }).reason, /live on 0 of 1 configured peers/);
});

Deno.test("reconcile diff: network policy — first contact, changed, agent restarted, rules missing", () => {
  const d = desiredOf(rows());
  const first = diffNode(d, observed(), emptyMemory());
  assert.deepEqual(first.map((s) => [s.kind, (s as { heal: boolean }).heal]), [[
    "set-network",
    false,
  ]]);
  const mem = settled(d);
  assert.deepEqual(diffNode(d, observed({ uptime: 101 }), mem), [], "uptime jitter is no restart");
  const restarted = diffNode(d, observed({ uptime: 5 }), mem)[0] as Step & { kind: "set-network" };
  assert.equal(restarted.reason, "agent restarted");
  assert.equal(restarted.heal, true);
  // Restarted a second after the last look: the start barely moved, the uptime went back.
  const quick = { ...mem, agentStart: NOW / 1000 - 1, uptime: 2 };
  assert.equal(
    (diffNode(d, observed({ uptime: 0 }), quick)[0] as { reason: string }).reason,
    "agent restarted",
  );
  // A slow GetStatus call blurs the start estimate by up to its length: 10 s later with 105 s
  // of uptime, the start moved 5 s — within 3 s + a 4 s call, beyond 3 s + a 1 s call.
  const later = (callMs: number) => ({ ...observed({ uptime: 105 }), at: NOW + 10_000, callMs });
  assert.deepEqual(diffNode(d, later(4000), mem), [], "a slow call is no restart");
  assert.equal(
    (diffNode(d, later(1000), mem)[0] as { reason: string }).reason,
    "agent restarted",
  );
  const changed = desiredOf(rows({ nodes: [node("n1", { masquerade: 0 })] }));
  assert.equal(
    (diffNode(changed, observed(), mem)[0] as { reason: string }).reason,
    "policy changed",
  );
  assert.equal(
    (diffNode(d, observed({ pending: true }), mem)[0] as { reason: string }).reason,
    "agent reports rules missing",
  );
});

Deno.test("reconcile diff: xray clients only where Xray is configured", () => {
  const x = {
    ...peerRow("n1", 0, []),
    protocol: "xray" as const,
    public_key: "0F0E0D0C-0000-4000-8000-000000000001",
  };
  const d = desiredOf(rows({ peers: [x] }));
  assert.deepEqual(diffNode(d, observed(), settled(d)), []);
  const steps = diffNode(
    d,
    observed({ xray: ["11111111-1111-4111-8111-111111111111"] }),
    settled(d),
  );
  assert.deepEqual(steps.map((s) => [s.kind, (s as { protocol: string }).protocol]), [
    ["add-peer", "xray"],
    ["remove-peer", "xray"],
  ]);
});

Deno.test("reconcile desired: a path's edge — transits on the entry, edge peer on the exit, link to the exit", () => {
  const ids = new Map<string, Identity>([
    ["entry", { awgPublicKey: K(50), obfuscation: { ...NEUTRAL_OBFUSCATION } }],
    ["exit", { awgPublicKey: K(60), obfuscation: { ...NEUTRAL_OBFUSCATION } }],
  ]);
  const r = rows({
    nodes: [
      node("entry", { forwarding: 0, masquerade: 0 }),
      node("exit", { endpoints: '[{"ip":"203.0.113.9","portMin":443,"portMax":443}]' }),
    ],
    peers: [peerRow("entry", 1, ["10.8.0.2/32"], "path1"), peerRow("entry", 2, ["10.8.0.3/32"])],
    paths: [{ id: "path1", entry_node_id: "entry", exit_node_id: "exit", mtu: null }],
    links: [{
      id: "l1",
      entry_node_id: "entry",
      exit_node_id: "exit",
      link_index: 1,
      psk_sealed: new Uint8Array([1]),
      revision: 5,
    }],
  });
  const entry = desiredOf(r, ids, "entry");
  assert.deepEqual(entry.policy, {
    forwarding: true,
    masquerade: false,
    isolation: false,
    transits: [{ deviceCidr: "10.8.0.2/32", innerInterface: "awg2", mark: 7101, table: 7101 }],
  });
  assert.equal(entry.links.length, 1);
  const link = entry.links[0];
  assert.deepEqual(
    [link.slot.interfaceName, link.slot.listenPort, link.mtu, link.revision, link.exitEndpoint],
    ["awg2", 51821, 1340, 5, "203.0.113.9:443"],
  );
  assert.equal(link.exit?.awgPublicKey, K(60));
  const exit = desiredOf(r, ids, "exit");
  assert.deepEqual(exit.awgPeers.map((p) => [p.id, p.publicKey, p.allowedIps, p.pskLabel]), [
    ["link:l1", K(50), ["10.8.0.2/32"], "node_link:l1"],
  ]);
  assert.equal(exit.incomplete, false);

  // Without the entry's key the exit's set is incomplete; without the exit's, no link step.
  const noEntry = desiredOf(r, new Map([["exit", ids.get("exit")!]]), "exit");
  assert.equal(noEntry.incomplete, true);
  const noExit = desiredOf(r, new Map([["entry", ids.get("entry")!]]), "entry");
  assert.equal(noExit.links[0].exit, null);
  assert.equal(
    diffNode(
      noExit,
      observed({ peers: [[K(1), ["10.8.0.2/32"]], [K(2), ["10.8.0.3/32"]]] }),
      settled(noExit),
    ).length,
    0,
  );

  // A link configured with another exit key is re-created; a link without a path comes down.
  const mem = settled(entry);
  mem.links.set("l1", linkKey({ ...link, exit: ids.get("entry")! }));
  const o = observed({ peers: [[K(1), ["10.8.0.2/32"]], [K(2), ["10.8.0.3/32"]]] });
  assert.deepEqual(
    diffNode(entry, o, mem).map((s) => [s.kind, (s as { replace?: boolean }).replace]),
    [["configure-link", true]],
  );
  const gone = desiredOf({ ...r, paths: [], peers: [] }, ids, "entry");
  assert.deepEqual(gone.staleLinks, [{ linkId: "l1", interfaceName: "awg2" }]);
  assert.deepEqual(kinds(diffNode(gone, observed(), settled(gone))), ["remove-link"]);
});

Deno.test("reconcile desired: bad rows are reported, not pushed; pending, disabled and uncertified nodes are left alone", () => {
  const r = rows({
    nodes: [
      node("n1"),
      node("n2", { status: "pending" }),
      node("n3", { status: "disabled" }),
      node("n4", { has_cert: 0 }),
    ],
    peers: [peerRow("n1", 1, ["10.8.0.2/32", "not-a-cidr", "10.8.0.2/32"]), {
      ...peerRow("n1", 2, []),
      allowed_ips: "{",
    }],
  });
  const all = buildDesired(r, new Map());
  assert.deepEqual([...all.keys()], ["n1"]);
  const d = all.get("n1")!;
  assert.deepEqual(d.awgPeers.map((p) => p.allowedIps), [["10.8.0.2/32"], []]);
  assert.equal(d.problems.length, 2);
  assert.match(d.problems.join("\n"), /not-a-cidr|allowed_ips\[1\]/);
  assert.match(d.problems.join("\n"), /not a JSON list/);
});

Deno.test("reconcile observed: what nodes answer, null lists and int64 strings included", () => {
  const s = parseStatus({
    agent_version: "1.0",
    uptime_seconds: "12",
    applied_revision: "7",
    services: [
      {
        protocol: "PROTOCOL_AMNEZIAWG",
        running: true,
        peer_count: 2,
        detail: "awg0 up; 3 network rules pending",
        newest_handshake_age_seconds: "-1",
        handshaking_peers: 0,
      },
      { protocol: "PROTOCOL_XRAY_REALITY", running: false, detail: "not configured" },
    ],
    amneziawg: { public_key: K(3), obfuscation: { jc: 4, h1: "5" } },
  });
  assert.equal(s.appliedRevision, 7);
  assert.equal(s.uptimeSeconds, 12);
  assert.equal(s.awg.peerCount, 2);
  assert.equal(s.policyPending, true);
  assert.equal(s.xray.configured, false);
  assert.equal(s.identity?.awgPublicKey, K(3));
  assert.equal(s.identity?.obfuscation.h1, 5);
  const empty = parseStatus({ services: null, amneziawg: null });
  assert.equal(empty.identity, null);
  assert.equal(empty.awg.running, false);
  assert.throws(() => parseStatus({ applied_revision: "7e3" }), { code: "bad-answer" });
  assert.deepEqual(parseAwgPeers({ peers: null }).size, 0);
  const peers = parseAwgPeers({
    peers: [{ peer: { public_key: K(1), allowed_ips: ["10.0.0.3/32", "10.0.0.2/32"] } }, {
      peer: null,
    }],
  });
  assert.deepEqual([...peers.values()], [{
    publicKey: K(1),
    allowedIps: ["10.0.0.2/32", "10.0.0.3/32"],
  }]);
  assert.deepEqual([...parseXrayPeers({ peers: [{ peer: { id: "ABC" } }] })], ["abc"]);
});

Deno.test("reconcile changes: audit entries map to the nodes they touch; gone rows ask for all", async () => {
  const tmp = await Deno.makeTempDir();
  const f = await controllerFixture(tmp);
  try {
    const a = addNode(f, "n-a");
    const b = addNode(f, "n-b");
    const follow = new AuditFollower(f.db, "system:reconcile");
    assert.deepEqual(follow.poll(), { nodes: new Set(), all: false }, "only what comes after");
    const peer = await addPeer(f, a, { publicKey: K(1), allowedIps: ["10.8.0.2/32"] });
    f.nodes.setPolicy(ACTOR, b, { isolation: false });
    assert.deepEqual(follow.poll(), { nodes: new Set([a, b]), all: false });
    // Reconcile's own writes do not wake it.
    f.service.mutate(
      { actor: "system:reconcile", action: "node.revision", target: { type: "node", id: a } },
      (tx) => tx.update({ desired_revision: 9 }),
    );
    assert.deepEqual(follow.poll(), { nodes: new Set(), all: false });
    f.service.mutate(
      { actor: ACTOR, action: "node_peer.remove", target: { type: "node_peer", id: peer } },
      (tx) => tx.remove(),
    );
    assert.equal(follow.poll().all, true, "a removed peer's node is unknown: the whole fleet");
    // A path change (an exit switch leaves an old exit the row no longer names): the whole fleet.
    new Paths(f.service).create(ACTOR, { entry: a, exit: b });
    assert.equal(follow.poll().all, true, "a path change passes the whole fleet");
  } finally {
    f.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("reconcile errors: a bad interval and a bad preshared key are refused with their code", async () => {
  const tmp = await Deno.makeTempDir();
  const f = await controllerFixture(tmp);
  try {
    const caller = { call: () => Promise.reject(new Error("unused")) };
    const opts = { service: f.service, caller, sealer: f.keystore };
    for (const intervalMs of [0, 1.5, 10 ** 12]) {
      assert.throws(() => new Reconciler({ ...opts, intervalMs }), { code: "bad-interval" });
    }
    // A bad setting falls back to the default (logged), a good one is used.
    const lines: string[] = [];
    const log = {
      debug() {},
      info() {},
      warn: (m: string, x?: Record<string, unknown>) => lines.push(`${m} ${x?.code}`),
      error() {},
      child() {
        return log;
      },
    };
    const rec = new Reconciler({ ...opts, log });
    const setInterval = (v: string) =>
      f.service.mutate(
        {
          actor: ACTOR,
          action: "setting.set",
          target: { type: "setting", id: "reconcile_interval_ms" },
        },
        (tx) => (tx.current ? tx.update({ value: v }) : tx.insert({ value: v })),
      );
    assert.equal(rec.intervalMs, 30_000);
    setInterval("5000");
    assert.equal(rec.intervalMs, 5000);
    setInterval('"fast"');
    assert.equal(rec.intervalMs, 30_000);
    assert.match(lines.join("\n"), /interval setting ignored bad-interval/);
    await assert.rejects(sealPsk(f.keystore, btoa("short"), peerPskLabel("x")), {
      code: "bad-psk",
    });
  } finally {
    f.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
