/**
 * The node agent: AddPeer latency and rate up to 5,000 peers (each with its
 * own preshared key, through the whole path a controller uses: mTLS gRPC,
 * the control front, validation, the interface, the journal on disk), one
 * call at a time and with several in flight, against `wg set` run directly
 * on a wireguard-go interface in the same namespace in the same run; cold
 * start with those peers from disk to serving; the agent's resident memory
 * with them. Needs root (it runs in a network namespace it creates) and
 * wireguard-go + wireguard-tools.
 */
import { agentPki, AgentProcess, Lab, nodeStateDir } from "../support/agent_harness.ts";
import { run } from "../support/run.ts";
import { type BenchModule, type Figure, figure, percentile } from "./harness.ts";
import { decodeText } from "../../core/encoding.ts";

/** Peers added one call at a time; then more with several calls in flight. */
const PEERS = 5000;
const CONCURRENT_PEERS = 2000;
const CONCURRENCY = 16;
const WG_SET = new URL("../support/wg_set_bench.ts", import.meta.url).pathname;
const LOAD = new URL("../support/agent_load.ts", import.meta.url).pathname;

async function rssKb(pid: number): Promise<number> {
  const s = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(s)![1]);
}

async function nsPids(ns: string): Promise<number[]> {
  const r = await run("ip", ["netns", "pids", ns]);
  return r.stdout.split("\n").map((s) => Number(s.trim())).filter((n) => n > 0);
}

async function measure(): Promise<Figure[]> {
  if (Deno.uid() !== 0) throw new Error("the agent benchmark needs root (network namespaces)");
  const lab = await Lab.create();
  try {
    const ns = await lab.ns("b");
    const pki = await agentPki();
    const [iface, baseIface] = await lab.names.reserve(2);
    const dir = await nodeStateDir(pki, lab.tmp, "node");
    const agent = await AgentProcess.start(lab, ns, dir, pki, {
      iface,
      pollInterval: "5s",
      extra: ["--log-level", "info"],
    });
    const pkiFile = `${lab.tmp}/controller.json`;
    await Deno.writeTextFile(
      pkiFile,
      JSON.stringify({
        root: pki.fleet.rootPem,
        key: pki.controller.keyPem,
        chain: pki.controller.chainPem,
      }),
    );
    // The controller's side runs in the namespace and dials NodeControl over TCP.
    const loader = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        Deno.execPath(),
        "run",
        "-A",
        LOAD,
        pkiFile,
        `127.0.0.1:${agent.port}`,
        "1000",
        String(PEERS),
        String(CONCURRENT_PEERS),
        String(CONCURRENCY),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = decodeText(loader.stdout).getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("load driver ended without results");
      text += value;
    }
    const r = JSON.parse(text.slice(0, text.indexOf("\n")));
    const seq = r.sequential.latenciesMs as number[];
    const agentRate = PEERS / (r.sequential.totalMs / 1000);
    const concurrentRate = r.concurrent.count / (r.concurrent.totalMs / 1000);
    const trivial = r.trivial.latenciesMs as number[];
    // Memory while the controller is still connected.
    let rss = 0;
    for (const pid of await nsPids(ns)) {
      const cmd = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
      if (cmd.includes("agent/main.ts")) rss += await rssKb(pid);
    }
    const mainRss = await rssKb(agent.proc.pid);
    await loader.stdin.close();
    lines.releaseLock();
    await loader.stdout.cancel().catch(() => {});
    await loader.status;
    const total = PEERS + CONCURRENT_PEERS;

    // Baseline: wg set on a wireguard-go interface in the same namespace.
    const base = await run("ip", [
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "run",
      "-A",
      WG_SET,
      baseIface,
      String(PEERS),
    ]);
    if (base.code !== 0) throw new Error(`wg set baseline failed: ${base.stderr}`);
    const wg = JSON.parse(base.stdout.trim().split("\n").at(-1)!);
    const wgRate = PEERS / (wg.totalMs / 1000);

    // Cold start: stop (the interface goes), start again from disk, time to serving.
    await agent.stop();
    const t0 = performance.now();
    await agent.start();
    const coldMs = performance.now() - t0;
    const status = await agent.call("GetStatus", {});
    if (status.services[0].peer_count !== total) {
      throw new Error(
        `after the cold start ${status.services[0].peer_count} peers are up, not ${total}`,
      );
    }
    await agent.stop();
    // A process start alone, for scale: the agent printing its usage.
    const t1 = performance.now();
    await run(Deno.execPath(), [
      "run",
      "-A",
      new URL("../../agent/main.ts", import.meta.url).pathname,
      "--help",
    ]);
    const bareStartMs = performance.now() - t1;

    return [
      figure(
        "AddPeer rate, one call at a time (PSK each)",
        agentRate,
        "peers/s",
        "wg set",
        wgRate,
        {
          target: ">= 0.8x wg set",
        },
      ),
      figure(
        `AddPeer rate, ${CONCURRENCY} calls in flight`,
        concurrentRate,
        "peers/s",
        "wg set",
        wgRate,
        {
          target: ">= 0.8x wg set",
        },
      ),
      figure(
        "AddPeer latency p50",
        percentile(seq, 50),
        "ms",
        "wg set p50",
        percentile(wg.latenciesMs, 50),
        {
          lowerIsBetter: true,
        },
      ),
      figure(
        "AddPeer latency p99",
        percentile(seq, 99),
        "ms",
        "wg set p99",
        percentile(wg.latenciesMs, 99),
        {
          lowerIsBetter: true,
          target: "<= 50 ms",
        },
      ),
      figure(
        "NodeControl call that changes nothing, p50",
        percentile(trivial, 50),
        "ms",
        "AddPeer p50",
        percentile(seq, 50),
        {
          lowerIsBetter: true,
        },
      ),
      figure(
        `cold start with ${total} peers to serving`,
        coldMs,
        "ms",
        "agent process start (--help)",
        bareStartMs,
        {
          lowerIsBetter: true,
          target: "<= 10 s",
        },
      ),
      figure(
        `agent RSS with ${total} peers (main + control front)`,
        rss / 1024,
        "MiB",
        "main process alone",
        mainRss / 1024,
      ),
    ];
  } finally {
    lab.closeClients();
    await lab.cleanup();
  }
}

export const agentBench: BenchModule = {
  section: "Agent (node)",
  notes:
    "AddPeer goes through the whole controller path: a controller client in the node's namespace, " +
    "mTLS gRPC into the control front, the link to the main process, validation, one UAPI set on " +
    "wireguard-go and a journal line on disk (fsynced; calls in flight share an fsync); host routes " +
    "follow in batches. The baseline runs `wg set … preshared-key /dev/stdin allowed-ips …` once per " +
    "peer in the same namespace. Cold start is from process start to NodeControl answering, with " +
    "all peers and routes on a fresh interface.",
  run: measure,
};

if (import.meta.main) {
  const { renderSection } = await import("./report.ts");
  const figures = await agentBench.run();
  console.log(
    renderSection(
      agentBench.section,
      figures,
      `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
      new Date().toISOString().slice(0, 10),
      agentBench.notes,
    ),
  );
  Deno.exit(0);
}
