/**
 * Nodes (table `nodes`): what the controller wants each node to be. SSH
 * onboarding (`nodes add`) fills in the host key pin and the certificate
 * serial later; the fleet driver moves `status` and `applied_revision`.
 *
 * Every change a node must apply (its network policy, its endpoints)
 * raises `desired_revision`; reconcile pushes while applied < desired.
 * The three policy toggles follow DESIGN.md §5: masquerade and isolation
 * require forwarding. Endpoints are the endpoint-diversity pool (DESIGN.md
 * §5, CONTRACTS.md §4.6, §5.7): public IPs and UDP port ranges, listed in
 * every profile as far as the node confirmed them (none confirmed, or
 * empty: the host:443); reconcile pushes them to the node in
 * its network policy (NetworkConfig.endpoint_ranges) and the PharosVPN
 * agent DNATs them onto its AmneziaWG listener (an original node ignores
 * them and serves UDP 443 only); a cascade's entry node dials the first one.
 */
import { type AwgObfuscation, generateObfuscation } from "../../core/dataplane/obfuscation.ts";
import {
  MAX_RANGE_PORTS,
  type PortRangeForward,
  RANGE_PORT_FLOOR,
  validateEndpointRanges,
} from "../../core/dataplane/netpolicy.ts";
import { DataplaneError } from "../../core/dataplane/errors.ts";
import { NetError } from "../../core/net/errors.ts";
import { formatIp, joinHostPort, parseEndpoint } from "../../core/net/address.ts";
import { type Db, statement } from "../db/sqlite.ts";
import { recordRevocation } from "../revocation.ts";
import { ServiceError } from "./errors.ts";
import { OnboardingRecord } from "./onboarding_record.ts";
import type { Actor, Service } from "./service.ts";
import { hostField } from "./validate.ts";

export type NodeStatus = "pending" | "active" | "unreachable" | "disabled";
/** Where SSH onboarding stands; null when the node was never onboarded over SSH. */
export type OnboardingState = "onboarding" | "failed" | "done";

export interface NodePolicy {
  forwarding: boolean;
  masquerade: boolean;
  isolation: boolean;
}

export interface Node extends NodePolicy {
  id: string;
  name: string;
  host: string;
  sshPort: number;
  sshUser: string;
  sshHostKey: string | null;
  controlPort: number;
  region: string | null;
  viaRelay: string | null;
  status: NodeStatus;
  endpoints: PortRangeForward[];
  obfuscation: AwgObfuscation;
  certSerial: string | null;
  /** The node certificate issued at onboarding (leaf PEM). */
  certPem: string | null;
  desiredRevision: number;
  appliedRevision: number;
  onboarding: OnboardingState | null;
  /** The step that failed (or the last one reached). */
  onboardingStep: string | null;
  onboardingError: string | null;
  /** When onboarding first finished; null if it never did. */
  onboardedAt: Date | null;
  createdAt: Date;
  version: number;
  updatedAt: Date;
}

interface Row {
  id: string;
  name: string;
  host: string;
  ssh_port: number;
  ssh_user: string;
  ssh_host_key: string | null;
  control_port: number;
  region: string | null;
  via_relay: string | null;
  status: NodeStatus;
  forwarding: number;
  masquerade: number;
  isolation: number;
  endpoints: string;
  obfuscation: string;
  cert_serial: string | null;
  cert_pem: string | null;
  desired_revision: number;
  applied_revision: number;
  onboarding: OnboardingState | null;
  onboarding_step: string | null;
  onboarding_error: string | null;
  onboarded_at: string | null;
  created_at: string;
  version: number;
  updated_at: string;
}

function fromRow(r: Row): Node {
  return {
    id: r.id,
    name: r.name,
    host: r.host,
    sshPort: r.ssh_port,
    sshUser: r.ssh_user,
    sshHostKey: r.ssh_host_key,
    controlPort: r.control_port,
    region: r.region,
    viaRelay: r.via_relay,
    status: r.status,
    forwarding: r.forwarding === 1,
    masquerade: r.masquerade === 1,
    isolation: r.isolation === 1,
    endpoints: JSON.parse(r.endpoints),
    obfuscation: JSON.parse(r.obfuscation),
    certSerial: r.cert_serial,
    certPem: r.cert_pem ?? null,
    desiredRevision: r.desired_revision,
    appliedRevision: r.applied_revision,
    onboarding: r.onboarding ?? null,
    onboardingStep: r.onboarding_step ?? null,
    onboardingError: r.onboarding_error ?? null,
    onboardedAt: r.onboarded_at ? new Date(r.onboarded_at) : null,
    createdAt: new Date(r.created_at),
    version: r.version,
    updatedAt: new Date(r.updated_at),
  };
}

const NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Names are looked up like ids, so none may look like one. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SSH_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const REGION = /^[a-z0-9][a-z0-9-]{0,31}$/;

export interface NewNode {
  name: string;
  host: string;
  sshPort?: number;
  sshUser?: string;
  region?: string;
  viaRelay?: string;
}

/** A node to onboard over SSH; without a name, one is made from the host. */
export interface OnboardNode {
  name?: string;
  host: string;
  sshPort: number;
  sshUser: string;
  region?: string;
}

/** A node name made from a host: `203.0.113.7` → `203-0-113-7`, `a.example.net` → `a-example-net`. */
export function nameFromHost(host: string): string {
  const n = host.toLowerCase().replace(/[^a-z0-9]+/g, "-").slice(0, 63).replace(/^-+|-+$/g, "");
  return n === "" ? "node" : n;
}

/** At most this many endpoints per node (each is a DNAT rule pair on the node). */
export const MAX_ENDPOINTS = 8;
/** Widest port range of one endpoint, and the port ranges start from (the agent's limits). */
export { MAX_RANGE_PORTS, RANGE_PORT_FLOOR };

/**
 * Parses one endpoint as an operator writes it: `IP:PORT` or
 * `IP:FIRST-LAST` (a UDP port range), IPv6 in brackets (`[2001:db8::1]:443`).
 * An IP, not a host name: the node forwards the address itself.
 */
export function parseNodeEndpoint(text: string): PortRangeForward {
  check(
    text.length <= 64,
    `endpoint ${JSON.stringify(text.slice(0, 64))}…: too long for IP:FIRST-LAST`,
  );
  const range = /^(.+):(\d{1,5})-(\d{1,5})$/.exec(text);
  try {
    const first = parseEndpoint(range ? `${range[1]}:${range[2]}` : text);
    const last = range ? parseEndpoint(`${range[1]}:${range[3]}`).port : first.port;
    if (first.host.kind !== "ip") throw new Error("unreachable: parseEndpoint allows IPs only");
    if (first.port > last) {
      throw new ServiceError(
        "invalid",
        `endpoint ${JSON.stringify(text)}: the range runs backwards`,
      );
    }
    return { ip: formatIp(first.host.address), portMin: first.port, portMax: last };
  } catch (e) {
    if (!(e instanceof NetError)) throw e;
    throw new ServiceError(
      "invalid",
      `endpoint ${e.message}; write IP:PORT or IP:FIRST-LAST (ports 1-65535, IPv6 as [IP]:PORT)`,
    );
  }
}

/** The agent-side refusal of an endpoint list, naming the endpoint as the operator wrote it. */
function endpointProblem(e: DataplaneError, texts: string[]): string {
  const i = Number(/^endpoints\[(\d+)\]/.exec(e.field)?.[1] ?? -1);
  if (i < 0) return e.message;
  const hint = e.code === "overlapping-ranges"
    ? "; give each port of an IP once"
    : e.code === "range-too-wide"
    ? " (the preset 2000-60000 fits)"
    : "";
  return `endpoint ${texts[i]}: ${e.message.replace(/^endpoints\[\d+\][.\w]*: /, "")}${hint}`;
}

/** An endpoint as operators write it (the form parseNodeEndpoint reads). */
export function formatNodeEndpoint(e: PortRangeForward): string {
  const first = joinHostPort(e.ip, e.portMin);
  return e.portMax === e.portMin ? first : `${first}-${e.portMax}`;
}

/** The row a mutation started from; gone (removed meanwhile) is `not-found`. */
function current(row: unknown, ref: string): Node {
  if (row === undefined) {
    throw new ServiceError("not-found", `node "${ref.slice(0, 80)}" was removed meanwhile`);
  }
  return fromRow(row as Row);
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new ServiceError("invalid", what);
}

export class Nodes {
  private readonly record: OnboardingRecord<Node>;

  constructor(private readonly service: Service) {
    this.record = new OnboardingRecord(service, "node", current, (n) => `node ${n.name}`);
  }

  private get db(): Db {
    return this.service.db;
  }

  list(): Node[] {
    return (statement(this.db, "SELECT * FROM nodes ORDER BY name").all() as unknown as Row[])
      .map(fromRow);
  }

  /** By id or name. */
  find(ref: string): Node | undefined {
    const row = statement(this.db, "SELECT * FROM nodes WHERE id = ? OR name = ?").get(ref, ref) as
      | Row
      | undefined;
    return row ? fromRow(row) : undefined;
  }

  /** The (oldest) node at this SSH host and port. */
  byAddress(host: string, sshPort: number): Node | undefined {
    const row = statement(
      this.db,
      "SELECT * FROM nodes WHERE host = ? AND ssh_port = ? ORDER BY created_at LIMIT 1",
    ).get(host, sshPort) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  /** Like find, but a missing node is a `not-found` error naming the reference. */
  require(ref: string): Node {
    const node = this.find(ref);
    if (!node) {
      throw new ServiceError(
        "not-found",
        `no node "${ref.slice(0, 80)}"; "cox nodes list" shows them`,
      );
    }
    return node;
  }

  /**
   * Records a node to onboard (status pending, policy all on), with an
   * obfuscation set unlike every other node's.
   */
  create(actor: Actor, input: NewNode): Node {
    check(
      NAME.test(input.name) && !UUID.test(input.name),
      `node name ${
        JSON.stringify(input.name.slice(0, 80))
      }: use a-z, 0-9 and inner "-", at most 63, not shaped like an id`,
    );
    const host = hostField(input.host, "node host");
    const sshPort = input.sshPort ?? 22;
    check(
      Number.isInteger(sshPort) && sshPort >= 1 && sshPort <= 65535,
      `SSH port ${sshPort}: use 1-65535`,
    );
    const sshUser = input.sshUser ?? "root";
    check(
      SSH_USER.test(sshUser),
      `SSH user ${JSON.stringify(sshUser.slice(0, 40))} is not a user name`,
    );
    check(
      input.region === undefined || REGION.test(input.region),
      `region ${JSON.stringify(input.region?.slice(0, 40))}: use a code like fra1 or eu-central-1`,
    );
    const id = crypto.randomUUID();
    this.service.mutate(
      { actor, action: "node.create", target: { type: "node", id }, expectVersion: 0 },
      (tx) => {
        if (statement(tx.db, "SELECT 1 FROM nodes WHERE name = ?").get(input.name)) {
          throw new ServiceError("exists", `a node named ${input.name} exists already`);
        }
        if (
          input.viaRelay !== undefined &&
          !statement(tx.db, "SELECT 1 FROM relays WHERE id = ?").get(input.viaRelay)
        ) {
          throw new ServiceError(
            "not-found",
            `no relay ${input.viaRelay}; "cox relays list" shows them`,
          );
        }
        const others = (statement(tx.db, "SELECT obfuscation FROM nodes").all() as unknown as {
          obfuscation: string;
        }[]).map((r) => JSON.parse(r.obfuscation) as AwgObfuscation);
        tx.insert({
          name: input.name,
          host,
          ssh_port: sshPort,
          ssh_user: sshUser,
          region: input.region ?? null,
          via_relay: input.viaRelay ?? null,
          obfuscation: JSON.stringify(generateObfuscation({ avoid: others })),
          created_at: tx.now,
        });
      },
    );
    return this.require(id);
  }

  /**
   * Changes the network policy toggles given (others keep their value);
   * masquerade and isolation need forwarding. Raises the desired revision.
   */
  setPolicy(
    actor: Actor,
    ref: string,
    change: Partial<NodePolicy>,
    expectVersion?: number,
  ): Node {
    const node = this.require(ref);
    this.service.mutate(
      { actor, action: "node.policy", target: { type: "node", id: node.id }, expectVersion },
      (tx) => {
        const cur = current(tx.current, ref);
        const next: NodePolicy = {
          forwarding: change.forwarding ?? cur.forwarding,
          masquerade: change.masquerade ?? cur.masquerade,
          isolation: change.isolation ?? cur.isolation,
        };
        if (!next.forwarding && (next.masquerade || next.isolation)) {
          throw new ServiceError(
            "invalid",
            `node ${cur.name}: ${
              next.masquerade ? "masquerade" : "isolation"
            } requires forwarding; add --forwarding on, or turn ${
              next.masquerade && next.isolation
                ? "masquerade and isolation"
                : next.masquerade
                ? "masquerade"
                : "isolation"
            } off too`,
          );
        }
        if (
          next.forwarding === cur.forwarding && next.masquerade === cur.masquerade &&
          next.isolation === cur.isolation
        ) return;
        tx.update({
          forwarding: Number(next.forwarding),
          masquerade: Number(next.masquerade),
          isolation: Number(next.isolation),
          desired_revision: cur.desiredRevision + 1,
        });
      },
    );
    return this.require(node.id);
  }

  /**
   * Replaces the node's endpoints (empty: none, clients dial the host at
   * 443), given as parseNodeEndpoint reads them and stored canonically.
   * Refused, as the agent would refuse them: more than
   * {@link MAX_ENDPOINTS}, the same one twice, two ranges sharing a port
   * on one IP, a range wider than {@link MAX_RANGE_PORTS} ports or one of
   * several ports reaching below {@link RANGE_PORT_FLOOR}. A change raises
   * the desired revision; reconcile (following the audit log) pushes the
   * ranges to the node at once in its network policy, and the agent DNATs
   * them onto its listener. The same list again writes nothing. Profiles
   * are not resealed here (callers with the accounts service do it).
   * Returns the node and whether it changed.
   */
  setEndpoints(
    actor: Actor,
    ref: string,
    endpoints: readonly string[],
    expectVersion?: number,
  ): { node: Node; changed: boolean } {
    check(
      endpoints.length <= MAX_ENDPOINTS,
      `${endpoints.length} endpoints: a node takes at most ${MAX_ENDPOINTS}`,
    );
    const next = endpoints.map(parseNodeEndpoint);
    const texts = next.map(formatNodeEndpoint);
    const twice = texts.find((t, i) => texts.indexOf(t) !== i);
    check(twice === undefined, `endpoint ${twice} is given twice`);
    try {
      validateEndpointRanges(next, "endpoints");
    } catch (e) {
      if (!(e instanceof DataplaneError)) throw e;
      throw new ServiceError("invalid", endpointProblem(e, texts));
    }
    const node = this.require(ref);
    const changed = this.service.mutate(
      { actor, action: "node.endpoints", target: { type: "node", id: node.id }, expectVersion },
      (tx) => {
        const cur = current(tx.current, ref);
        if (JSON.stringify(cur.endpoints) === JSON.stringify(next)) return false;
        tx.update({
          endpoints: JSON.stringify(next),
          desired_revision: cur.desiredRevision + 1,
        });
        return true;
      },
    );
    return { node: this.require(node.id), changed };
  }

  /**
   * Starts (or resumes) SSH onboarding. By name when given, else by host and
   * SSH port: an existing row is resumed (state `onboarding`); a row whose
   * onboarding never finished may be pointed at another host or user (its
   * host-key pin is then dropped); a finished one keeps its address (remove
   * it first). No row: a new one (status pending) is created.
   */
  beginOnboarding(actor: Actor, input: OnboardNode): Node {
    const host = hostField(input.host, "node host");
    check(
      Number.isInteger(input.sshPort) && input.sshPort >= 1 && input.sshPort <= 65535,
      `SSH port ${input.sshPort}: use 1-65535`,
    );
    check(
      SSH_USER.test(input.sshUser),
      `SSH user ${JSON.stringify(input.sshUser.slice(0, 40))} is not a user name`,
    );
    const node = input.name !== undefined
      ? this.find(input.name)
      : this.byAddress(host, input.sshPort);
    if (!node) {
      return this.service.transaction(() => {
        const created = this.create(actor, {
          name: input.name ?? nameFromHost(host),
          host,
          sshPort: input.sshPort,
          sshUser: input.sshUser,
          region: input.region,
        });
        this.service.mutate(
          {
            actor,
            action: "node.onboard",
            target: { type: "node", id: created.id },
            expectVersion: created.version,
          },
          (tx) => tx.update({ onboarding: "onboarding" }),
        );
        return this.require(created.id);
      });
    }
    const moved = node.host !== host || node.sshPort !== input.sshPort;
    if ((moved || node.sshUser !== input.sshUser) && node.onboarding === "done") {
      throw new ServiceError(
        "exists",
        `node ${node.name} was onboarded as ${node.sshUser}@${node.host}:${node.sshPort}; ` +
          `to move it, "cox nodes remove ${node.name}" first, or choose another --name`,
      );
    }
    this.service.mutate(
      {
        actor,
        action: "node.onboard",
        target: { type: "node", id: node.id },
        expectVersion: node.version,
      },
      (tx) => {
        const cur = current(tx.current, node.id);
        const changes: Record<string, string | number | null> = {};
        if (cur.onboarding !== "onboarding") changes.onboarding = "onboarding";
        if (cur.host !== host) changes.host = host;
        if (cur.sshPort !== input.sshPort) changes.ssh_port = input.sshPort;
        if (cur.sshUser !== input.sshUser) changes.ssh_user = input.sshUser;
        if (moved && cur.sshHostKey !== null) changes.ssh_host_key = null;
        if (Object.keys(changes).length > 0) tx.update(changes);
      },
    );
    return this.require(node.id);
  }

  /** Records the SSH host key (pinned line) seen and accepted at onboarding. */
  pinHostKey(actor: Actor, id: string, line: string): Node {
    this.record.pinHostKey(actor, id, line);
    return this.require(id);
  }

  /**
   * Records the certificate issued at onboarding; a different earlier
   * certificate of the node is revoked in the same transaction.
   */
  certified(actor: Actor, id: string, serial: string, certPem: string, notAfter?: Date): Node {
    this.record.certify(actor, id, serial, { cert_pem: certPem }, notAfter);
    return this.require(id);
  }

  /** Onboarding stopped at `step` with `error` (a re-run resumes). */
  onboardingFailed(actor: Actor, id: string, step: string, error: string): Node {
    this.record.failed(actor, id, step, error);
    return this.require(id);
  }

  /** Onboarding finished: the agent answers; the node becomes active. */
  onboarded(actor: Actor, id: string, lastStep: string): Node {
    this.record.onboarded(actor, id, lastStep, (cur) => ({
      status: cur.status === "disabled" ? "disabled" : "active",
    }));
    return this.require(id);
  }

  /** Deletes a node; its certificate (if it has one) is revoked in the same transaction. */
  remove(actor: Actor, ref: string, expectVersion?: number): Node {
    const target = { type: "node", id: this.require(ref).id } as const;
    const paths = statement(
      this.db,
      "SELECT COUNT(*) AS n FROM paths WHERE entry_node_id = ? OR exit_node_id = ?",
    ).get(target.id, target.id) as { n: number };
    if (paths.n > 0) {
      throw new ServiceError(
        "exists",
        `node ${ref} is in ${paths.n} cascade path(s); remove them first ("cox paths list")`,
      );
    }
    return this.service.transaction(() => {
      const node = this.service.mutate(
        { actor, action: "node.remove", target, expectVersion },
        (tx) => {
          tx.remove();
          return current(tx.current, ref);
        },
      );
      if (node.certSerial !== null) {
        recordRevocation(this.service, actor, node.certSerial, "node", {
          subject: `node ${node.name}`,
          reason: "node removed",
        });
      }
      return node;
    });
  }
}
