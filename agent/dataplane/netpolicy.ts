/**
 * Applies the network policy with the one renderer the controller's
 * preview uses (core/dataplane renderNetworkPolicy, CONTRACTS.md §5.5):
 * forwarding, masquerade, isolation, transits, plus the endpoint-diversity
 * DNAT rules (§5.7). Every rule is an argv pair (add, remove); what was
 * added is persisted with its removal so that exactly that is removed
 * later, at every change and at start (`netpolicy.json`).
 *
 * A change is applied as a difference: rules in both the old and the new
 * set stay (and are re-added if someone removed them), old-only rules are
 * removed, new-only rules added; no tunnel drops. A failure while adding
 * rolls the change back and answers INTERNAL. At start (no controller to
 * answer) it is best effort: what fails (e.g. a transit to an inner link
 * that is not up) is logged and retried later, and the rest is served.
 *
 * Endpoint ranges: those the controller pushed (NetworkConfig.endpoint_ranges,
 * kept in the policy and so persisted with it) replace the ones of the
 * agent's own flags (`--endpoint-ips`/`--endpoint-ports`); the flags apply
 * only while the controller sends none (an original controller, or a node
 * with no endpoints set). The two are never merged. Only ranges on the
 * host's own addresses are forwarded (read with `ip -j addr show` at each
 * apply; the rules also carry `addrtype LOCAL`), each split around the
 * listener and reserved ports, at most MAX_DNAT_RULES runs: those beyond
 * are left out with a warning rather than refusing the whole policy
 * (forwarding and isolation must not wait on a port range). What is
 * confirmed to the controller (`forwarded`) is exactly those runs.
 *
 * One addition to the renderer's set: with forwarding off the agent inserts
 * `FORWARD -i <if> -j DROP` (IPv4 and IPv6), so the node is a dead end even
 * when the host forwards for other reasons (the forwarding sysctls are never
 * reverted, and a FORWARD policy of ACCEPT is the Linux default).
 */
import {
  type EndpointDiversity,
  endpointRuns,
  formatIp,
  MAX_DNAT_RULES,
  type NetworkPolicy,
  parseIp,
  type PortRangeForward,
  renderNetworkPolicy,
  validateNetworkPolicy,
} from "../../core/dataplane/mod.ts";
import type { Logger } from "../../core/log.ts";
import { AgentError, GrpcCode } from "../errors.ts";
import { type CommandResult, runCommand } from "../exec.ts";
import type { StateStore } from "../store.ts";

export interface RulePair {
  up: string[];
  down: string[];
}

/** A rendered policy: commands, rule pairs, and the DNAT runs with their rules' keys. */
interface Rendered {
  preUp: string[][];
  pairs: RulePair[];
  runs: { range: PortRangeForward; key: string }[];
  listening: PortRangeForward[];
}

interface PolicyFile {
  policy: NetworkPolicy;
  /** Set when the controller pushed this policy (false: the default, all off). */
  pushed: boolean;
  applied: RulePair[];
}

export const OFF_POLICY: NetworkPolicy = Object.freeze({
  forwarding: false,
  masquerade: false,
  isolation: false,
  transits: [],
}) as NetworkPolicy;

export interface PolicyOptions {
  store: StateStore;
  log: Logger;
  clientInterface: string;
  /** Egress interface; autodetected from the default route when absent. */
  egress?: string;
  /**
   * Extra node IPs and a UDP port range DNATed onto the listener (the
   * agent's flags): the fallback while the controller pushes no ranges.
   */
  diversity?: { ips: string[]; portMin: number; portMax: number };
  /** The AmneziaWG listen port (DNAT target). */
  listenPort: number;
  /** Command runner (tests may count calls); defaults to runCommand. */
  run?: (argv: string[]) => Promise<CommandResult>;
  /** The host's addresses (canonical text); defaults to {@link localAddresses} through `run`. */
  localAddresses?: () => Promise<Iterable<string>>;
}

const FILE = "netpolicy.json";
const RETRY_MS = [2000, 5000, 10_000, 30_000];

const key = (argv: string[]) => argv.join("\0");

/** The default route's device (`ip -j route show default`), or null. */
export async function detectEgress(
  run: (argv: string[]) => Promise<CommandResult> = runCommand,
): Promise<string | null> {
  const r = await run(["ip", "-j", "route", "show", "default"]);
  if (r.code !== 0) return null;
  try {
    const rows = JSON.parse(r.stdout || "[]") as { dev?: string }[];
    return rows.find((x) => typeof x.dev === "string")?.dev ?? null;
  } catch {
    return null;
  }
}

/**
 * The host's own addresses (`ip -j addr show`), canonical text. A failure
 * reads as none: no endpoint is forwarded (or confirmed) rather than one
 * that might not be the node's.
 */
export async function localAddresses(
  run: (argv: string[]) => Promise<CommandResult> = runCommand,
): Promise<Set<string>> {
  const out = new Set<string>();
  const r = await run(["ip", "-j", "addr", "show"]);
  if (r.code !== 0) return out;
  let links: unknown;
  try {
    links = JSON.parse(r.stdout || "[]");
  } catch {
    return out;
  }
  if (!Array.isArray(links)) return out;
  for (const link of links) {
    const info = (link as { addr_info?: unknown })?.addr_info;
    if (!Array.isArray(info)) continue;
    for (const a of info) {
      try {
        out.add(formatIp(parseIp((a as { local?: unknown })?.local, "local")));
      } catch { /* not an address */ }
    }
  }
  return out;
}

/** The `-C` (check) form of an iptables add, or null for other commands. */
function checkForm(up: string[]): string[] | null {
  if (up[0] !== "iptables" && up[0] !== "ip6tables") return null;
  const i = up.findIndex((a) => a === "-A" || a === "-I");
  if (i < 0) return null;
  const chain = up[i + 1];
  const rest = up[i] === "-I" ? up.slice(i + 3) : up.slice(i + 2);
  return [...up.slice(0, i), "-C", chain, ...rest];
}

export class PolicyApplier {
  #policy: NetworkPolicy = OFF_POLICY;
  #pushed = false;
  #applied: RulePair[] = [];
  /** Pairs that failed in a best-effort apply, retried later. */
  #missing: RulePair[] = [];
  #reserved: number[] = [];
  /** The runs DNATed now, each with its rule's key (what SetNetworkConfig confirms). */
  #runs: { range: PortRangeForward; key: string }[] = [];
  /** Ranges' listener port on local addresses: reached with no rule, confirmed too. */
  #listening: PortRangeForward[] = [];
  /** Addresses of ranges left out at the last apply: not this host's. */
  #foreign: string[] = [];
  #retry: ReturnType<typeof setTimeout> | null = null;
  #retries = 0;
  #closed = false;
  #tail: Promise<unknown> = Promise.resolve();
  readonly #run: (argv: string[]) => Promise<CommandResult>;

  constructor(readonly opts: PolicyOptions) {
    this.#run = opts.run ?? ((argv) => runCommand(argv));
  }

  get policy(): NetworkPolicy {
    return this.#policy;
  }

  /** Whether the endpoint ranges in force came from the controller (else the flags, or none). */
  get rangesPushed(): boolean {
    return (this.#policy.endpointRanges?.length ?? 0) > 0;
  }

  /** The endpoint ranges DNATed onto the listener: the pushed ones, else the flags'. */
  get endpointRanges(): readonly PortRangeForward[] {
    return this.#rangesOf(this.#policy);
  }

  #rangesOf(policy: NetworkPolicy): readonly PortRangeForward[] {
    if (policy.endpointRanges && policy.endpointRanges.length > 0) return policy.endpointRanges;
    const d = this.opts.diversity;
    return d ? d.ips.map((ip) => ({ ip, portMin: d.portMin, portMax: d.portMax })) : [];
  }

  /**
   * What reaches the listener: the listener port itself on each local
   * address a range covers it on, then the port runs forwarded (ranges on
   * local addresses, split around the listener and reserved ports, within
   * the rule cap) whose rule is in place. What the agent confirms.
   */
  get forwarded(): PortRangeForward[] {
    const inForce = new Set(this.#applied.map((p) => key(p.up)));
    return [
      ...this.#listening,
      ...this.#runs.filter((r) => inForce.has(r.key)).map((r) => r.range),
    ];
  }

  /** Addresses whose ranges were left out at the last apply (not this host's), for status. */
  get foreignAddresses(): readonly string[] {
    return this.#foreign;
  }

  /** Rules in force (add forms), for status and tests. */
  get applied(): readonly RulePair[] {
    return this.#applied;
  }

  /** Rules that could not be added and are being retried. */
  get missing(): readonly RulePair[] {
    return this.#missing;
  }

  /**
   * Start-up: removes whatever the persisted file says was added (failures
   * tolerated: after a reboot nothing is there), then applies the persisted
   * policy best effort.
   */
  restore(reservedPorts: number[]): Promise<void> {
    return this.#serial(async () => {
      this.#reserved = reservedPorts;
      const file = await this.opts.store.read<PolicyFile>(FILE);
      if (file !== null) {
        for (const p of [...(file.applied ?? [])].reverse()) await this.#tryRun(p.down);
        try {
          this.#policy = validateNetworkPolicy(file.policy);
          this.#pushed = file.pushed === true;
        } catch (e) {
          this.opts.log.error("persisted network policy is invalid; starting with forwarding off", {
            code: "corrupt-state",
            error: e,
          });
        }
      }
      this.#applied = [];
      await this.#applyBestEffort();
    });
  }

  /** SetNetworkConfig: validate, apply the difference (rolled back on failure), persist. */
  set(policy: unknown): Promise<void> {
    return this.#serial(async () => {
      const checked = validateNetworkPolicy(policy);
      const pairs = await this.#render(checked);
      await this.#applyStrict(pairs);
      this.#policy = checked;
      this.#pushed = true;
      await this.#persist();
    });
  }

  /**
   * Re-applies the current policy best effort (after an inner link or the
   * client interface came and went, or the reserved ports changed).
   */
  reapply(reservedPorts?: number[]): Promise<void> {
    return this.#serial(async () => {
      if (reservedPorts) this.#reserved = reservedPorts;
      await this.#applyBestEffort();
    });
  }

  /** Removes every rule the agent added (teardown of the node). */
  teardown(): Promise<void> {
    return this.#serial(async () => {
      for (const p of [...this.#applied].reverse()) await this.#tryRun(p.down);
      this.#applied = [];
      this.#missing = [];
      this.#runs = [];
      this.#listening = [];
      await this.#persist();
    });
  }

  close(): void {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
  }

  async #render(policy: NetworkPolicy): Promise<Rendered> {
    let egress = this.opts.egress;
    if (egress === undefined && policy.masquerade) {
      egress = await detectEgress(this.#run) ?? undefined;
      if (egress === undefined) {
        throw new AgentError(
          "no-egress",
          "masquerade needs the egress interface, and this node has no default route; " +
            "add one or set --egress-interface",
          GrpcCode.FAILED_PRECONDITION,
        );
      }
    }
    const { runs, listening } = await this.#forwardable(this.#rangesOf(policy));
    const diversity: EndpointDiversity | undefined = runs.length > 0
      ? { listenPort: this.opts.listenPort, reservedPorts: this.#reserved, ranges: runs }
      : undefined;
    const r = renderNetworkPolicy({
      policy,
      interfaces: { client: this.opts.clientInterface, egress },
      endpointDiversity: diversity,
    });
    if (r.unresolved.length > 0) {
      throw new AgentError("unresolved-policy", `unresolved tokens ${r.unresolved.join(", ")}`);
    }
    const n = r.postUp.length;
    const pairs = r.postUp.map((up, i) => ({ up, down: r.postDown[n - 1 - i] }));
    if (!policy.forwarding) {
      const i = this.opts.clientInterface;
      for (const prog of ["iptables", "ip6tables"]) {
        pairs.unshift({
          up: [prog, "-I", "FORWARD", "1", "-i", i, "-j", "DROP"],
          down: [prog, "-D", "FORWARD", "-i", i, "-j", "DROP"],
        });
      }
    }
    // The DNAT rules come in run order (one per run: the runs avoid every excluded port).
    const dnat = pairs.filter((p) => p.up.includes("DNAT"));
    return {
      preUp: r.preUp,
      pairs,
      runs: runs.map((range, i) => ({ range, key: key(dnat[i].up) })),
      listening,
    };
  }

  /**
   * The runs to DNAT: ranges on the host's own addresses (others logged and
   * left out), split around the listener and reserved ports, the first
   * MAX_DNAT_RULES of them (the rest logged and left out).
   */
  async #forwardable(
    ranges: readonly PortRangeForward[],
  ): Promise<{ runs: PortRangeForward[]; listening: PortRangeForward[] }> {
    if (ranges.length === 0) {
      this.#foreign = [];
      return { runs: [], listening: [] };
    }
    const local = new Set(
      await (this.opts.localAddresses ?? (() => localAddresses(this.#run)))(),
    );
    const foreign = ranges.filter((r) => !local.has(r.ip));
    this.#foreign = [...new Set(foreign.map((r) => r.ip))];
    if (foreign.length > 0) {
      this.opts.log.warn("endpoint ranges on addresses this host does not have are not forwarded", {
        code: "endpoint-not-local",
        ips: this.#foreign,
      });
    }
    const mine = ranges.filter((r) => local.has(r.ip));
    const port = this.opts.listenPort;
    const listening = [
      ...new Set(mine.filter((r) => r.portMin <= port && port <= r.portMax).map((r) => r.ip)),
    ].map((ip) => ({ ip, portMin: port, portMax: port }));
    const runs = endpointRuns({
      listenPort: port,
      reservedPorts: this.#reserved,
      ranges: mine,
    });
    if (runs.length > MAX_DNAT_RULES) {
      const cut = runs[MAX_DNAT_RULES];
      this.opts.log.warn(
        "endpoint ranges need more DNAT rules than allowed; the rest not forwarded",
        {
          code: "endpoint-rules-capped",
          runs: runs.length,
          max: MAX_DNAT_RULES,
          from: `${cut.ip}:${cut.portMin}`,
        },
      );
    }
    return { runs: runs.slice(0, MAX_DNAT_RULES), listening };
  }

  async #applyStrict(rendered: Rendered): Promise<void> {
    const next = rendered.pairs;
    const nextKeys = new Set(next.map((p) => key(p.up)));
    const oldKeys = new Set(this.#applied.map((p) => key(p.up)));
    for (const argv of rendered.preUp) await this.#must(argv);
    const removed = this.#applied.filter((p) => !nextKeys.has(key(p.up)));
    // A crash from here on must still know every rule that may be in place.
    await this.#persist([...this.#applied, ...next.filter((p) => !oldKeys.has(key(p.up)))]);
    for (const p of [...removed].reverse()) await this.#tryRun(p.down);
    const added: RulePair[] = [];
    try {
      for (const p of next) {
        if (oldKeys.has(key(p.up))) {
          await this.#ensure(p);
          continue;
        }
        await this.#must(p.up);
        added.push(p);
      }
    } catch (e) {
      for (const p of [...added].reverse()) await this.#tryRun(p.down);
      for (const p of removed) await this.#tryRun(p.up);
      throw new AgentError(
        "policy-failed",
        `network policy not applied, previous rules restored: ${(e as Error).message}`,
        GrpcCode.INTERNAL,
        { cause: e },
      );
    }
    this.#applied = next;
    this.#missing = [];
    this.#runs = rendered.runs;
    this.#listening = rendered.listening;
  }

  async #applyBestEffort(): Promise<void> {
    let rendered: Rendered;
    try {
      rendered = await this.#render(this.#policy);
    } catch (e) {
      this.opts.log.error("network policy cannot be rendered; retrying", {
        code: (e as AgentError).code ?? "policy-failed",
        error: e,
      });
      this.#scheduleRetry();
      return;
    }
    for (const argv of rendered.preUp) await this.#tryRun(argv);
    const nextKeys = new Set(rendered.pairs.map((p) => key(p.up)));
    const oldKeys = new Set(this.#applied.map((p) => key(p.up)));
    const unchanged = this.#applied.length === rendered.pairs.length &&
      rendered.pairs.every((p, i) => key(p.up) === key(this.#applied[i].up));
    if (!unchanged) {
      await this.#persist([
        ...this.#applied,
        ...rendered.pairs.filter((p) => !oldKeys.has(key(p.up))),
      ]);
    }
    for (const p of [...this.#applied].reverse()) {
      if (!nextKeys.has(key(p.up))) await this.#tryRun(p.down);
    }
    const applied: RulePair[] = [];
    const missing: RulePair[] = [];
    for (const p of rendered.pairs) {
      const ok = oldKeys.has(key(p.up))
        ? await this.#ensure(p).then(() => true, () => false)
        : await this.#tryRun(p.up);
      (ok ? applied : missing).push(p);
    }
    const same = applied.length === this.#applied.length &&
      applied.every((p, i) => key(p.up) === key(this.#applied[i].up));
    this.#applied = applied;
    this.#missing = missing;
    this.#runs = rendered.runs;
    this.#listening = rendered.listening;
    if (!same) await this.#persist();
    if (missing.length > 0) {
      this.opts.log.warn("some network rules could not be added yet; retrying", {
        code: "policy-partial",
        missing: missing.map((p) => p.up.join(" ")),
      });
      this.#scheduleRetry();
    } else {
      this.#retries = 0;
    }
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retry) return;
    const ms = RETRY_MS[Math.min(this.#retries, RETRY_MS.length - 1)];
    this.#retries++;
    this.#retry = setTimeout(() => {
      this.#retry = null;
      if (this.#closed) return;
      this.#serial(() => this.#applyBestEffort()).catch(() => {});
    }, ms);
  }

  /** Re-adds a kept rule that someone removed. */
  async #ensure(p: RulePair): Promise<void> {
    const check = checkForm(p.up);
    if (check !== null) {
      if ((await this.#run(check)).code === 0) return;
      await this.#must(p.up);
      return;
    }
    if (p.up[1] === "rule" || (p.up[1] === "-6" && p.up[2] === "rule")) {
      const list = p.up.map((a) => a === "add" ? "list" : a);
      const r = await this.#run(list);
      if (r.code === 0 && r.stdout.trim() !== "") return;
    }
    await this.#must(p.up);
  }

  async #must(argv: string[]): Promise<void> {
    const r = await this.#run(argv);
    if (r.code !== 0) {
      throw new AgentError(
        "command-failed",
        `\`${argv.join(" ")}\` exited ${r.code}: ${r.stderr.trim().slice(0, 300)}`,
      );
    }
  }

  async #tryRun(argv: string[]): Promise<boolean> {
    try {
      return (await this.#run(argv)).code === 0;
    } catch {
      return false;
    }
  }

  async #persist(applied: RulePair[] = this.#applied): Promise<void> {
    const file: PolicyFile = { policy: this.#policy, pushed: this.#pushed, applied };
    await this.opts.store.write(FILE, file);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn);
    this.#tail = next.catch(() => {});
    return next;
  }
}
