/**
 * Brings a planned tunnel up on this machine with the agent's data-plane
 * drivers (amneziawg-go / wireguard-go / kernel): the interface with the
 * device's own key and the node as its one peer, the tunnel address, and
 * routes. A full-tunnel profile (0.0.0.0/0) is routed as 0.0.0.0/1 +
 * 128.0.0.0/1 with a host route to the node's endpoint over the path it
 * had before, so the tunnel's own packets never enter the tunnel.
 * IPv6 default routes are not installed (IPv4 only, said in the log).
 */
import type { TunnelPlan } from "../../core/client/mod.ts";
import { canonicalCidr, checkLinuxInterface } from "../../core/dataplane/mod.ts";
import type { Logger } from "../../core/log.ts";
import { type AwgKind, createAwgDriver } from "../dataplane/awg.ts";
import { mustRun, runCommand } from "../exec.ts";

export interface TunnelUpOptions {
  iface: string;
  dataplane: AwgKind | "auto";
  /** 0600 scratch files of the kernel drivers. */
  runtimeDir: string;
  log: Logger;
}

export interface RunningTunnel {
  down(): Promise<void>;
}

/** `via`/`dev` of the route the kernel uses for `ip` now. */
async function currentPath(ip: string): Promise<string[]> {
  const out = await mustRun(["ip", "-o", "route", "get", ip]);
  const via = / via (\S+)/.exec(out)?.[1];
  const dev = / dev (\S+)/.exec(out)?.[1];
  if (!dev) throw new Error(`no route to the node ${ip}: ${out.trim()}`);
  return via ? ["via", via, "dev", dev] : ["dev", dev];
}

export async function bringUp(plan: TunnelPlan, o: TunnelUpOptions): Promise<RunningTunnel> {
  const name = checkLinuxInterface(o.iface, "interface");
  const driver = await createAwgDriver(o.dataplane, { log: o.log, runtimeDir: o.runtimeDir });
  const device = driver.device(name);
  const endpointIp = plan.peer.endpoint.host;
  const bypass = canonicalCidr(`${endpointIp}/${endpointIp.includes(":") ? 128 : 32}`, "endpoint");
  const routes = plan.peer.allowedIps.flatMap((c) =>
    c === "0.0.0.0/0" ? ["0.0.0.0/1", "128.0.0.0/1"] : c.includes(":") ? [] : [c]
  );
  if (plan.peer.allowedIps.some((c) => c.includes(":"))) {
    o.log.warn("IPv6 routes of the profile are not installed by this client", {
      code: "ipv6-not-routed",
    });
  }
  const via = await currentPath(endpointIp);
  await device.up(plan.mtu);
  try {
    await device.sync({
      privateKey: plan.privateKey,
      // The drivers want a fixed port; any free-looking one of the dynamic range does.
      listenPort: 49152 + Math.floor(Math.random() * 16000),
      obfuscation: driver.effectiveObfuscation(plan.obfuscation),
      peers: [{
        publicKey: plan.peer.publicKey,
        presharedKey: plan.peer.presharedKey,
        allowedIps: plan.peer.allowedIps,
        endpoint: `${
          endpointIp.includes(":") ? `[${endpointIp}]` : endpointIp
        }:${plan.peer.endpoint.port}`,
        persistentKeepalive: plan.peer.persistentKeepalive,
      }],
    });
    await mustRun([
      "ip",
      "address",
      "replace",
      canonicalCidr(plan.address, "address", { allowHostBits: true }),
      "dev",
      name,
    ]);
    if (routes.length > 0) await mustRun(["ip", "route", "replace", bypass, ...via]);
    for (const r of routes) {
      await mustRun(["ip", "route", "replace", canonicalCidr(r, "route"), "dev", name]);
    }
  } catch (e) {
    await device.down().catch(() => {});
    throw e;
  }
  return {
    async down() {
      await device.down().catch(() => {});
      await runCommand(["ip", "route", "del", bypass]).catch(() => {});
    },
  };
}
