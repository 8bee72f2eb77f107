// deno-lint-ignore-file no-explicit-any
/**
 * Agent tests' scaffolding: throwaway network namespaces and veth links
 * (quiet namespaces, unique names per run), the fleet PKI and a node's
 * state directory, the agent as a real process inside a namespace
 * (`ip netns exec NS deno run -A agent/main.ts run …`), a NodeControl
 * client that reaches it through a unix-socket forwarder (no link into the
 * host's namespace), and WireGuard clients made with wireguard-go + `wg`.
 *
 * Everything a Lab starts is tracked and killed by `lab.cleanup()`, which
 * also kills every process left in its namespaces and deletes them.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { x25519 } from "@noble/curves/ed25519.js";
import { certPem } from "../../core/pki/mod.ts";
import { encodeConfig, NodeControlClient, nodeTypes } from "../../agent/proto.ts";
import { capability, hasCommand, isRoot } from "./capability.ts";
import { InterfaceNames } from "./ifnames.ts";
import { addQuietNamespace, deleteNamespace } from "./netns.ts";
import { type Fleet, type IssuedLeaf, makeFleet } from "./pki_fixture.ts";
import { run, type RunResult } from "./run.ts";
import { decodeText } from "../../core/encoding.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;
const PROBE = new URL("./net_probe.ts", import.meta.url).pathname;
const FORWARD = new URL("./ns_forward.ts", import.meta.url).pathname;

/** Root plus the tools the agent e2e suites drive. */
export function agentCapability(suite: string) {
  return capability(
    suite,
    isRoot() && hasCommand("wireguard-go") && hasCommand("wg", ["--version"]) &&
      hasCommand("ip", ["-V"]) && hasCommand("iptables", ["--version"]) &&
      hasCommand("ip6tables", ["--version"]) && hasCommand("ping", ["-V"]) &&
      hasCommand("sysctl", ["-n", "kernel.ostype"]),
    "needs root, wireguard-go, wireguard-tools (wg), iproute2, iptables, iputils-ping and procps",
  );
}

export const uniq = () => crypto.getRandomValues(new Uint8Array(3)).toHex();
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A WireGuard keypair (base64). */
export function wgKeyPair(): { priv: string; pub: string } {
  const sk = x25519.utils.randomSecretKey();
  sk[0] &= 248;
  sk[31] = (sk[31] & 127) | 64;
  return { priv: sk.toBase64(), pub: x25519.getPublicKey(sk).toBase64() };
}
export const psk = () => crypto.getRandomValues(new Uint8Array(32)).toBase64();

/** Polls `fn` until it returns true (bounded); returns whether it did. */
export async function eventually(
  fn: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 200,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    if (await fn()) return true;
    if (Date.now() > end) return false;
    await sleep(intervalMs);
  }
  return false;
}

function lines(): TransformStream<string, string> {
  let buf = "";
  return new TransformStream({
    transform(chunk, c) {
      buf += chunk;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      for (const p of parts) c.enqueue(p);
    },
    flush(c) {
      if (buf) c.enqueue(buf);
    },
  });
}

/** A spawned process with its output lines collected. */
export class Proc {
  readonly out: string[] = [];
  readonly err: string[] = [];
  readonly status: Promise<Deno.CommandStatus>;
  #waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  #pumps: Promise<void>;
  exited = false;

  constructor(readonly child: Deno.ChildProcess, readonly label: string) {
    this.status = child.status.then((s) => {
      this.exited = true;
      return s;
    });
    const pump = async (s: ReadableStream<Uint8Array<ArrayBuffer>>, into: string[]) => {
      for await (const l of decodeText(s).pipeThrough(lines())) {
        into.push(l);
        if (into.length > 20_000) into.splice(0, 10_000);
        this.#waiters = this.#waiters.filter((w) => {
          if (!w.re.test(l)) return true;
          w.resolve(l);
          return false;
        });
      }
    };
    this.#pumps = Promise.all([pump(child.stdout, this.out), pump(child.stderr, this.err)])
      .then(() => {});
  }

  get pid(): number {
    return this.child.pid;
  }

  /** The first output line (stdout or stderr, past or future) matching `re`. */
  line(re: RegExp, timeoutMs = 60_000): Promise<string> {
    const seen = [...this.out, ...this.err].find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`${this.label}: no line ${re} within ${timeoutMs} ms\n${this.tail()}`)),
        timeoutMs,
      );
      this.#waiters.push({
        re,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      this.status.then(() =>
        setTimeout(() => {
          clearTimeout(timer);
          reject(new Error(`${this.label} exited before ${re}\n${this.tail()}`));
        }, 50)
      );
    });
  }

  tail(n = 40): string {
    return [...this.err.slice(-n), ...this.out.slice(-10)].join("\n");
  }

  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.child.kill(signal);
    } catch { /* gone */ }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; waits for the output to end. */
  async stop(graceMs = 10_000): Promise<Deno.CommandStatus> {
    this.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), graceMs));
    if (await Promise.race([this.status, late]) === "late") this.kill("SIGKILL");
    clearTimeout(timer);
    const s = await this.status;
    await this.#pumps;
    return s;
  }
}

/** Namespaces, links and processes of one test; `cleanup()` undoes all of it. */
export class Lab {
  readonly id = uniq();
  readonly namespaces: string[] = [];
  readonly procs: Proc[] = [];
  readonly names = new InterfaceNames();
  readonly tmp: string;
  #links = 0;
  #clients: { close(): void }[] = [];
  /** Agents started in this lab (their shared clients are dropped with the others). */
  readonly agents: { dropClient(): void }[] = [];

  private constructor(tmp: string) {
    this.tmp = tmp;
  }

  static async create(): Promise<Lab> {
    return new Lab(await Deno.makeTempDir({ prefix: "pharos-agent-test-" }));
  }

  /** Creates a quiet namespace `pa<id><tag>` (≤ 15 characters). */
  async ns(tag: string): Promise<string> {
    const name = `pa${this.id}${tag}`;
    await addQuietNamespace(name);
    this.namespaces.push(name);
    await this.exec(name, ["ip", "link", "set", "lo", "up"]);
    return name;
  }

  async run(ns: string, argv: string[], stdin?: string): Promise<RunResult> {
    return await run("ip", ["netns", "exec", ns, ...argv], stdin === undefined ? {} : { stdin });
  }

  async exec(ns: string, argv: string[], stdin?: string): Promise<string> {
    const r = await this.run(ns, argv, stdin);
    if (r.code !== 0) {
      throw new Error(`[${ns}] ${argv.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
    }
    return r.stdout;
  }

  /** A veth pair between two namespaces with the given addresses (CIDR notation), both up. */
  async link(
    a: string,
    addrA: string,
    b: string,
    addrB: string,
  ): Promise<{ devA: string; devB: string }> {
    const n = this.#links++;
    const devA = `v${this.id}${n}a`;
    const devB = `v${this.id}${n}b`;
    const r = await run("ip", [
      "link",
      "add",
      devA,
      "netns",
      a,
      "type",
      "veth",
      "peer",
      "name",
      devB,
      "netns",
      b,
    ]);
    if (r.code !== 0) throw new Error(`veth ${devA}/${devB}: ${r.stderr}`);
    await this.exec(a, ["ip", "addr", "add", addrA, "dev", devA]);
    await this.exec(b, ["ip", "addr", "add", addrB, "dev", devB]);
    await this.exec(a, ["ip", "link", "set", devA, "up"]);
    await this.exec(b, ["ip", "link", "set", devB, "up"]);
    return { devA, devB };
  }

  /** Starts a process inside a namespace (tracked). */
  spawn(
    ns: string,
    argv: string[],
    opts: { env?: Record<string, string>; label?: string } = {},
  ): Proc {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, ...argv],
      cwd: ROOT,
      env: opts.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const p = new Proc(child, opts.label ?? `${argv[0]} in ${ns}`);
    this.procs.push(p);
    return p;
  }

  /** A TCP echo server (net_probe serve) in `ns`; resolves once it listens. */
  async echoServer(ns: string, port: number, host = "0.0.0.0"): Promise<Proc> {
    const p = this.spawn(ns, [
      Deno.execPath(),
      "run",
      "--allow-net",
      PROBE,
      "serve",
      String(port),
      host,
    ], {
      label: `echo in ${ns}`,
    });
    await p.line(/^listening /, 30_000);
    return p;
  }

  /** One TCP round trip from `ns` (optionally through SOCKS5); the source address the server saw. */
  async tcpProbe(
    ns: string,
    host: string,
    port: number,
    opts: { socks?: string; user?: string; pass?: string; timeoutMs?: number } = {},
  ): Promise<{ ok: boolean; from?: string; error?: string }> {
    const args = [Deno.execPath(), "run", "--allow-net", PROBE, "connect", host, String(port)];
    if (opts.socks) args.push("--socks", opts.socks, "--user", opts.user!, "--pass", opts.pass!);
    args.push("--timeout", String(opts.timeoutMs ?? 3000));
    const r = await this.run(ns, args);
    try {
      return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "");
    } catch {
      return { ok: false, error: r.stderr || r.stdout };
    }
  }

  /** One ping (1 s wait) from `ns`; true when answered. */
  async ping(ns: string, host: string): Promise<boolean> {
    return (await this.run(ns, ["ping", "-n", "-q", "-c", "1", "-W", "1", host])).code === 0;
  }

  /** Kills every process inside `ns` (a crash of the whole machine, as far as processes go). */
  async killAll(ns: string): Promise<void> {
    for (let round = 0; round < 50; round++) {
      const r = await run("ip", ["netns", "pids", ns]);
      const pids = r.stdout.split("\n").map((s) => Number(s.trim())).filter((n) => n > 0);
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await sleep(50);
    }
  }

  track(c: { close(): void }): void {
    this.#clients.push(c);
  }

  /** Closes every NodeControl client made so far (do this before killing an agent). */
  closeClients(): void {
    for (const a of this.agents) a.dropClient();
    for (const c of this.#clients.splice(0)) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }

  async cleanup(): Promise<void> {
    this.closeClients();
    for (const p of this.procs) p.kill("SIGKILL");
    for (const ns of this.namespaces) await this.killAll(ns);
    await Promise.all(this.procs.map((p) => p.status.catch(() => {})));
    for (const ns of this.namespaces) await deleteNamespace(ns);
    await this.names.releaseAll();
    await Deno.remove(this.tmp, { recursive: true }).catch(() => {});
  }
}

/** The fleet and the controller's client certificate. */
export interface AgentPki {
  fleet: Fleet;
  controller: IssuedLeaf;
}

export async function agentPki(): Promise<AgentPki> {
  const fleet = await makeFleet();
  return { fleet, controller: await fleet.issue({ kind: "controller-client" }) };
}

/** A node state directory holding what onboarding installs (key, chain, CAs). */
export async function nodeStateDir(pki: AgentPki, parent: string, name: string): Promise<string> {
  const dir = `${parent}/${name}`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const leaf = await pki.fleet.issue({ kind: "node", host: "localhost" });
  const p = pki.fleet.pki;
  await Deno.writeTextFile(`${dir}/node.key`, leaf.keyPem, { mode: 0o600 });
  await Deno.writeTextFile(`${dir}/node.crt`, leaf.chainPem);
  await Deno.writeTextFile(`${dir}/ca.crt`, certPem(p.root.cert));
  await Deno.writeTextFile(`${dir}/fleet-ca.crt`, certPem(p.fleet.cert));
  await Deno.writeTextFile(`${dir}/device-ca.crt`, certPem(p.device.cert));
  return dir;
}

export interface AgentStartOptions {
  /** Client interface name (reserve it with lab.names). */
  iface: string;
  awgPort?: number;
  listenPort?: number;
  pollInterval?: string;
  extra?: string[];
  env?: Record<string, string>;
}

/**
 * An agent started on node `ns` as these tests start one: a fresh fleet PKI,
 * the state directory `node` under the lab's, one reserved interface name.
 */
export async function startNodeAgent(
  lab: Lab,
  ns: string,
  opts: Omit<AgentStartOptions, "iface"> = {},
): Promise<{ agent: AgentProcess; pki: AgentPki; iface: string; dir: string }> {
  const pki = await agentPki();
  const [iface] = await lab.names.reserve(1);
  const dir = await nodeStateDir(pki, lab.tmp, "node");
  const agent = await AgentProcess.start(lab, ns, dir, pki, { iface, ...opts });
  return { agent, pki, iface, dir };
}

/** The agent as a process in a namespace, and NodeControl clients to it. */
export class AgentProcess {
  readonly socket: string;
  proc!: Proc;
  #forward!: Proc;
  port = 0;

  constructor(
    readonly lab: Lab,
    readonly ns: string,
    readonly dir: string,
    readonly pki: AgentPki,
    readonly opts: AgentStartOptions,
  ) {
    this.socket = `${lab.tmp}/${ns}-ctl.sock`;
  }

  static async start(
    lab: Lab,
    ns: string,
    dir: string,
    pki: AgentPki,
    opts: AgentStartOptions,
  ): Promise<AgentProcess> {
    const a = new AgentProcess(lab, ns, dir, pki, opts);
    lab.agents.push(a);
    await a.start();
    return a;
  }

  get args(): string[] {
    const o = this.opts;
    return [
      "run",
      "--state",
      this.dir,
      "--listen",
      `127.0.0.1:${o.listenPort ?? 8444}`,
      "--interface",
      o.iface,
      "--awg-port",
      String(o.awgPort ?? 443),
      "--poll-interval",
      o.pollInterval ?? "250ms",
      "--log-level",
      "debug",
      ...(o.extra ?? []),
    ];
  }

  /** Starts (or restarts) the agent process and, once, its forwarder. */
  async start(): Promise<void> {
    this.proc = this.lab.spawn(this.ns, [
      Deno.execPath(),
      "run",
      "-A",
      `${ROOT}agent/main.ts`,
      ...this.args,
    ], {
      env: this.opts.env,
      label: `agent in ${this.ns}`,
    });
    const ready = await this.proc.line(/^\{"ready":true/, 120_000);
    this.port = JSON.parse(ready).port;
    if (!this.#forward || this.#forward.exited) {
      this.#forward = this.lab.spawn(this.ns, [
        Deno.execPath(),
        "run",
        "--allow-net",
        "--allow-read",
        "--allow-write",
        FORWARD,
        this.socket,
        "127.0.0.1",
        String(this.port),
      ], { label: `forwarder in ${this.ns}` });
      await this.#forward.line(/^ready$/, 30_000);
    }
  }

  /** A NodeControl client presenting `leaf` (default: the controller's). */
  client(leaf: IssuedLeaf | null = this.pki.controller, rootPem = this.pki.fleet.rootPem): any {
    const creds = grpc.credentials.createSsl(
      Buffer.from(rootPem),
      leaf ? Buffer.from(leaf.keyPem) : null,
      leaf ? Buffer.from(leaf.chainPem) : null,
    );
    const c = new NodeControlClient(`unix:${this.socket}`, creds, {
      "grpc.ssl_target_name_override": "localhost",
      "grpc.default_authority": "localhost",
      "grpc.enable_retries": 0,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
    this.lab.track(c);
    return c;
  }

  #default: any = null;

  /** Unary call on a shared controller client; rejects with the grpc error. */
  call(method: string, request: unknown, client?: any): Promise<any> {
    if (!client) {
      this.#default ??= this.client();
      client = this.#default;
    }
    return new Promise((resolve, reject) =>
      client[method](
        request,
        { deadline: Date.now() + 60_000 },
        (err: any, res: any) => err ? reject(err) : resolve(res),
      )
    );
  }

  /** Drops the shared client (before this agent is killed or restarted). */
  dropClient(): void {
    try {
      this.#default?.close();
    } catch { /* closed */ }
    this.#default = null;
  }

  /** Pushes an AmneziaWG peer set. */
  pushAwg(peers: Record<string, unknown>[], revision: number | string): Promise<any> {
    return this.call("PushConfig", {
      protocol: "PROTOCOL_AMNEZIAWG",
      revision: String(revision),
      config: Buffer.from(encodeConfig(nodeTypes.AmneziaWGConfig, { peers })),
    });
  }

  addAwgPeer(publicKey: string, allowedIps: string[], presharedKey = ""): Promise<any> {
    return this.call("AddPeer", {
      peer: {
        id: `peer-${publicKey.slice(0, 6)}`,
        protocol: "PROTOCOL_AMNEZIAWG",
        public_key: publicKey,
        allowed_ips: allowedIps,
        preshared_key: presharedKey,
      },
    });
  }

  setPolicy(p: {
    forwarding: boolean;
    masquerade?: boolean;
    isolation?: boolean;
    transits?: { device_cidr: string; inner_interface: string; mark: number; table: number }[];
  }): Promise<any> {
    return this.call("SetNetworkConfig", {
      config: { masquerade: false, isolation: false, transits: [], ...p },
    });
  }

  /** SIGKILL the agent process only (its data-plane daemons live on). */
  async crash(): Promise<void> {
    this.lab.closeClients();
    this.proc.kill("SIGKILL");
    await this.proc.status;
  }

  /** SIGTERM and wait. */
  async stop(): Promise<Deno.CommandStatus> {
    this.lab.closeClients();
    return await this.proc.stop();
  }
}

/** A WireGuard client (wireguard-go + wg) in its own namespace. */
export async function startWgClient(
  lab: Lab,
  ns: string,
  o: {
    name: string;
    privateKey: string;
    address: string;
    server: { publicKey: string; endpoint: string; presharedKey?: string };
    routes: string[];
  },
): Promise<Proc> {
  const p = lab.spawn(ns, ["wireguard-go", "-f", o.name], {
    env: { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1", LOG_LEVEL: "error" },
    label: `wireguard-go ${o.name}`,
  });
  const sock = `/var/run/wireguard/${o.name}.sock`;
  const up = await eventually(() => Deno.stat(sock).then(() => true, () => false), 15_000, 25);
  if (!up) throw new Error(`wireguard-go did not create ${sock}\n${p.tail()}`);
  const keyFile = `${lab.tmp}/${o.name}.key`;
  await Deno.writeTextFile(keyFile, o.privateKey + "\n", { mode: 0o600 });
  const args = [
    "wg",
    "set",
    o.name,
    "private-key",
    keyFile,
    "peer",
    o.server.publicKey,
    "endpoint",
    o.server.endpoint,
    "allowed-ips",
    "0.0.0.0/0",
    "persistent-keepalive",
    "25",
  ];
  if (o.server.presharedKey) {
    const pskFile = `${lab.tmp}/${o.name}.psk`;
    await Deno.writeTextFile(pskFile, o.server.presharedKey + "\n", { mode: 0o600 });
    args.splice(args.indexOf("endpoint"), 0, "preshared-key", pskFile);
  }
  await lab.exec(ns, args);
  await lab.exec(ns, ["ip", "addr", "add", o.address, "dev", o.name]);
  await lab.exec(ns, ["ip", "link", "set", o.name, "up"]);
  for (const r of o.routes) await lab.exec(ns, ["ip", "route", "add", r, "dev", o.name]);
  return p;
}

/** Reads a WatchEvents stream into an array (close with `cancel()`). */
export function watchEvents(
  agent: AgentProcess,
): { events: any[]; cancel(): void; ended: Promise<void> } {
  const client = agent.client();
  const events: any[] = [];
  const call = client.WatchEvents({});
  const ended = new Promise<void>((resolve) => {
    call.on("data", (e: any) => events.push(e));
    call.on("error", () => resolve());
    call.on("end", () => resolve());
  });
  return {
    events,
    ended,
    cancel() {
      call.cancel();
      client.close();
    },
  };
}

/**
 * One Deno test run in a fresh Lab, cleaned up afterwards (no sanitizers:
 * the lab's processes and sockets outlive single ops).
 */
export function labTest(name: string, ignore: boolean, fn: (lab: Lab) => Promise<void>): void {
  Deno.test({
    name,
    ignore,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const lab = await Lab.create();
      try {
        await fn(lab);
      } finally {
        await lab.cleanup();
      }
    },
  });
}

/**
 * The single-node topology: clients c1 (192.0.2.2, node 192.0.2.1) and c2
 * (192.0.2.6, node 192.0.2.5), the node routed to the internet namespace,
 * whose host 203.0.113.80 echoes on TCP 7000 the source address it sees.
 */
export async function singleNode(lab: Lab) {
  const node = await lab.ns("n");
  const c1 = await lab.ns("c1");
  const c2 = await lab.ns("c2");
  const inet = await lab.ns("i");
  await lab.link(c1, "192.0.2.2/30", node, "192.0.2.1/30");
  await lab.link(c2, "192.0.2.6/30", node, "192.0.2.5/30");
  await lab.link(node, "198.51.100.1/30", inet, "198.51.100.2/30");
  await lab.exec(node, ["ip", "route", "add", "default", "via", "198.51.100.2"]);
  await lab.exec(inet, ["ip", "addr", "add", "203.0.113.80/32", "dev", "lo"]);
  await lab.echoServer(inet, 7000);
  return { node, c1, c2, inet };
}

/**
 * WireGuard client `n` (1 or 2) of the singleNode topology in namespace
 * `ns`: address 10.8.0.(n+1), the node at its side of the link
 * (192.0.2.1 or 192.0.2.5) on `port`.
 */
export function singleNodeClient(
  lab: Lab,
  ns: string,
  n: 1 | 2,
  o: { key: { priv: string }; psk: string; serverKey: string; routes: string[]; port?: number },
): Promise<Proc> {
  return startWgClient(lab, ns, {
    name: `pc${lab.id}${n}`,
    privateKey: o.key.priv,
    address: `10.8.0.${n + 1}/32`,
    server: {
      publicKey: o.serverKey,
      endpoint: `192.0.2.${n === 1 ? 1 : 5}:${o.port ?? 443}`,
      presharedKey: o.psk,
    },
    routes: o.routes,
  });
}
