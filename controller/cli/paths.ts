/**
 * `cox paths list|add|exit|remove`: the cascade paths (entry node → exit
 * node). A running controller's reconciler picks each change up from the
 * audit log and rebuilds the inner links on the nodes.
 */
import type { CliIo } from "../../relay/host/cli_support.ts";
import { Nodes } from "../service/nodes.ts";
import { type Path, Paths } from "../service/paths.ts";
import type { Service } from "../service/service.ts";
import { formatTable } from "./format.ts";
import { withService } from "./with_state.ts";

/** A path's node by name, or by its bare id when the node is gone. */
function nodeLabel(svc: Service) {
  const nodes = new Nodes(svc);
  return (id: string) => nodes.find(id)?.name ?? id;
}

function summary(p: Path, label: (id: string) => string): string {
  return `${label(p.entryNodeId)} → ${label(p.exitNodeId)}, MTU ${p.mtu ?? "default"}`;
}

export async function pathsList(state: string, io: CliIo): Promise<number> {
  const rows = await withService(state, (svc) => {
    const label = nodeLabel(svc);
    return new Paths(svc).list().map((p) => [
      label(p.entryNodeId),
      label(p.exitNodeId),
      p.mtu === null ? "default" : String(p.mtu),
      p.status ?? "-",
      String(p.version),
      p.id,
    ]);
  });
  if (rows.length === 0) {
    io.out("no paths yet\n");
    return 0;
  }
  io.out(formatTable(["ENTRY", "EXIT", "MTU", "STATUS", "VERSION", "ID"], rows));
  return 0;
}

export async function pathsAdd(
  state: string,
  entry: string,
  exit: string,
  mtu: number | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  const line = await withService(state, (svc) => {
    const p = new Paths(svc).create(actor, { entry, exit, mtu });
    return `added path ${summary(p, nodeLabel(svc))} (id ${p.id}, version ${p.version})`;
  });
  io.out(line + "\n");
  return 0;
}

export async function pathsExit(
  state: string,
  id: string,
  exit: string,
  expectVersion: number | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  const line = await withService(state, (svc) => {
    const p = new Paths(svc).setExit(actor, id, exit, expectVersion);
    return `path ${p.id}: ${summary(p, nodeLabel(svc))} (version ${p.version})`;
  });
  io.out(line + "\n");
  return 0;
}

export async function pathsRemove(
  state: string,
  id: string,
  expectVersion: number | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  const line = await withService(state, (svc) => {
    const p = new Paths(svc).remove(actor, id, expectVersion);
    return `removed path ${p.id} (${summary(p, nodeLabel(svc))})`;
  });
  io.out(line + "\n");
  return 0;
}
