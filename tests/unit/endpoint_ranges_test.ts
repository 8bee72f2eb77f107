/**
 * Endpoint ranges (CONTRACTS.md §5.7, NetworkConfig.endpoint_ranges) at
 * every place they pass: the one validator in core, the controller's
 * endpoint service (each refusal, nothing written), reconcile's desired
 * state and request, and the agent's SetNetworkConfig and policy applier
 * (pushed ranges replace the flags, empty falls back, persisted and
 * re-applied at start, the DNAT rule cap). The applier runs against a
 * command recorder here; tests/e2e/agent_endpoints_test.ts runs the real
 * iptables.
 */
import assert from "node:assert/strict";
import { localAddresses, PolicyApplier } from "../../agent/dataplane/netpolicy.ts";
import type { AgentNode } from "../../agent/node.ts";
import { describeRanges } from "../../agent/node.ts";
import { nodeControlCore } from "../../agent/service.ts";
import { StateStore } from "../../agent/store.ts";
import { buildDesired, type NodeRow, policyKey } from "../../controller/reconcile/desired.ts";
import { diffNode, emptyMemory } from "../../controller/reconcile/diff.ts";
import { parseStatus } from "../../controller/reconcile/observed.ts";
import { networkConfigRequest } from "../../controller/reconcile/requests.ts";
import { ServiceError } from "../../controller/service/errors.ts";
import {
  MAX_DNAT_RULES,
  MAX_ENDPOINT_RANGES,
  MAX_RANGE_PORTS,
  validateEndpointRanges,
  validateNetworkPolicy,
} from "../../core/dataplane/mod.ts";
import { DataplaneError } from "../../core/dataplane/errors.ts";
import { createLogger } from "../../core/log.ts";
import { ACTOR, addNode, controllerFixture } from "../support/reconcile_fixture.ts";

const r = (ip: string, portMin: number, portMax = portMin) => ({ ip, portMin, portMax });
const log = createLogger("test", { level: "error" });

function refused(fn: () => unknown, code: string, field: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof DataplaneError, String(e));
    assert.equal(e.code, code, e.message);
    if (typeof field === "string") assert.equal(e.field, field, e.message);
    else assert.match(e.field, field);
    return true;
  });
}

Deno.test("endpoint ranges: the validator keeps good pools canonical and in order", () => {
  assert.deepEqual(
    validateEndpointRanges([
      r("198.51.100.7", 2000, 60000), // the presets' range
      r("198.51.100.7", 443), // one port may be anywhere (the listener itself)
      r("198.51.100.7", 53), // even a well-known one
      r("198.51.100.8", 2000, 60000), // the same range on another IP
      r("2001:DB8:0::1", 60001, 65535), // adjacent ranges do not overlap
      r("2001:db8::1", 1024, 1100),
    ], "pool"),
    [
      r("198.51.100.7", 2000, 60000),
      r("198.51.100.7", 443),
      r("198.51.100.7", 53),
      r("198.51.100.8", 2000, 60000),
      r("2001:db8::1", 60001, 65535),
      r("2001:db8::1", 1024, 1100),
    ],
  );
  assert.deepEqual(validateEndpointRanges([], "pool"), []);
  assert.deepEqual(
    validateEndpointRanges([r("203.0.113.1", 1024, 1024 + MAX_RANGE_PORTS - 1)], "pool").length,
    1,
    "exactly the widest range",
  );
});

Deno.test("endpoint ranges: each bad input is refused with its code and field", () => {
  const v = (x: unknown) => () => validateEndpointRanges(x, "pool");
  refused(v("all"), "not-an-array", "pool");
  refused(
    v(Array.from(
      { length: MAX_ENDPOINT_RANGES + 1 },
      (_, i) => r(`10.0.${i >> 8}.${i & 255}`, 443),
    )),
    "too-many",
    "pool",
  );
  refused(v([null]), "bad-port-range", "pool[0]");
  refused(v([r("vpn.example.com", 443)]), "bad-ip", "pool[0].ip");
  refused(v([r("198.51.100.7\n-j ACCEPT", 443)]), "bad-ip", "pool[0].ip");
  refused(
    v([{ ip: "198.51.100.7", portMin: "443", portMax: 443 }]),
    "out-of-range",
    "pool[0].portMin",
  );
  refused(v([r("198.51.100.7", 0)]), "out-of-range", "pool[0].portMin");
  refused(v([r("198.51.100.7", 2000, 65536)]), "out-of-range", "pool[0].portMax");
  refused(v([r("198.51.100.7", 3000, 2000)]), "bad-port-range", "pool[0]");
  refused(v([r("198.51.100.7", 1024, 1024 + MAX_RANGE_PORTS)]), "range-too-wide", "pool[0]");
  refused(v([r("198.51.100.7", 1, 65535)]), "range-too-wide", "pool[0]");
  refused(v([r("198.51.100.7", 500, 600)]), "range-too-low", "pool[0]");
  refused(v([r("198.51.100.7", 1023, 2000)]), "range-too-low", "pool[0]");
  refused(
    v([r("198.51.100.7", 2000, 3000), r("198.51.100.8", 2500), r("198.51.100.7", 3000, 4000)]),
    "overlapping-ranges",
    "pool[2]",
  );
  refused(v([r("2001:db8::1", 443), r("2001:DB8:0:0::1", 443)]), "overlapping-ranges", "pool[1]");
  refused(
    v([r("198.51.100.7", 2000, 60000), r("198.51.100.7", 2077)]),
    "overlapping-ranges",
    "pool[1]",
  );
});

Deno.test("endpoint ranges: part of the network policy, forwarding or not", () => {
  const off = { forwarding: false, masquerade: false, isolation: false, transits: [] };
  assert.deepEqual(validateNetworkPolicy({ ...off, endpointRanges: [r("2001:DB8::1", 443)] }), {
    ...off,
    endpointRanges: [r("2001:db8::1", 443)],
  });
  assert.deepEqual(validateNetworkPolicy({ ...off, endpointRanges: [] }), off, "none: left out");
  assert.deepEqual(validateNetworkPolicy(off), off);
  refused(
    () => validateNetworkPolicy({ ...off, endpointRanges: [r("198.51.100.7", 9, 8)] }),
    "bad-port-range",
    "policy.endpointRanges[0]",
  );
});

Deno.test("endpoint ranges: the controller refuses what the agent would, writes nothing, keeps the preset", async () => {
  const tmp = await Deno.makeTempDir();
  const f = await controllerFixture(tmp);
  try {
    const id = addNode(f, "n1");
    const before = f.nodes.require(id);
    const bad: [string[], RegExp][] = [
      [
        ["198.51.100.7:2000-3000", "198.51.100.7:2500"],
        /endpoint 198\.51\.100\.7:2500: .*overlap 2000-3000; give each port of an IP once/,
      ],
      [
        ["[2001:db8::1]:40000-40100", "[2001:DB8:0::1]:40100-40200"],
        /endpoint \[2001:db8::1\]:40100-40200: .*overlap/,
      ],
      [
        ["198.51.100.7:1024-61024"],
        /endpoint 198\.51\.100\.7:1024-61024: .*60001 ports, at most 60000 \(the preset 2000-60000 fits\)/,
      ],
      [["198.51.100.7:1-65535"], /at most 60000/],
      [["198.51.100.7:100-200"], /reaches below 1024/],
    ];
    for (const [list, message] of bad) {
      assert.throws(() => f.nodes.setEndpoints(ACTOR, id, list), (e: unknown) => {
        assert.ok(e instanceof ServiceError, String(e));
        assert.equal(e.code, "invalid");
        assert.match(e.message, message);
        return true;
      }, list.join(" "));
    }
    assert.deepEqual(f.nodes.require(id), before, "nothing written");
    const { node, changed } = f.nodes.setEndpoints(ACTOR, id, [
      "198.51.100.7:443",
      "198.51.100.7:2000-60000",
      "198.51.100.8:2000-60000",
    ]);
    assert.equal(changed, true);
    assert.deepEqual(node.endpoints, [
      r("198.51.100.7", 443),
      r("198.51.100.7", 2000, 60000),
      r("198.51.100.8", 2000, 60000),
    ]);
  } finally {
    f.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

function nodeRow(endpoints: unknown): NodeRow {
  return {
    id: "n1",
    name: "n1",
    host: "198.51.100.1",
    status: "active",
    forwarding: 1,
    masquerade: 1,
    isolation: 0,
    endpoints: JSON.stringify(endpoints),
    desired_revision: 1,
    has_cert: 1,
  };
}

Deno.test("endpoint ranges: reconcile puts the pool in the node's policy, its key and its request", () => {
  const rowsOf = (endpoints: unknown) => ({
    nodes: [nodeRow(endpoints)],
    peers: [],
    paths: [],
    links: [],
  });
  const pool = [r("198.51.100.1", 443), r("2001:db8::1", 2000, 60000)];
  const d = buildDesired(rowsOf(pool), new Map()).get("n1")!;
  assert.deepEqual(d.policy.endpointRanges, pool);
  assert.deepEqual(d.problems, []);
  assert.deepEqual(networkConfigRequest(d.policy).config, {
    forwarding: true,
    masquerade: true,
    isolation: false,
    transits: [],
    endpoint_ranges: [
      { ip: "198.51.100.1", port_min: 443, port_max: 443 },
      { ip: "2001:db8::1", port_min: 2000, port_max: 60000 },
    ],
  });
  const none = buildDesired(rowsOf([]), new Map()).get("n1")!;
  assert.equal(none.policy.endpointRanges, undefined);
  assert.deepEqual(
    (networkConfigRequest(none.policy).config as { endpoint_ranges: [] }).endpoint_ranges,
    [],
  );
  assert.notEqual(
    policyKey(d.policy),
    policyKey(none.policy),
    "a changed pool is a changed policy",
  );

  // Stored before the checks existed (overlapping): reported, none pushed (the agent's flags apply).
  const old = buildDesired(
    rowsOf([r("198.51.100.1", 2000, 3000), r("198.51.100.1", 2500)]),
    new Map(),
  )
    .get("n1")!;
  assert.equal(old.policy.endpointRanges, undefined);
  assert.match(old.problems.join("\n"), /endpoints not pushed: endpoints\[1\]: .*overlap/);

  // A node that got the policy without the pool gets it again at once.
  const observed = {
    at: 1_900_000_000_000,
    status: parseStatus({
      services: [{ protocol: "PROTOCOL_AMNEZIAWG", running: true, peer_count: 0, detail: "" }],
      applied_revision: "1",
      uptime_seconds: "100",
    }),
    awgPeers: new Map(),
    xrayPeers: null,
  };
  const mem = {
    ...emptyMemory(),
    policyKey: policyKey(none.policy),
    agentStart: 1_900_000_000 - 100,
    uptime: 100,
  };
  const steps = diffNode(d, observed, mem);
  assert.deepEqual(steps.map((s) => [s.kind, "reason" in s ? s.reason : ""]), [
    ["set-network", "policy changed"],
  ]);
});

/** The host addresses the recording applier sees (`ip -j addr show` in a real agent). */
const LOCAL = ["192.0.2.1", "192.0.2.9", "2001:db8::5"];

/** A PolicyApplier over a recording runner: every command succeeds. */
async function recordingApplier(
  dir: string,
  diversity?: { ips: string[]; portMin: number; portMax: number },
  local: string[] = LOCAL,
) {
  const store = new StateStore(dir);
  await store.open();
  const commands: string[] = [];
  const applier = new PolicyApplier({
    store,
    log,
    clientInterface: "awg0",
    egress: "eth0",
    listenPort: 443,
    diversity,
    run: (argv) => {
      commands.push(argv.join(" "));
      return Promise.resolve({ code: 0, stdout: "", stderr: "" });
    },
    localAddresses: () => Promise.resolve(local),
  });
  const dnat = () =>
    applier.applied.map((p) => p.up.join(" ")).filter((c) => c.includes("DNAT")).sort();
  return { applier, commands, dnat };
}

Deno.test("endpoint ranges: the agent applies pushed ranges over its flags, falls back to them, re-applies from disk", async () => {
  const dir = await Deno.makeTempDir();
  const flags = { ips: ["192.0.2.9"], portMin: 3000, portMax: 3010 };
  const base = { forwarding: true, masquerade: false, isolation: false, transits: [] };
  const rule = (ip: string, ports: string) =>
    `iptables -t nat -A PREROUTING -d ${ip}/32 -p udp --dport ${ports} -m addrtype --dst-type LOCAL -j DNAT --to-destination ${ip}:443`;
  try {
    let a = await recordingApplier(dir, flags);
    await a.applier.restore([51820]);
    assert.deepEqual(a.dnat(), [rule("192.0.2.9", "3000:3010")], "no push yet: the flags");
    assert.equal(a.applier.rangesPushed, false);

    await a.applier.set({
      ...base,
      endpointRanges: [r("192.0.2.1", 443), r("192.0.2.1", 2000, 60000)],
    });
    // The listener (443) and an inner link's port (51820) are left out of the DNAT.
    assert.deepEqual(a.dnat(), [rule("192.0.2.1", "2000:51819"), rule("192.0.2.1", "51821:60000")]);
    assert.equal(a.applier.rangesPushed, true);
    assert.deepEqual(a.applier.endpointRanges, [r("192.0.2.1", 443), r("192.0.2.1", 2000, 60000)]);
    assert.ok(
      a.commands.some((c) => c.startsWith("iptables -t nat -D PREROUTING -d 192.0.2.9/32")),
      "the flags' rule removed",
    );
    assert.equal(
      describeRanges(a.applier.endpointRanges),
      "UDP 443 on 192.0.2.1, UDP 2000-60000 on 192.0.2.1",
    );
    a.applier.close();

    // A new agent run (no controller): the pushed ranges from netpolicy.json.
    a = await recordingApplier(dir, flags);
    await a.applier.restore([51820]);
    assert.deepEqual(a.dnat(), [rule("192.0.2.1", "2000:51819"), rule("192.0.2.1", "51821:60000")]);

    // The controller sends none: the flags again.
    await a.applier.set({ ...base, endpointRanges: [] });
    assert.deepEqual(a.dnat(), [rule("192.0.2.9", "3000:3010")]);
    a.applier.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("endpoint ranges: SetNetworkConfig refuses bad ranges with INVALID_ARGUMENT and keeps the rules", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await recordingApplier(dir);
    await a.applier.restore([]);
    const core = nodeControlCore({ policy: a.applier } as unknown as AgentNode, log);
    const set = (ranges: unknown[]) =>
      core.call("SetNetworkConfig", { config: { forwarding: true, endpoint_ranges: ranges } });
    const res = await set([{ ip: "2001:DB8::5", port_min: 40000, port_max: 40100 }]);
    assert.deepEqual(res, {
      applied: true,
      endpoint_ranges: [{ ip: "2001:db8::5", port_min: 40000, port_max: 40100 }],
    });
    const kept = a.dnat();
    assert.equal(kept.length, 1);
    const bad: [unknown[], string, RegExp][] = [
      [
        [{ ip: "nope", port_min: 2000, port_max: 2001 }],
        "bad-ip",
        /config\.endpoint_ranges\[0\]\.ip/,
      ],
      [[{ ip: "192.0.2.1", port_min: 0, port_max: 10 }], "out-of-range", /\[0\]\.portMin/],
      [[{ ip: "192.0.2.1", port_min: 70000, port_max: 70001 }], "out-of-range", /\[0\]\.portMin/],
      [[{ ip: "192.0.2.1", port_min: 3000, port_max: 2000 }], "bad-port-range", /exceeds/],
      [[{ ip: "192.0.2.1", port_min: 1100, port_max: 65535 }], "range-too-wide", /64436 ports/],
      [[{ ip: "192.0.2.1", port_min: 100, port_max: 200 }], "range-too-low", /below 1024/],
      [
        [{ ip: "192.0.2.1", port_min: 2000, port_max: 3000 }, {
          ip: "192.0.2.1",
          port_min: 3000,
          port_max: 3000,
        }],
        "overlapping-ranges",
        /\[1\]: 192\.0\.2\.1 ports 3000-3000 overlap 2000-3000/,
      ],
      [
        Array.from(
          { length: MAX_ENDPOINT_RANGES + 1 },
          (_, i) => ({ ip: `10.1.0.${i}`, port_min: 443, port_max: 443 }),
        ),
        "too-many",
        /config\.endpoint_ranges: at most 64/,
      ],
    ];
    for (const [ranges, code, message] of bad) {
      await assert.rejects(set(ranges), (e: { code: string; status: number; message: string }) => {
        assert.equal(e.status, 3, e.message);
        assert.equal(e.code, code, e.message);
        assert.match(e.message, message);
        return true;
      });
    }
    assert.deepEqual(a.dnat(), kept, "the rules in force stay");

    // The rule cap: ports carved out of a range (inner links' listen ports) need 301 runs.
    // The policy is applied and the first 256 runs forwarded and confirmed, no more.
    await a.applier.reapply(Array.from({ length: 300 }, (_, i) => 20001 + 2 * i));
    const capped = await set([{ ip: "192.0.2.1", port_min: 20000, port_max: 21000 }]);
    const confirmed = capped.endpoint_ranges as { port_min: number; port_max: number }[];
    assert.equal(confirmed.length, MAX_DNAT_RULES);
    assert.equal(a.dnat().length, MAX_DNAT_RULES);
    assert.deepEqual(confirmed[0], { ip: "192.0.2.1", port_min: 20000, port_max: 20000 });
    assert.deepEqual(confirmed.at(-1), { ip: "192.0.2.1", port_min: 20510, port_max: 20510 });
    assert.ok(
      confirmed.every((c) => c.port_min === c.port_max && c.port_min % 2 === 0),
      "no reserved (odd) port confirmed",
    );
    assert.equal(a.applier.policy.forwarding, true, "the rest of the policy applied");
    await a.applier.reapply([]);
    await set([{ ip: "2001:db8::5", port_min: 40000, port_max: 40100 }]);
    assert.deepEqual(a.dnat(), kept);
    a.applier.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("endpoint ranges: the agent forwards and confirms only ranges on its own addresses", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await recordingApplier(dir, undefined, ["192.0.2.1"]);
    await a.applier.restore([]);
    const core = nodeControlCore({ policy: a.applier } as unknown as AgentNode, log);
    // The attack: an admin's `1.1.1.1:53` would DNAT clients' DNS to the listener.
    const res = await core.call("SetNetworkConfig", {
      config: {
        forwarding: true,
        endpoint_ranges: [
          { ip: "1.1.1.1", port_min: 53, port_max: 53 },
          { ip: "192.0.2.1", port_min: 2000, port_max: 2010 },
        ],
      },
    });
    assert.deepEqual(res, {
      applied: true,
      endpoint_ranges: [{ ip: "192.0.2.1", port_min: 2000, port_max: 2010 }],
    });
    assert.deepEqual(a.dnat(), [
      "iptables -t nat -A PREROUTING -d 192.0.2.1/32 -p udp --dport 2000:2010 -m addrtype --dst-type LOCAL -j DNAT --to-destination 192.0.2.1:443",
    ]);
    assert.ok(!a.commands.some((c) => c.includes("1.1.1.1")), "no command names 1.1.1.1");
    a.applier.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("endpoint ranges: the agent confirms the runs it forwards, not the listener or inner-link ports", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await recordingApplier(dir);
    await a.applier.restore([51820, 51821]);
    const core = nodeControlCore({ policy: a.applier } as unknown as AgentNode, log);
    const res = await core.call("SetNetworkConfig", {
      config: {
        forwarding: true,
        endpoint_ranges: [
          { ip: "192.0.2.1", port_min: 443, port_max: 443 },
          { ip: "192.0.2.1", port_min: 2000, port_max: 60000 },
        ],
      },
    });
    // 443 is the listener itself (reached with no rule); 51820-51821 are inner links': left out.
    assert.deepEqual(res.endpoint_ranges, [
      { ip: "192.0.2.1", port_min: 443, port_max: 443 },
      { ip: "192.0.2.1", port_min: 2000, port_max: 51819 },
      { ip: "192.0.2.1", port_min: 51822, port_max: 60000 },
    ]);
    // An inner link added later: the next apply forwards (and confirms) around its port too.
    await a.applier.reapply([51820, 51821, 40000]);
    assert.deepEqual(a.applier.forwarded, [
      { ip: "192.0.2.1", portMin: 443, portMax: 443 },
      { ip: "192.0.2.1", portMin: 2000, portMax: 39999 },
      { ip: "192.0.2.1", portMin: 40001, portMax: 51819 },
      { ip: "192.0.2.1", portMin: 51822, portMax: 60000 },
    ]);
    a.applier.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("endpoint ranges: the host's addresses are read from `ip -j addr show`; a failure reads as none", async () => {
  const out = JSON.stringify([
    { ifname: "lo", addr_info: [{ family: "inet", local: "127.0.0.1" }] },
    {
      ifname: "eth0",
      addr_info: [{ family: "inet", local: "192.0.2.1" }, {
        family: "inet6",
        local: "2001:DB8:0::5",
      }, { local: "not an ip" }],
    },
    { ifname: "dummy" },
  ]);
  const seen: string[][] = [];
  const ok = await localAddresses((argv) => {
    seen.push(argv);
    return Promise.resolve({ code: 0, stdout: out, stderr: "" });
  });
  assert.deepEqual(seen, [["ip", "-j", "addr", "show"]]);
  assert.deepEqual([...ok].sort(), ["127.0.0.1", "192.0.2.1", "2001:db8::5"]);
  const failed = await localAddresses(() =>
    Promise.resolve({ code: 1, stdout: "", stderr: "no ip" })
  );
  assert.equal(failed.size, 0);
  const garbage = await localAddresses(() =>
    Promise.resolve({ code: 0, stdout: "{not json", stderr: "" })
  );
  assert.equal(garbage.size, 0);
});
