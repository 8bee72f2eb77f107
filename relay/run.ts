/**
 * `relay run`: the remote relay. Reads its key and certificates once, then
 * serves the client listener, the reverse-tunnel listener and (unless off)
 * the egress listener. It holds no state beyond those files.
 */
import type { Logger } from "../core/log.ts";
import {
  certPem,
  parseCertificate,
  parseCertificates,
  PkiError,
  TrustStore,
} from "../core/pki/mod.ts";
import { RelayPolicy } from "../core/relay_policy.ts";
import { splitListen } from "../core/settings.ts";
import { legacyPins, type RelayConfig } from "./config.ts";
import { listenForController } from "./controller_listener.ts";
import { serveEgress } from "./egress.ts";
import { startRelay } from "./relay.ts";
import { TunnelSlot } from "./tunnel.ts";
import { nodeToWeb } from "./web_node.ts";

export const RELAY_FILES = {
  key: "relay.key",
  cert: "relay.crt",
  root: "ca.crt",
  fleetCa: "fleet-ca.crt",
  deviceCa: "device-ca.crt",
} as const;

export interface RunningRemoteRelay {
  ports: { client: number; tunnel: number; egress: number | null };
  /** Closes every listener and the controller tunnel, then logs "stopped". */
  close(): Promise<void>;
}

/** Reads every material file, naming all the missing ones at once. */
async function readMaterial(dir: string): Promise<string[]> {
  const names = Object.values(RELAY_FILES);
  const results = await Promise.allSettled(names.map((f) => Deno.readTextFile(`${dir}/${f}`)));
  const missing = names.filter((_, i) => results[i].status === "rejected");
  if (missing.length > 0) {
    throw new PkiError(
      "empty",
      `cannot read ${
        missing.map((f) => `${dir}/${f}`).join(", ")
      }; run "relay gen-csr --dir ${dir}" and install the certificates the controller issued`,
    );
  }
  return results.map((r) => (r as PromiseFulfilledResult<string>).value);
}

export async function runRelay(cfg: RelayConfig, log: Logger): Promise<RunningRemoteRelay> {
  const [keyPem, certText, rootText, fleetText, deviceText] = await readMaterial(cfg.dir);
  const trust = await TrustStore.create({
    root: parseCertificate(rootText),
    fleetCa: parseCertificate(fleetText),
    deviceCa: parseCertificate(deviceText),
  });
  // Refuse to start with a certificate that is not a valid relay identity.
  const leaf = parseCertificates(certText)[0];
  await trust.verify(leaf, { expect: "relay", usage: "serverAuth" });
  const certChain = certPem(leaf) + certPem(trust.anchors.fleetCa);
  const fleetCaPem = certPem(trust.anchors.fleetCa);

  const pins = legacyPins(cfg.legacyControllerPins);
  if (pins.size > 0) {
    log.warn("legacy controller pins are on: these unmarked certificates count as the controller", {
      pins: [...pins],
    });
  }
  const staticAllow = cfg.egressAllow.split(",").map((s) => s.trim()).filter(Boolean);
  const policy = new RelayPolicy(staticAllow);
  const slot = new TunnelSlot(policy, log);
  const client = await startRelay({
    listen: splitListen(cfg.clientAddr),
    certPem: certChain,
    keyPem,
    caPem: certPem(trust.anchors.root) + fleetCaPem,
    deviceCaPem: certPem(trust.anchors.deviceCa),
    trust,
    revoked: policy.revoked,
    transport: slot,
    legacyControllerPins: pins,
    log,
    listenSetting: "--client-addr",
  });
  const controllerOnly = {
    certPem: certChain,
    keyPem,
    fleetCaPem,
    trust,
    revoked: policy.revoked,
    legacyControllerPins: pins,
    log,
  };
  const tunnel = await listenForController({
    ...controllerOnly,
    listen: splitListen(cfg.tunnelAddr),
    listenSetting: "--tunnel-addr",
    onController: (socket) => slot.attach(nodeToWeb(socket)),
  });
  log.info("tunnel listener ready", { port: tunnel.port });
  const egress = cfg.egressAddr === "off" ? null : await listenForController({
    ...controllerOnly,
    listen: splitListen(cfg.egressAddr),
    listenSetting: "--egress-addr (or off)",
    onController: (socket) => void serveEgress(nodeToWeb(socket), { policy, log }),
  });
  if (egress) {
    log.info("egress listener ready", { port: egress.port, static_allow: staticAllow.length });
  }
  return {
    ports: { client: client.port, tunnel: tunnel.port, egress: egress?.port ?? null },
    async close() {
      await client.close();
      await tunnel.close();
      await egress?.close();
      await slot.close();
      log.info("stopped");
    },
  };
}
