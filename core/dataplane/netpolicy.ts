/**
 * The network-policy rule set of CONTRACTS.md §5.5 as one pure function,
 * used by the controller's read-only preview and by the agent alike: the
 * same input always yields the same argv lists and display strings.
 *
 * Output is argv arrays, never shell strings; every element is a validated
 * token without whitespace, so the display form (argv joined by one space)
 * splits back into the same argv. Only `sysctl`, `iptables`, `ip6tables` and
 * `ip` appear.
 *
 * Departures from the original rule set (CONTRACTS.md §7.12):
 * - every IPv4 rule has its ip6tables twin (IPv6 is forwarded too, so it
 *   gets the same isolation, accept and masquerade rules);
 * - forwarded client traffic to non-public destinations
 *   ({@link NON_PUBLIC_DESTINATIONS}: the node's LAN, the cloud metadata
 *   service) leaving by another interface is dropped;
 * - transits sharing one inner link get one `ip rule`/`ip route`, not one
 *   per device;
 * - PostDown is the exact reverse of PostUp.
 * Endpoint diversity (§5.7) adds DNAT rules for the advertised UDP port
 * ranges; those need no forwarding and are rendered whenever asked for,
 * each limited to packets addressed to the host itself (addrtype LOCAL).
 * Sysctls are not reverted (as in the original: other services may rely on
 * forwarding).
 */
import { DataplaneError } from "./errors.ts";
import { formatIp, NON_PUBLIC_DESTINATIONS, parseCidr, parseIp } from "./ip.ts";
import {
  checkArray,
  checkClientInterface,
  checkInnerInterface,
  checkLinuxInterface,
  checkMark,
  checkPort,
  checkTable,
} from "./validate.ts";

/** Policy-routes one device's tunnel address into an inner (cascade) link. */
export interface TransitRoute {
  deviceCidr: string;
  innerInterface: string;
  mark: number;
  table: number;
}

/**
 * The three toggles and the transits of SetNetworkConfig (§1.2 NetworkConfig),
 * plus PharosVPN's endpoint ranges (NetworkConfig.endpoint_ranges, §5.7).
 */
export interface NetworkPolicy {
  forwarding: boolean;
  masquerade: boolean;
  isolation: boolean;
  transits: readonly TransitRoute[];
  /**
   * The UDP port ranges the controller wants DNATed onto the AmneziaWG
   * listener (the node's endpoint pool). Absent or empty: the controller
   * sent none (an original controller never does), and the agent falls
   * back to its own flags. Never rendered from here: the agent passes the
   * ranges in force as {@link PolicyInput.endpointDiversity}.
   */
  endpointRanges?: readonly PortRangeForward[];
}

/** One advertised endpoint: a node IP and a UDP port range to DNAT onto the listener. */
export interface PortRangeForward {
  ip: string;
  portMin: number;
  portMax: number;
}

/** Endpoint diversity (§5.7): extra UDP ports that reach the AmneziaWG listener. */
export interface EndpointDiversity {
  /** The AmneziaWG listener port (443 on awg0). */
  listenPort: number;
  /** Ports that must keep reaching their own socket (inner-link listen ports). */
  reservedPorts?: readonly number[];
  ranges: readonly PortRangeForward[];
}

/** What the renderer needs besides the policy. */
export interface PolicyInput {
  policy: NetworkPolicy;
  /** Client interface (%i, awg0); egress interface (%e) when known. */
  interfaces: { client: string; egress?: string };
  endpointDiversity?: EndpointDiversity;
}

/** The rendered rule set. */
export interface RenderedPolicy {
  preUp: string[][];
  postUp: string[][];
  /** Undoes `postUp`, in reverse order. */
  postDown: string[][];
  /** The same commands as single-space-joined strings. */
  display: { preUp: string[]; postUp: string[]; postDown: string[] };
  /**
   * Placeholders left in the argv: `["%e"]` when masquerade is on and no
   * egress interface was given (the controller preview). Never execute a
   * set whose `unresolved` is not empty.
   */
  unresolved: string[];
}

/** The egress placeholder shown when the egress interface is not known. */
export const EGRESS_PLACEHOLDER = "%e";
/** Most DNAT rules one policy may produce (one per forwarded run, {@link endpointRuns}). */
export const MAX_DNAT_RULES = 256;
/** Most endpoint ranges one policy may carry (each is at least one DNAT rule). */
export const MAX_ENDPOINT_RANGES = 64;
/**
 * Most entries an agent's confirmation may hold: its DNAT runs plus the
 * listener port on each address of the pool.
 */
export const MAX_CONFIRMED_RANGES = MAX_DNAT_RULES + MAX_ENDPOINT_RANGES;
/**
 * Widest endpoint range in ports. The presets' 2000–60000 (58,001 ports)
 * fits; a range near all of 1–65535 would take every UDP service of the
 * address.
 */
export const MAX_RANGE_PORTS = 60_000;
/**
 * Ranges of more than one port start at or above this: below it live the
 * well-known UDP services (DNS, NTP, IKE…) a range must not capture. One
 * port (e.g. `IP:443`) may be anywhere.
 */
export const RANGE_PORT_FLOOR = 1024;

function checkBool(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") {
    throw new DataplaneError("not-a-boolean", field, `expected true or false, got ${typeof value}`);
  }
  return value;
}

/**
 * Validates a policy with the rules of §1.4 SetNetworkConfig (masquerade,
 * isolation and transits each require forwarding; every transit needs a
 * valid device CIDR and inner interface and non-zero mark and table) plus
 * consistency: one inner interface ↔ one mark ↔ one table, each device
 * CIDR at most once; endpoint ranges by {@link validateEndpointRanges}
 * (they need no forwarding). Returns a canonical copy (`endpointRanges`
 * only when there are some).
 */
export function validateNetworkPolicy(value: unknown): NetworkPolicy {
  if (typeof value !== "object" || value === null) {
    throw new DataplaneError("bad-policy", "policy", "expected an object");
  }
  const v = value as Record<string, unknown>;
  const forwarding = checkBool(v.forwarding, "policy.forwarding");
  const masquerade = checkBool(v.masquerade, "policy.masquerade");
  const isolation = checkBool(v.isolation, "policy.isolation");
  const rawTransits = checkArray(v.transits ?? [], "policy.transits", 4096);
  const endpointRanges = validateEndpointRanges(v.endpointRanges ?? [], "policy.endpointRanges");
  const needsForwarding = (field: string) =>
    new DataplaneError("requires-forwarding", field, "requires forwarding to be on");
  if (!forwarding) {
    if (masquerade) throw needsForwarding("policy.masquerade");
    if (isolation) throw needsForwarding("policy.isolation");
    if (rawTransits.length > 0) throw needsForwarding("policy.transits");
  }
  const byIface = new Map<string, { mark: number; table: number }>();
  const markOwner = new Map<number, string>();
  const tableOwner = new Map<number, string>();
  const cidrs = new Set<string>();
  const transits = rawTransits.map((raw, i): TransitRoute => {
    const f = `policy.transits[${i}]`;
    if (typeof raw !== "object" || raw === null) {
      throw new DataplaneError("bad-transit", f, "expected an object");
    }
    const t = raw as Record<string, unknown>;
    const cidr = parseCidr(t.deviceCidr, `${f}.deviceCidr`);
    const deviceCidr = `${formatIp(cidr.address)}/${cidr.prefix}`;
    const innerInterface = checkInnerInterface(t.innerInterface, `${f}.innerInterface`);
    const mark = checkMark(t.mark, `${f}.mark`);
    const table = checkTable(t.table, `${f}.table`);
    if (cidrs.has(deviceCidr)) {
      throw new DataplaneError("duplicate", `${f}.deviceCidr`, `${deviceCidr} has two transits`);
    }
    cidrs.add(deviceCidr);
    const link = byIface.get(innerInterface);
    if (link && (link.mark !== mark || link.table !== table)) {
      throw new DataplaneError(
        "inconsistent-transit",
        f,
        `${innerInterface} already uses mark ${link.mark} and table ${link.table}`,
      );
    }
    if ((markOwner.get(mark) ?? innerInterface) !== innerInterface) {
      throw new DataplaneError(
        "inconsistent-transit",
        `${f}.mark`,
        `mark ${mark} is used by ${markOwner.get(mark)}`,
      );
    }
    if ((tableOwner.get(table) ?? innerInterface) !== innerInterface) {
      throw new DataplaneError(
        "inconsistent-transit",
        `${f}.table`,
        `table ${table} is used by ${tableOwner.get(table)}`,
      );
    }
    byIface.set(innerInterface, { mark, table });
    markOwner.set(mark, innerInterface);
    tableOwner.set(table, innerInterface);
    return { deviceCidr, innerInterface, mark, table };
  });
  const policy: NetworkPolicy = { forwarding, masquerade, isolation, transits };
  return endpointRanges.length > 0 ? { ...policy, endpointRanges } : policy;
}

/**
 * Validates endpoint ranges (§5.7) as the controller stores them and the
 * agent accepts them: each IP parsed (canonical text returned), ports
 * 1–65535 with portMin ≤ portMax, at most {@link MAX_RANGE_PORTS} wide,
 * ranges of several ports not below {@link RANGE_PORT_FLOOR}, no two
 * ranges on one IP sharing a port, at most `max` ({@link MAX_ENDPOINT_RANGES}:
 * a pool; an agent's confirmation, split around reserved ports, may hold
 * {@link MAX_CONFIRMED_RANGES}).
 * The listener and reserved ports inside a range are not errors: the
 * renderer leaves them out (an `IP:443` endpoint is the listener itself).
 * Returns canonical copies in the given order (the first is the one a
 * cascade entry dials).
 */
export function validateEndpointRanges(
  value: unknown,
  field: string,
  max: number = MAX_ENDPOINT_RANGES,
): PortRangeForward[] {
  const out: PortRangeForward[] = [];
  checkArray(value, field, max).forEach((raw, i) => {
    const f = `${field}[${i}]`;
    if (typeof raw !== "object" || raw === null) {
      throw new DataplaneError("bad-port-range", f, "expected {ip, portMin, portMax}");
    }
    const r = raw as Record<string, unknown>;
    const ip = formatIp(parseIp(r.ip, `${f}.ip`));
    const portMin = checkPort(r.portMin, `${f}.portMin`);
    const portMax = checkPort(r.portMax, `${f}.portMax`);
    if (portMin > portMax) {
      throw new DataplaneError(
        "bad-port-range",
        f,
        `portMin ${portMin} exceeds portMax ${portMax}`,
      );
    }
    const width = portMax - portMin + 1;
    if (width > MAX_RANGE_PORTS) {
      throw new DataplaneError(
        "range-too-wide",
        f,
        `${portMin}-${portMax} is ${width} ports, at most ${MAX_RANGE_PORTS}`,
      );
    }
    if (width > 1 && portMin < RANGE_PORT_FLOOR) {
      throw new DataplaneError(
        "range-too-low",
        f,
        `${portMin}-${portMax} reaches below ${RANGE_PORT_FLOOR} (well-known services); ` +
          `start the range at ${RANGE_PORT_FLOOR} or above, or give single ports`,
      );
    }
    const other = out.find((o) => o.ip === ip && o.portMin <= portMax && portMin <= o.portMax);
    if (other) {
      throw new DataplaneError(
        "overlapping-ranges",
        f,
        `${ip} ports ${portMin}-${portMax} overlap ${other.portMin}-${other.portMax}`,
      );
    }
    out.push({ ip, portMin, portMax });
  });
  return out;
}

interface RulePair {
  up: string[];
  down: string[];
}

const TABLES = { 4: "iptables", 6: "ip6tables" } as const;

/** An iptables rule appended (`-A`) or inserted first (`-I … 1`), and its `-D` twin. */
function iptablesRule(
  family: 4 | 6,
  table: string | null,
  chain: string,
  spec: string[],
  insertFirst = false,
): RulePair {
  const t = table ? ["-t", table] : [];
  const up = insertFirst ? ["-I", chain, "1"] : ["-A", chain];
  return {
    up: [TABLES[family], ...t, ...up, ...spec],
    down: [TABLES[family], ...t, "-D", chain, ...spec],
  };
}

/** Splits [min, max] into the runs that avoid every excluded port. */
function portRuns(min: number, max: number, excluded: Set<number>): [number, number][] {
  const runs: [number, number][] = [];
  const cuts = [...excluded].filter((p) => p >= min && p <= max).sort((a, b) => a - b);
  let start = min;
  for (const cut of cuts) {
    if (cut > start) runs.push([start, cut - 1]);
    start = cut + 1;
  }
  if (start <= max) runs.push([start, max]);
  return runs;
}

/**
 * The port runs an endpoint-diversity request forwards: each range split
 * around the listener and the reserved ports, in range order, one DNAT
 * rule each. This is exactly what the renderer DNATs, so it is what an
 * agent may confirm. Validates its input; does not apply the rule cap
 * ({@link MAX_DNAT_RULES}): the caller decides between refusing and
 * forwarding a prefix. Ranges may number up to the cap (a prefix of runs
 * passed back in renders the same runs again).
 */
export function endpointRuns(d: EndpointDiversity): PortRangeForward[] {
  if (typeof d !== "object" || d === null) {
    throw new DataplaneError("bad-endpoint-diversity", "endpointDiversity", "expected an object");
  }
  const listenPort = checkPort(d.listenPort, "endpointDiversity.listenPort");
  const excluded = new Set<number>([listenPort]);
  checkArray(d.reservedPorts ?? [], "endpointDiversity.reservedPorts").forEach((p, i) =>
    excluded.add(checkPort(p, `endpointDiversity.reservedPorts[${i}]`))
  );
  const runs: PortRangeForward[] = [];
  checkArray(d.ranges, "endpointDiversity.ranges", MAX_DNAT_RULES).forEach((raw, i) => {
    const f = `endpointDiversity.ranges[${i}]`;
    const r = raw as PortRangeForward;
    if (typeof r !== "object" || r === null) {
      throw new DataplaneError("bad-port-range", f, "expected an object");
    }
    const ip = formatIp(parseIp(r.ip, `${f}.ip`));
    const min = checkPort(r.portMin, `${f}.portMin`);
    const max = checkPort(r.portMax, `${f}.portMax`);
    if (min > max) {
      throw new DataplaneError("bad-port-range", f, `portMin ${min} exceeds portMax ${max}`);
    }
    for (const [a, b] of portRuns(min, max, excluded)) runs.push({ ip, portMin: a, portMax: b });
  });
  return runs;
}

/**
 * One DNAT rule per run. `-m addrtype --dst-type LOCAL`: a rule only ever
 * matches packets addressed to this host, so an address that is not the
 * node's own (a typo, or `1.1.1.1:53`) can never divert clients' forwarded
 * traffic to the listener, whatever the agent's own local-address check.
 */
function dnatRules(d: EndpointDiversity): RulePair[] {
  const runs = endpointRuns(d);
  if (runs.length > MAX_DNAT_RULES) {
    throw new DataplaneError(
      "too-many",
      "endpointDiversity",
      `would need ${runs.length} DNAT rules, at most ${MAX_DNAT_RULES}`,
    );
  }
  return runs.map((run) => {
    const addr = parseIp(run.ip, "endpointDiversity.ranges.ip");
    const target = addr.family === 6 ? `[${run.ip}]:${d.listenPort}` : `${run.ip}:${d.listenPort}`;
    const dport = run.portMin === run.portMax ? `${run.portMin}` : `${run.portMin}:${run.portMax}`;
    return iptablesRule(addr.family, "nat", "PREROUTING", [
      "-d",
      `${run.ip}/${addr.family === 4 ? 32 : 128}`,
      "-p",
      "udp",
      "--dport",
      dport,
      "-m",
      "addrtype",
      "--dst-type",
      "LOCAL",
      "-j",
      "DNAT",
      "--to-destination",
      target,
    ]);
  });
}

/**
 * Renders PreUp, PostUp and PostDown for a policy (§5.5 with the
 * departures listed in the module comment). No forwarding rules at all when
 * forwarding is off. PostUp order: isolation drops (inserted first), drops
 * to non-public destinations, the two FORWARD accepts, masquerade, DNAT,
 * then per transit its MARK rule and, once per inner link, `ip rule add` and
 * `ip route replace`.
 */
export function renderNetworkPolicy(input: PolicyInput): RenderedPolicy {
  if (typeof input !== "object" || input === null) {
    throw new DataplaneError("bad-policy", "input", "expected {policy, interfaces}");
  }
  const policy = validateNetworkPolicy(input.policy);
  const names = input.interfaces;
  if (typeof names !== "object" || names === null) {
    throw new DataplaneError("bad-policy", "interfaces", "expected {client, egress?}");
  }
  const iface = checkClientInterface(names.client, "interfaces.client");
  const unresolved: string[] = [];
  let egress = EGRESS_PLACEHOLDER;
  if (names.egress !== undefined) {
    egress = checkLinuxInterface(names.egress, "interfaces.egress");
    if (egress === iface) {
      throw new DataplaneError("bad-interface", "interfaces.egress", "equals the client interface");
    }
  } else if (policy.masquerade) {
    unresolved.push(EGRESS_PLACEHOLDER);
  }
  for (const [i, t] of policy.transits.entries()) {
    if (t.innerInterface === iface) {
      throw new DataplaneError(
        "bad-interface",
        `policy.transits[${i}].innerInterface`,
        "equals the client interface",
      );
    }
  }

  const preUp: string[][] = [];
  const pairs: RulePair[] = [];
  if (policy.forwarding) {
    preUp.push(
      ["sysctl", "-w", "net.ipv4.conf.all.forwarding=1"],
      ["sysctl", "-w", "net.ipv6.conf.all.forwarding=1"],
    );
    if (policy.transits.length > 0) {
      preUp.push(
        ["sysctl", "-w", "net.ipv4.conf.all.rp_filter=0"],
        ["sysctl", "-w", "net.ipv4.conf.default.rp_filter=0"],
      );
    }
    const families = [4, 6] as const;
    if (policy.isolation) {
      for (const fam of families) {
        pairs.push(
          iptablesRule(fam, null, "FORWARD", ["-i", iface, "-o", iface, "-j", "DROP"], true),
        );
      }
    }
    for (const dest of NON_PUBLIC_DESTINATIONS) {
      const fam = parseCidr(dest, "destination").address.family;
      pairs.push(
        iptablesRule(fam, null, "FORWARD", [
          "-i",
          iface,
          "!",
          "-o",
          iface,
          "-d",
          dest,
          "-j",
          "DROP",
        ]),
      );
    }
    for (const fam of families) {
      pairs.push(iptablesRule(fam, null, "FORWARD", ["-i", iface, "-j", "ACCEPT"]));
      pairs.push(iptablesRule(fam, null, "FORWARD", ["-o", iface, "-j", "ACCEPT"]));
    }
    if (policy.masquerade) {
      for (const fam of families) {
        pairs.push(iptablesRule(fam, "nat", "POSTROUTING", ["-o", egress, "-j", "MASQUERADE"]));
      }
    }
  }
  if (input.endpointDiversity !== undefined) pairs.push(...dnatRules(input.endpointDiversity));
  const routed = new Set<string>();
  for (const t of policy.transits) {
    const fam = parseCidr(t.deviceCidr, "deviceCidr").address.family;
    const mark = String(t.mark);
    const table = String(t.table);
    pairs.push(iptablesRule(fam, "mangle", "PREROUTING", [
      "-i",
      iface,
      "-s",
      t.deviceCidr,
      "-j",
      "MARK",
      "--set-mark",
      mark,
    ]));
    const key = `${fam}/${t.innerInterface}`;
    if (routed.has(key)) continue;
    routed.add(key);
    const ip = fam === 6 ? ["ip", "-6"] : ["ip"];
    const rule = ["fwmark", mark, "lookup", table];
    const route = ["default", "dev", t.innerInterface, "table", table];
    pairs.push({ up: [...ip, "rule", "add", ...rule], down: [...ip, "rule", "del", ...rule] });
    pairs.push({
      up: [...ip, "route", "replace", ...route],
      down: [...ip, "route", "del", ...route],
    });
  }

  const postUp = pairs.map((p) => p.up);
  const postDown = pairs.map((p) => p.down).reverse();
  const show = (list: string[][]) => list.map((argv) => argv.join(" "));
  return {
    preUp,
    postUp,
    postDown,
    display: { preUp: show(preUp), postUp: show(postUp), postDown: show(postDown) },
    unresolved,
  };
}
