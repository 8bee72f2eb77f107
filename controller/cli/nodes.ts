/**
 * `cox nodes add|list|show|remove|policy|endpoints`. Nodes are recorded by
 * SSH onboarding (`nodes add`); the other commands read and change what is
 * recorded.
 */
import type { CliIo } from "../../relay/host/cli_support.ts";
import type { ControllerConfig } from "../config.ts";
import { formatResealProgress } from "../onboarding/events.ts";
import { onboardNode } from "../onboarding/node.ts";
import { formatNodeEndpoint, type Node, type NodePolicy, Nodes } from "../service/nodes.ts";
import { Service } from "../service/service.ts";
import { withAccounts } from "./accounts.ts";
import { parseHostKeyLine } from "../ssh/host_key.ts";
import { formatTable, UsageError, yesNo } from "./format.ts";
import { type AddFlags, type CoxIo, runAdd } from "./onboarding_io.ts";
import { withService } from "./with_state.ts";

export interface NodesAddFlags extends AddFlags {
  name?: string;
  region?: string;
}

/**
 * Onboards a node over SSH, printing each step as it happens; a re-run of
 * the same command resumes a failed onboarding.
 */
export async function nodesAdd(
  state: string,
  targetText: string,
  flags: NodesAddFlags,
  actor: string,
  io: CoxIo,
): Promise<number> {
  const result = await runAdd(
    state,
    "nodes add",
    targetText,
    flags,
    [["name", flags.name], ["region", flags.region]],
    io,
    (st, req) => onboardNode(st, actor, { ...req, name: flags.name, region: flags.region }),
  );
  const n = result.node;
  io.out(
    `node ${n.name} onboarded (${n.sshUser}@${n.host}:${n.sshPort}): host key ${result.hostKey.fingerprint}, ` +
      `certificate serial ${result.serial}${
        result.certificateReused ? " (reused)" : ""
      }, status ${n.status}\n`,
  );
  return 0;
}

export async function nodesList(state: string, io: CliIo): Promise<number> {
  const nodes = await withService(state, (svc) => new Nodes(svc).list());
  if (nodes.length === 0) {
    io.out("no nodes yet\n");
    return 0;
  }
  io.out(formatTable(
    ["NAME", "HOST", "REGION", "STATUS", "FWD", "MASQ", "ISO", "REVISION", "VERSION", "ID"],
    nodes.map((n) => [
      n.name,
      n.host,
      n.region ?? "-",
      n.status,
      yesNo(n.forwarding),
      yesNo(n.masquerade),
      yesNo(n.isolation),
      `${n.appliedRevision}/${n.desiredRevision}`,
      String(n.version),
      n.id,
    ]),
  ));
  return 0;
}

function hostKeyText(line: string): string {
  try {
    const k = parseHostKeyLine(line);
    return `${k.fingerprint} (${k.type})`;
  } catch {
    return line.slice(0, 80);
  }
}

function describe(n: Node): string {
  const o = n.obfuscation;
  const lines: [string, string][] = [
    ["id", n.id],
    ["name", n.name],
    ["host", n.host],
    ["ssh", `${n.sshUser}@${n.host}:${n.sshPort}`],
    ["ssh host key", n.sshHostKey ? hostKeyText(n.sshHostKey) : "not pinned yet"],
    [
      "onboarding",
      n.onboarding === null
        ? "-"
        : `${n.onboarding}${n.onboardingStep ? ` (step ${n.onboardingStep})` : ""}${
          n.onboardingError ? `: ${n.onboardingError}` : ""
        }`,
    ],
    ["control port", String(n.controlPort)],
    ["region", n.region ?? "-"],
    ["via relay", n.viaRelay ?? "direct"],
    ["status", n.status],
    [
      "policy",
      `forwarding ${yesNo(n.forwarding)}, masquerade ${yesNo(n.masquerade)}, isolation ${
        yesNo(n.isolation)
      }`,
    ],
    [
      "endpoints",
      n.endpoints.length === 0 ? "-" : n.endpoints.map(formatNodeEndpoint).join(", "),
    ],
    [
      "obfuscation",
      `jc ${o.jc} jmin ${o.jmin} jmax ${o.jmax} s1 ${o.s1} s2 ${o.s2} s3 ${o.s3} s4 ${o.s4} h1 ${o.h1} h2 ${o.h2} h3 ${o.h3} h4 ${o.h4}`,
    ],
    ["certificate serial", n.certSerial ?? "none yet"],
    ["revision", `applied ${n.appliedRevision}, desired ${n.desiredRevision}`],
    ["created", n.createdAt.toISOString()],
    ["version", String(n.version)],
    ["updated", n.updatedAt.toISOString()],
  ];
  return lines.map(([k, v]) => `${(k + ":").padEnd(20)}${v}`).join("\n") + "\n";
}

export async function nodesShow(state: string, ref: string, io: CliIo): Promise<number> {
  io.out(describe(await withService(state, (svc) => new Nodes(svc).require(ref))));
  return 0;
}

export async function nodesRemove(
  state: string,
  ref: string,
  expectVersion: number | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  const node = await withService(state, (svc) => new Nodes(svc).remove(actor, ref, expectVersion));
  io.out(
    `removed node ${node.name} (${node.host})${
      node.certSerial ? `; its certificate ${node.certSerial} is revoked` : ""
    }\n`,
  );
  return 0;
}

export async function nodesPolicy(
  state: string,
  ref: string,
  change: Partial<NodePolicy>,
  expectVersion: number | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  if (Object.values(change).every((v) => v === undefined)) {
    throw new UsageError("give at least one of --forwarding, --masquerade, --isolation (on|off)");
  }
  const n = await withService(
    state,
    (svc) => new Nodes(svc).setPolicy(actor, ref, change, expectVersion),
  );
  io.out(
    `node ${n.name}: forwarding ${yesNo(n.forwarding)}, masquerade ${
      yesNo(n.masquerade)
    }, isolation ${
      yesNo(n.isolation)
    } (version ${n.version}, desired revision ${n.desiredRevision})\n`,
  );
  return 0;
}

/**
 * Replaces a node's endpoints (`--clear`: none). A change is stored here;
 * a running controller's reconcile loop (it follows the audit log) pushes
 * the ranges to the node in its network policy, and the node's agent DNATs
 * them onto its AmneziaWG listener. Every profile is resealed here
 * (progress on stderr, as `cox profiles reseal --all` does); a profile
 * lists a range once the node's agent confirmed it, and reconcile reseals
 * again when the confirmation changes.
 */
export async function nodesEndpoints(
  cfg: ControllerConfig,
  ref: string,
  endpoints: string[],
  clear: boolean,
  expectVersion: number | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  if (clear === (endpoints.length > 0)) {
    throw new UsageError(
      "give the endpoints (IP:PORT or IP:FIRST-LAST, IPv6 as [IP]:PORT) or --clear, not both",
    );
  }
  const { node, changed, resealed } = await withAccounts(cfg, io, async (accounts, st) => {
    const r = new Nodes(new Service(st.db)).setEndpoints(actor, ref, endpoints, expectVersion);
    if (!r.changed) return { ...r, resealed: 0 };
    const { total } = await accounts.resealProfiles({
      emit: (e) => e.status !== "finished" && io.err(formatResealProgress(e)),
      actor,
    });
    return { ...r, resealed: total };
  });
  const list = node.endpoints.length === 0
    ? "none (clients dial the host at 443)"
    : node.endpoints.map(formatNodeEndpoint).join(", ");
  io.out(
    `node ${node.name}: endpoints ${list} (version ${node.version}, desired revision ${node.desiredRevision}); ${
      changed
        ? `${resealed} device profiles resealed (ranges listed once the node confirms them)`
        : "unchanged"
    }\n`,
  );
  return 0;
}
