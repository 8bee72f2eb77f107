/**
 * Fleet driver tests' scaffolding: a controller state in a temp directory,
 * real agents (agent_harness.ts, one network namespace each) whose
 * certificates come from that state's Fleet CA and whose rows sit in its
 * node table, a loopback TCP port per agent (the driver dials
 * `host:control_port` like in production; here it leads to the agent's
 * unix-socket forwarder), and a real relay process with its egress port.
 */
import * as pki from "../../core/pki/mod.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Relays } from "../../controller/service/relays.ts";
import { Service } from "../../controller/service/service.ts";
import { type ControllerState, openState } from "../../controller/state.ts";
import { type AgentPki, AgentProcess, type Lab, Proc, ROOT } from "./agent_harness.ts";
import type { Fleet, IssuedLeaf } from "./pki_fixture.ts";

export const TEST_ACTOR = "cli:fleet-test";

/** A fresh controller state (database, CA) in a temp directory. */
export async function controllerState(
  parent: string,
): Promise<ControllerState> {
  return await openState(`${parent}/controller`, { create: true });
}

/** The state's CA as the agent harness's Fleet, plus the controller client leaf. */
export async function stateFleet(state: ControllerState): Promise<AgentPki> {
  const cas = state.pki.cas;
  const fleet: Fleet = {
    pki: cas,
    trust: state.pki.trust,
    rootPem: pki.certPem(cas.root.cert),
    async issue(profile, opts = {}) {
      const kind = profile.kind === "controller-client" || profile.kind === "controller-server"
        ? "controller"
        : profile.kind;
      const csr = await pki.generateCsr(kind);
      const cert = await pki.issueLeaf(cas, csr.csrPem, profile, opts);
      const ca = profile.kind === "device" ? cas.device.cert : cas.fleet.cert;
      return { cert, chainPem: pki.bundlePem([cert, ca]), keyPem: csr.keyPem };
    },
  };
  return { fleet, controller: await fleet.issue({ kind: "controller-client" }) };
}

/** Writes a node state directory (key, chain, CAs) with a fresh node certificate. */
export async function nodeDir(
  fleet: AgentPki,
  parent: string,
  name: string,
): Promise<{ dir: string; leaf: IssuedLeaf }> {
  const dir = `${parent}/${name}`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const leaf = await fleet.fleet.issue({ kind: "node", host: "localhost" });
  const p = fleet.fleet.pki;
  await Deno.writeTextFile(`${dir}/node.key`, leaf.keyPem, { mode: 0o600 });
  await Deno.writeTextFile(`${dir}/node.crt`, leaf.chainPem);
  await Deno.writeTextFile(`${dir}/ca.crt`, pki.certPem(p.root.cert));
  await Deno.writeTextFile(`${dir}/fleet-ca.crt`, pki.certPem(p.fleet.cert));
  await Deno.writeTextFile(`${dir}/device-ca.crt`, pki.certPem(p.device.cert));
  return { dir, leaf };
}

/**
 * Records an onboarded node as SSH onboarding would leave it: status active,
 * `cert` pinned, reached at host:port (optionally through a relay).
 */
export function registerNode(
  state: ControllerState,
  o: { name: string; host: string; port: number; cert: pki.X509Certificate; viaRelay?: string },
): string {
  const svc = new Service(state.db);
  const nodes = new Nodes(svc);
  const n = nodes.create(TEST_ACTOR, { name: o.name, host: o.host, viaRelay: o.viaRelay });
  nodes.certified(TEST_ACTOR, n.id, pki.serialOf(o.cert), pki.certPem(o.cert));
  svc.mutate(
    { actor: TEST_ACTOR, action: "node.port", target: { type: "node", id: n.id } },
    (tx) => tx.update({ control_port: o.port }),
  );
  nodes.onboarded(TEST_ACTOR, n.id, "ready");
  return n.id;
}

/** A relay row (onboarded, certificate recorded) with its egress port. */
export function registerRelay(
  state: ControllerState,
  o: { host: string; cert: pki.X509Certificate; egressPort: number },
): string {
  const svc = new Service(state.db);
  const r = new Relays(svc).certified(TEST_ACTOR, o.host, pki.serialOf(o.cert));
  svc.mutate(
    { actor: TEST_ACTOR, action: "relay.egress", target: { type: "relay", id: r.id } },
    (tx) => tx.update({ egress_port: o.egressPort }),
  );
  return r.id;
}

/**
 * A loopback TCP port leading to a unix socket (an agent's forwarder):
 * each accepted connection is connected anew, so an agent that restarts
 * behind it is reached again; a dead one shows as a closed connection.
 */
export function tcpToUnix(path: string): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  void (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      void (async () => {
        let up: Deno.UnixConn | undefined;
        try {
          up = await Deno.connect({ transport: "unix", path });
          conns.add(up);
          await Promise.race([
            conn.readable.pipeTo(up.writable).catch(() => {}),
            up.readable.pipeTo(conn.writable, { preventClose: true }).catch(() => {}),
          ]);
        } catch { /* the agent is down */ }
        for (const c of [conn, up]) {
          if (!c) continue;
          conns.delete(c);
          try {
            c.close();
          } catch { /* closed */ }
        }
      })();
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    close() {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

const forwarders = new Set<{ close(): void }>();

/** Closes every loopback port startFleetNode opened (at the end of a test). */
export function closeForwarders(): void {
  for (const f of forwarders) f.close();
  forwarders.clear();
}

/** A real agent in its own namespace, its node row, and its loopback port. */
export interface FleetNode {
  id: string;
  agent: AgentProcess;
  ns: string;
  leaf: IssuedLeaf;
  port: number;
}

/** Starts an agent on a new namespace and registers it (pinned to its certificate). */
export async function startFleetNode(
  lab: Lab,
  state: ControllerState,
  fleet: AgentPki,
  name: string,
  o: { viaRelay?: string; register?: boolean } = {},
): Promise<FleetNode> {
  const ns = await lab.ns(name);
  const [iface] = await lab.names.reserve(1);
  const { dir, leaf } = await nodeDir(fleet, lab.tmp, name);
  const agent = await AgentProcess.start(lab, ns, dir, fleet, { iface });
  // Not lab.track(): the lab closes those on every agent stop, this must outlive restarts.
  const fwd = tcpToUnix(agent.socket);
  forwarders.add(fwd);
  const id = o.register === false ? "" : registerNode(state, {
    name: `node-${name}-${lab.id}`,
    host: "127.0.0.1",
    port: fwd.port,
    cert: leaf.cert,
    viaRelay: o.viaRelay,
  });
  return { id, agent, ns, leaf, port: fwd.port };
}

/** A real relay process (relay/main.ts run) with its egress listener on loopback. */
export async function startRelayProcess(
  lab: Lab,
  fleet: AgentPki,
): Promise<{ leaf: IssuedLeaf; egressPort: number; proc: Proc }> {
  const dir = `${lab.tmp}/relay`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const leaf = await fleet.fleet.issue({ kind: "relay", hosts: ["localhost", "127.0.0.1"] });
  const p = fleet.fleet.pki;
  await Deno.writeTextFile(`${dir}/relay.key`, leaf.keyPem, { mode: 0o600 });
  await Deno.writeTextFile(`${dir}/relay.crt`, leaf.chainPem);
  await Deno.writeTextFile(`${dir}/ca.crt`, pki.certPem(p.root.cert));
  await Deno.writeTextFile(`${dir}/fleet-ca.crt`, pki.certPem(p.fleet.cert));
  await Deno.writeTextFile(`${dir}/device-ca.crt`, pki.certPem(p.device.cert));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}relay/main.ts`,
      "run",
      "--dir",
      dir,
      "--client-addr",
      "127.0.0.1:0",
      "--tunnel-addr",
      "127.0.0.1:0",
      "--egress-addr",
      "127.0.0.1:0",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const proc = new Proc(child, "relay");
  lab.procs.push(proc);
  const ready = JSON.parse(await proc.line(/^\{"ready":true/, 60_000));
  return { leaf, egressPort: ready.ports.egress, proc };
}

const SIM = new URL("./fleet_sim_node.ts", import.meta.url).pathname;

/** A simulated node (fleet_sim_node.ts) as a process; restartable on the same port. */
export class SimNode {
  private constructor(
    readonly id: string,
    readonly port: number,
    private readonly config: string,
    public proc: Proc,
  ) {}

  static async start(
    state: ControllerState,
    fleet: AgentPki,
    name: string,
    o: { eventEveryMs?: number } = {},
  ): Promise<SimNode> {
    const leaf = await fleet.fleet.issue({ kind: "node", host: "localhost" });
    const cas = fleet.fleet.pki;
    const base = {
      chainPem: leaf.chainPem,
      keyPem: leaf.keyPem,
      caPem: pki.certPem(cas.root.cert) + pki.certPem(cas.fleet.cert),
      eventEveryMs: o.eventEveryMs ?? 0,
    };
    const first = await SimNode.spawn(JSON.stringify({ ...base, port: 0 }));
    const config = JSON.stringify({ ...base, port: first.port });
    const id = registerNode(state, { name, host: "127.0.0.1", port: first.port, cert: leaf.cert });
    return new SimNode(id, first.port, config, first.proc);
  }

  private static async spawn(config: string): Promise<{ proc: Proc; port: number }> {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", `${ROOT}deno.json`, SIM],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(config));
    await w.close();
    const proc = new Proc(child, "simulated node");
    const ready = JSON.parse(await proc.line(/^\{"ready":true/, 60_000));
    return { proc, port: ready.port };
  }

  /** SIGTERM (the server sends GOAWAY) or kill -9, then a new process on the same port. */
  async restart(graceful: boolean): Promise<void> {
    if (graceful) await this.proc.stop(5000);
    else {
      this.proc.kill("SIGKILL");
      await this.proc.status;
    }
    this.proc = (await SimNode.spawn(this.config)).proc;
  }

  async stop(): Promise<void> {
    this.proc.kill("SIGKILL");
    await this.proc.status;
  }
}
