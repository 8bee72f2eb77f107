import assert from "node:assert/strict";
import {
  EGRESS_PLACEHOLDER,
  endpointRuns,
  MAX_DNAT_RULES,
  type NetworkPolicy,
  type PolicyInput,
  type RenderedPolicy,
  renderNetworkPolicy,
  validateNetworkPolicy,
} from "../../core/dataplane/mod.ts";
import { assertGolden, assertRejects } from "./dataplane_golden.ts";

const NAMES = { client: "awg0", egress: "eth0" };
const FORWARDING: NetworkPolicy = {
  forwarding: true,
  masquerade: false,
  isolation: false,
  transits: [],
};
const MASQUERADE: NetworkPolicy = { ...FORWARDING, masquerade: true };
const ISOLATION: NetworkPolicy = { ...MASQUERADE, isolation: true };
const TRANSITS: NetworkPolicy = {
  ...ISOLATION,
  transits: [
    { deviceCidr: "10.0.0.5/32", innerInterface: "awg1", mark: 7100, table: 7100 },
    { deviceCidr: "10.0.0.6/32", innerInterface: "awg1", mark: 7100, table: 7100 },
    { deviceCidr: "10.0.0.9/32", innerInterface: "awg2", mark: 7101, table: 7101 },
    { deviceCidr: "FD00::5/128", innerInterface: "awg1", mark: 7100, table: 7100 },
  ],
};
const DIVERSITY = {
  listenPort: 443,
  reservedPorts: [51820, 51821],
  ranges: [
    { ip: "203.0.113.7", portMin: 2000, portMax: 60000 },
    { ip: "2001:DB8::7", portMin: 2000, portMax: 2000 },
    { ip: "198.51.100.8", portMin: 443, portMax: 443 },
  ],
};

const CASES: [string, PolicyInput][] = [
  ["netpolicy_forwarding.txt", { policy: FORWARDING, interfaces: NAMES }],
  ["netpolicy_masquerade.txt", { policy: MASQUERADE, interfaces: NAMES }],
  ["netpolicy_isolation.txt", { policy: ISOLATION, interfaces: NAMES }],
  ["netpolicy_transits.txt", { policy: TRANSITS, interfaces: NAMES }],
  ["netpolicy_dnat.txt", { policy: TRANSITS, interfaces: NAMES, endpointDiversity: DIVERSITY }],
  ["netpolicy_preview.txt", { policy: MASQUERADE, interfaces: { client: "awg0" } }],
];

function sections(r: RenderedPolicy): string {
  const block = (title: string, lines: string[]) => [`[${title}]`, ...lines].join("\n");
  return [
    block("PreUp", r.display.preUp),
    block("PostUp", r.display.postUp),
    block("PostDown", r.display.postDown),
  ].join("\n\n") + "\n";
}

Deno.test("netpolicy: rendered rule sets match the golden files", () => {
  for (const [file, input] of CASES) assertGolden(file, sections(renderNetworkPolicy(input)));
});

Deno.test("netpolicy: same input, same output (one pure function for preview and agent)", () => {
  for (const [, input] of CASES) {
    const copy = structuredClone(input);
    assert.deepEqual(renderNetworkPolicy(input), renderNetworkPolicy(input));
    assert.deepEqual(input, copy, "input must not be mutated");
  }
});

/** The teardown of one PostUp command, derived independently of the renderer. */
function inverse(argv: string[]): string[] {
  if (argv[0] === "iptables" || argv[0] === "ip6tables") {
    const i = argv.findIndex((a) => a === "-A" || a === "-I");
    const rest = argv[i] === "-I" ? argv.slice(i + 3) : argv.slice(i + 2);
    return [...argv.slice(0, i), "-D", argv[i + 1], ...rest];
  }
  const verb = argv.findIndex((a) => a === "add" || a === "replace");
  return [...argv.slice(0, verb), "del", ...argv.slice(verb + 1)];
}

Deno.test("netpolicy: PostDown undoes exactly PostUp, in reverse order", () => {
  for (const [, input] of CASES) {
    const r = renderNetworkPolicy(input);
    assert.equal(r.postDown.length, r.postUp.length);
    r.postUp.forEach((up, i) => assert.deepEqual(r.postDown[r.postUp.length - 1 - i], inverse(up)));
  }
});

Deno.test("netpolicy: argv only — tokens without whitespace, display splits back, allowed binaries", () => {
  for (const [, input] of CASES) {
    const r = renderNetworkPolicy(input);
    for (const key of ["preUp", "postUp", "postDown"] as const) {
      r[key].forEach((argv, i) => {
        assert.ok(["sysctl", "iptables", "ip6tables", "ip"].includes(argv[0]));
        for (const token of argv) assert.match(token, /^[^\s]+$/);
        assert.deepEqual(r.display[key][i].split(" "), argv);
      });
    }
  }
});

Deno.test("netpolicy: forwarding off renders nothing; isolation goes first; transits need rp_filter", () => {
  const off = renderNetworkPolicy({
    policy: { forwarding: false, masquerade: false, isolation: false, transits: [] },
    interfaces: NAMES,
  });
  assert.deepEqual([off.preUp, off.postUp, off.postDown], [[], [], []]);
  const iso = renderNetworkPolicy({ policy: ISOLATION, interfaces: NAMES });
  assert.deepEqual(iso.postUp[0], [
    "iptables",
    "-I",
    "FORWARD",
    "1",
    "-i",
    "awg0",
    "-o",
    "awg0",
    "-j",
    "DROP",
  ]);
  assert.ok(!iso.display.preUp.some((l) => l.includes("rp_filter")));
  const tr = renderNetworkPolicy({ policy: TRANSITS, interfaces: NAMES });
  assert.ok(tr.display.preUp.includes("sysctl -w net.ipv4.conf.all.rp_filter=0"));
  // Shared inner link: one ip rule per family, not one per device.
  assert.equal(
    tr.display.postUp.filter((l) => l === "ip rule add fwmark 7100 lookup 7100").length,
    1,
  );
  assert.equal(tr.display.postUp.filter((l) => l.startsWith("ip -6 rule add")).length, 1);
  // DNAT alone needs no forwarding.
  const dnatOnly = renderNetworkPolicy({
    policy: { forwarding: false, masquerade: false, isolation: false, transits: [] },
    interfaces: NAMES,
    endpointDiversity: DIVERSITY,
  });
  assert.ok(dnatOnly.postUp.length > 0 && dnatOnly.postUp.every((a) => a.includes("DNAT")));
});

Deno.test("netpolicy: DNAT ranges skip the listener and reserved ports", () => {
  const r = renderNetworkPolicy({
    policy: FORWARDING,
    interfaces: NAMES,
    endpointDiversity: DIVERSITY,
  });
  const dports = r.postUp.filter((a) => a.includes("DNAT")).map((a) => a[a.indexOf("--dport") + 1]);
  assert.deepEqual(dports, ["2000:51819", "51822:60000", "2000"]);
  const v6 = r.postUp.find((a) => a[0] === "ip6tables" && a.includes("DNAT"))!;
  assert.equal(v6[v6.indexOf("--to-destination") + 1], "[2001:db8::7]:443");
  // Each rule matches only packets addressed to the host itself: a pushed address that is not
  // the node's (`1.1.1.1:53`) can never divert clients' forwarded traffic to the listener.
  for (const rule of r.postUp.filter((a) => a.includes("DNAT"))) {
    const m = rule.indexOf("addrtype");
    assert.deepEqual(rule.slice(m - 1, m + 3), ["-m", "addrtype", "--dst-type", "LOCAL"]);
    assert.ok(m < rule.indexOf("-j"), "the match comes before the target");
  }
  const one = renderNetworkPolicy({
    policy: FORWARDING,
    interfaces: NAMES,
    endpointDiversity: { listenPort: 443, ranges: [{ ip: "1.1.1.1", portMin: 53, portMax: 53 }] },
  });
  assert.deepEqual(one.display.postUp.filter((c) => c.includes("DNAT")), [
    "iptables -t nat -A PREROUTING -d 1.1.1.1/32 -p udp --dport 53 -m addrtype --dst-type LOCAL -j DNAT --to-destination 1.1.1.1:443",
  ]);
  // The runs are what the renderer DNATs, one rule each, in order: what an agent confirms.
  assert.deepEqual(
    endpointRuns(DIVERSITY).map((x) => `${x.ip} ${x.portMin}-${x.portMax}`),
    r.postUp.filter((a) => a.includes("DNAT")).map((a) =>
      `${a[a.indexOf("-d") + 1].replace(/\/\d+$/, "")} ${
        a[a.indexOf("--dport") + 1].replace(":", "-").replace(/^(\d+)$/, "$1-$1")
      }`
    ),
  );
  const wide = {
    listenPort: 443,
    reservedPorts: Array.from({ length: 300 }, (_, i) => 3000 + 2 * i),
    ranges: [{ ip: "203.0.113.7", portMin: 2000, portMax: 60000 }],
  };
  assertRejects(
    () => renderNetworkPolicy({ policy: FORWARDING, interfaces: NAMES, endpointDiversity: wide }),
    "too-many",
    "endpointDiversity",
  );
  // endpointRuns leaves the cap to its caller (the agent forwards the first MAX_DNAT_RULES).
  assert.equal(endpointRuns(wide).length, 301);
  assert.ok(301 > MAX_DNAT_RULES);
});

Deno.test("netpolicy: preview without egress leaves %e and says so", () => {
  const r = renderNetworkPolicy({ policy: MASQUERADE, interfaces: { client: "awg0" } });
  assert.deepEqual(r.unresolved, [EGRESS_PLACEHOLDER]);
  assert.ok(r.display.postUp.includes("iptables -t nat -A POSTROUTING -o %e -j MASQUERADE"));
  assert.deepEqual(
    renderNetworkPolicy({ policy: FORWARDING, interfaces: { client: "awg0" } }).unresolved,
    [],
  );
  assert.deepEqual(renderNetworkPolicy({ policy: MASQUERADE, interfaces: NAMES }).unresolved, []);
});

Deno.test("netpolicy: §1.4 validation rules, each with a rejecting case", () => {
  const off = { forwarding: false, masquerade: false, isolation: false, transits: [] };
  const t = TRANSITS.transits[0];
  const cases: [unknown, string, string][] = [
    [{ ...off, masquerade: true }, "requires-forwarding", "policy.masquerade"],
    [{ ...off, isolation: true }, "requires-forwarding", "policy.isolation"],
    [{ ...off, transits: [t] }, "requires-forwarding", "policy.transits"],
    [
      { ...FORWARDING, transits: [{ ...t, deviceCidr: "" }] },
      "bad-cidr",
      "policy.transits[0].deviceCidr",
    ],
    [
      { ...FORWARDING, transits: [{ ...t, deviceCidr: "10.0.0.5/32 " }] },
      "bad-cidr",
      "policy.transits[0].deviceCidr",
    ],
    [
      { ...FORWARDING, transits: [{ ...t, deviceCidr: "10.0.0.5/32 -j ACCEPT" }] },
      "bad-cidr",
      "policy.transits[0].deviceCidr",
    ],
    [
      { ...FORWARDING, transits: [{ ...t, innerInterface: "" }] },
      "bad-interface",
      "policy.transits[0].innerInterface",
    ],
    [
      { ...FORWARDING, transits: [{ ...t, innerInterface: "awg1; rm -rf /" }] },
      "bad-interface",
      "policy.transits[0].innerInterface",
    ],
    [
      { ...FORWARDING, transits: [{ ...t, innerInterface: "../awg1" }] },
      "bad-interface",
      "policy.transits[0].innerInterface",
    ],
    [{ ...FORWARDING, transits: [{ ...t, mark: 0 }] }, "out-of-range", "policy.transits[0].mark"],
    [{ ...FORWARDING, transits: [{ ...t, table: 0 }] }, "out-of-range", "policy.transits[0].table"],
    [
      { ...FORWARDING, transits: [{ ...t, table: 254 }] },
      "out-of-range",
      "policy.transits[0].table",
    ],
    [{ ...FORWARDING, transits: [t, t] }, "duplicate", "policy.transits[1].deviceCidr"],
    [
      { ...FORWARDING, transits: [t, { ...t, deviceCidr: "10.0.0.7/32", table: 7101 }] },
      "inconsistent-transit",
      "policy.transits[1]",
    ],
    [
      { ...FORWARDING, transits: [t, { ...t, deviceCidr: "10.0.0.7/32", innerInterface: "awg2" }] },
      "inconsistent-transit",
      "policy.transits[1].mark",
    ],
    [
      {
        ...FORWARDING,
        transits: [t, { ...t, deviceCidr: "10.0.0.7/32", innerInterface: "awg2", mark: 7101 }],
      },
      "inconsistent-transit",
      "policy.transits[1].table",
    ],
    [{ ...FORWARDING, transits: [null] }, "bad-transit", "policy.transits[0]"],
    [{ ...FORWARDING, forwarding: "yes" }, "not-a-boolean", "policy.forwarding"],
    [{ ...FORWARDING, transits: "awg1" }, "not-an-array", "policy.transits"],
    [null, "bad-policy", "policy"],
  ];
  for (const [policy, code, field] of cases) {
    assertRejects(() => validateNetworkPolicy(policy), code, field);
  }
  assert.deepEqual(validateNetworkPolicy({ ...FORWARDING, transits: undefined }).transits, []);
});

Deno.test("netpolicy: interface names and DNAT inputs are validated", () => {
  const render = (patch: Partial<PolicyInput>) => () =>
    renderNetworkPolicy({ policy: TRANSITS, interfaces: NAMES, ...patch });
  assertRejects(
    render({ interfaces: { client: "awg0; rm -rf /", egress: "eth0" } }),
    "bad-interface",
    "interfaces.client",
  );
  assertRejects(
    render({ interfaces: { client: "awg0", egress: "eth0 -j ACCEPT" } }),
    "bad-interface",
    "interfaces.egress",
  );
  assertRejects(
    render({ interfaces: { client: "awg0", egress: "-j" } }),
    "bad-interface",
    "interfaces.egress",
  );
  assertRejects(
    render({ interfaces: { client: "awg0", egress: "awg0" } }),
    "bad-interface",
    "interfaces.egress",
  );
  assertRejects(
    render({ interfaces: { client: "awg1", egress: "eth0" } }),
    "bad-interface",
    "policy.transits[0].innerInterface",
  );
  const range = DIVERSITY.ranges[0];
  const dnat = (patch: object) => render({ endpointDiversity: { ...DIVERSITY, ...patch } });
  assertRejects(dnat({ listenPort: 0 }), "out-of-range", "endpointDiversity.listenPort");
  assertRejects(
    dnat({ reservedPorts: [70000] }),
    "out-of-range",
    "endpointDiversity.reservedPorts[0]",
  );
  assertRejects(
    dnat({ ranges: [{ ...range, ip: "203.0.113.7\n" }] }),
    "bad-ip",
    "endpointDiversity.ranges[0].ip",
  );
  assertRejects(
    dnat({ ranges: [{ ...range, ip: "10.0.0.0/8" }] }),
    "bad-ip",
    "endpointDiversity.ranges[0].ip",
  );
  assertRejects(
    dnat({ ranges: [{ ...range, portMin: 5000, portMax: 4000 }] }),
    "bad-port-range",
    "endpointDiversity.ranges[0]",
  );
  assertRejects(
    dnat({ ranges: [{ ...range, portMax: 65536 }] }),
    "out-of-range",
    "endpointDiversity.ranges[0].portMax",
  );
  assertRejects(dnat({ ranges: "all" }), "not-an-array", "endpointDiversity.ranges");
});
