/** Starts the controller: state, PKI, and the loopback dashboard listener. */
import { createLogger } from "../core/log.ts";
import { createApp } from "./api/app.ts";
import { splitListen } from "../core/settings.ts";
import type { ControllerConfig } from "./config.ts";
import { openState } from "./state.ts";

export async function startController(
  cfg: ControllerConfig,
): Promise<{ shutdown(): Promise<void> }> {
  const log = createLogger("controller", { level: cfg.logLevel });
  const state = await openState(cfg.state);
  log.info(state.created ? "created a new certificate authority" : "loaded state", {
    state: cfg.state,
    root_ca_fingerprint: state.pki.rootFingerprint,
  });
  const { hostname, port } = splitListen(cfg.uiListen);
  if (!["127.0.0.1", "::1", "localhost"].includes(hostname)) {
    log.warn("the dashboard listens beyond loopback; put a TLS reverse proxy in front of it", {
      listen: cfg.uiListen,
    });
  }
  const server = Deno.serve({
    hostname,
    port,
    onListen: (addr) => log.info("dashboard listening", { addr: `${addr.hostname}:${addr.port}` }),
  }, createApp(state));
  return {
    async shutdown() {
      await server.shutdown();
      state.close();
      log.info("stopped");
    },
  };
}
