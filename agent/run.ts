/**
 * `agent run`: restores the data plane from the state directory (no
 * controller needed), then serves NodeControl through the control front
 * (a child process; see control_front.ts). Stops cleanly on request.
 */
import type { Logger } from "../core/log.ts";
import type { AgentConfig } from "./config.ts";
import { parseInterval } from "./config.ts";
import { ControlProcess } from "./control_process.ts";
import { type AwgKind, createAwgDriver } from "./dataplane/awg.ts";
import { loadIdentity } from "./identity.ts";
import { readMaterial } from "./materials.ts";
import { AgentNode } from "./node.ts";
import { nodeControlCore } from "./service.ts";
import { StateStore } from "./store.ts";

export interface RunningAgent {
  port: number;
  node: AgentNode;
  control: ControlProcess;
  /** Stops serving, ends event streams, takes the data plane down, logs "stopped". */
  close(): Promise<void>;
}

/** Permissions of the control front: network and read, nothing else. */
const FRONT_PERMISSIONS = ["--allow-net", "--allow-read", "--allow-env", "--allow-sys"];
/**
 * The front keeps no state: a small heap makes V8 collect early instead of
 * growing (it reached ~200 MiB after a few thousand calls with the defaults).
 */
const FRONT_V8_FLAGS = "--v8-flags=--max-old-space-size=128,--max-semi-space-size=2";

/** The command that starts the control front (the same agent, hidden subcommand). */
export function frontCommand(cfg: AgentConfig): string[] {
  const main = new URL("./main.ts", import.meta.url);
  const config = new URL("../deno.json", import.meta.url);
  const args = [
    "control-front",
    "--state",
    cfg.state,
    "--listen",
    cfg.listen,
    "--legacy-controller-pins",
    cfg.legacyControllerPins,
    "--log-level",
    cfg.logLevel,
  ];
  if (main.protocol !== "file:") {
    // A compiled agent: the binary itself serves the subcommand.
    return [Deno.execPath(), ...args];
  }
  return [
    Deno.execPath(),
    "run",
    ...FRONT_PERMISSIONS,
    FRONT_V8_FLAGS,
    "--config",
    config.pathname,
    main.pathname,
    ...args,
  ];
}

export async function runAgent(cfg: AgentConfig, log: Logger): Promise<RunningAgent> {
  // Refuse to start without a usable identity, before touching the data plane.
  await readMaterial(cfg.state);
  const store = new StateStore(cfg.state);
  await store.open();
  const identity = await loadIdentity(store);
  const driver = await createAwgDriver(cfg.dataplane as AwgKind | "auto", {
    log,
    runtimeDir: `${cfg.state}/run`,
  });
  const [portMin, portMax] = cfg.endpointPorts.split("-").map(Number);
  const node = new AgentNode(
    {
      interface: cfg.interface,
      awgPort: Number(cfg.awgPort),
      mtu: Number(cfg.mtu),
      xray: cfg.xray,
      xrayApiPort: Number(cfg.xrayApiPort),
      egressInterface: cfg.egressInterface || undefined,
      diversity: cfg.endpointIps
        ? { ips: cfg.endpointIps.split(",").map((s) => s.trim()).filter(Boolean), portMin, portMax }
        : undefined,
      pollIntervalMs: parseInterval(cfg.pollInterval),
    },
    identity,
    driver,
    store,
    log,
  );
  await node.start();
  const control = new ControlProcess({
    argv: frontCommand(cfg),
    core: nodeControlCore(node, log),
    hub: node.hub,
    log,
  });
  let port: number;
  try {
    port = await control.start();
  } catch (e) {
    await node.stop();
    throw e;
  }
  log.info("NodeControl listening", {
    code: "listening",
    port,
    awg_public_key: identity.awgPublicKey,
    reality_public_key: identity.realityPublicKey,
  });
  return {
    port,
    node,
    control,
    async close() {
      // node-shutdown events first, then the streams end, then the data plane goes.
      await node.observer.stop();
      await control.stop();
      await node.stop();
      log.info("stopped", { code: "stopped" });
    },
  };
}
