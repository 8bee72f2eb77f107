/**
 * Where clients reach the embedded relay, from the controller's settings:
 * the first of `relayHosts` and the port of `relayListen` (or the port it
 * actually bound, when the setting asks for any port), for join links.
 */
import { joinHostPort, splitHostPort } from "../../core/profile/mod.ts";
import type { ControllerConfig } from "../config.ts";

export function relayEndpoint(
  cfg: Pick<ControllerConfig, "relayHosts" | "relayListen">,
  boundPort?: number,
): { addr: string; serverName: string } {
  const host = cfg.relayHosts.split(",").map((h) => h.trim()).find((h) => h !== "") ??
    "localhost";
  const listen = cfg.relayListen === "off" ? undefined : splitHostPort(
    cfg.relayListen.startsWith(":") ? `0.0.0.0${cfg.relayListen}` : cfg.relayListen,
  );
  const port = boundPort || listen?.port || 443;
  return { addr: joinHostPort(host, port), serverName: host };
}
