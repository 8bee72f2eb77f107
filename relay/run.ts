/**
 * `relay run`: the remote relay. Reads its key and certificates once, then
 * serves the client listener, the reverse-tunnel listener and (unless off)
 * the egress listener. It holds no state beyond those files.
 */
import type { Logger } from "../core/log.ts";
import { timeLimitsOf } from "../core/conn_limits.ts";
import { rateLimitedLogger } from "../core/log_limit.ts";
import {
  certPem,
  importKeyPair,
  parseCertificate,
  parseCertificates,
  PkiError,
  TrustStore,
  type X509Certificate,
} from "../core/pki/mod.ts";
import { RelayPolicy } from "../core/relay_policy.ts";
import { splitListen } from "../core/settings.ts";
import type { RelayConfig } from "./config.ts";
import { fingerprintSet } from "../core/pki/fingerprint.ts";
import type { GuardedListener } from "./conn_guard.ts";
import { planFromSettings } from "./conn_limits.ts";
import { listenForController } from "./controller_listener.ts";
import { softNofile } from "./host/fd_limit.ts";
import { serveEgress } from "./egress.ts";
import { startRelay } from "./relay.ts";
import { TunnelSlot } from "./tunnel.ts";
import { nodeToWeb } from "./host/web_node.ts";

export const RELAY_FILES = {
  key: "relay.key",
  cert: "relay.crt",
  root: "ca.crt",
  fleetCa: "fleet-ca.crt",
  deviceCa: "device-ca.crt",
} as const;

export interface RunningRemoteRelay {
  ports: { client: number; tunnel: number; egress: number | null };
  /** The guarded listeners (client, tunnel, egress): counters and limits. */
  listeners: GuardedListener[];
  /** Resolves when a listener died and could not be rebuilt: the process should exit non-zero. */
  failed: Promise<Error>;
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
  await checkKeyMatches(keyPem, leaf, cfg.dir);
  const certChain = certPem(leaf) + certPem(trust.anchors.fleetCa);
  const fleetCaPem = certPem(trust.anchors.fleetCa);

  const pins = fingerprintSet(cfg.legacyControllerPins);
  if (pins.size > 0) {
    log.warn("legacy controller pins are on: these unmarked certificates count as the controller", {
      pins: [...pins],
    });
  }
  const staticAllow = cfg.egressAllow.split(",").map((s) => s.trim()).filter(Boolean);
  const policy = new RelayPolicy(staticAllow);
  const slot = new TunnelSlot(policy, log);

  // One connection plan for the process: the tunnel and egress ports get
  // small pools of their own, the client port the rest.
  const nofile = softNofile();
  const plan = planFromSettings(cfg, cfg.egressAddr === "off" ? 1 : 2, nofile);
  const limits = timeLimitsOf(cfg);
  const noisy = rateLimitedLogger(log);
  let fatal!: (e: Error) => void;
  const failed = new Promise<Error>((resolve) => (fatal = resolve));
  const shared = { limits, noisy, onFatal: (e: Error) => fatal(e) };
  if (nofile === null && cfg.maxConnections === "auto") {
    log.warn("cannot read the open-files limit (needs prlimit); connection caps assume 1024", {
      code: "fd-limit-unknown",
      hint: "set --max-connections (PHAROS_RELAY_MAX_CONNECTIONS) to 5/8 of LimitNOFILE",
    });
  }
  log.info("connection limits", {
    code: "conn-limits",
    fd_limit: nofile,
    max_connections: plan.caps.total,
    max_connections_per_source: plan.caps.perSource,
    controller_port_pool: plan.pool,
    handshake_ms: limits.handshakeMs,
    preface_ms: limits.prefaceMs,
    idle_ms: limits.idleMs,
  });

  const opened: { close(): Promise<void> }[] = [];
  try {
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
      connections: { ...shared, budget: plan.publicBudget() },
    });
    opened.push(client);
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
      name: "tunnel",
      listen: splitListen(cfg.tunnelAddr),
      listenSetting: "--tunnel-addr",
      onController: (socket, who) => slot.attach(nodeToWeb(socket), { serial: who.serial }),
      connections: { ...shared, budget: plan.controllerOnlyBudget() },
    });
    opened.push(tunnel);
    log.info("tunnel listener ready", { port: tunnel.port });
    const egress = cfg.egressAddr === "off" ? null : await listenForController({
      ...controllerOnly,
      name: "egress",
      listen: splitListen(cfg.egressAddr),
      listenSetting: "--egress-addr (or off)",
      onController: (socket) => void serveEgress(nodeToWeb(socket), { policy, log }),
      connections: { ...shared, budget: plan.controllerOnlyBudget() },
    });
    if (egress) {
      opened.push(egress);
      log.info("egress listener ready", { port: egress.port, static_allow: staticAllow.length });
    }
    return {
      ports: { client: client.port, tunnel: tunnel.port, egress: egress?.port ?? null },
      listeners: [client.listener, tunnel.listener, ...(egress ? [egress.listener] : [])],
      failed,
      async close() {
        await client.close();
        await tunnel.close();
        await egress?.close();
        await slot.close();
        noisy.close();
        log.info("stopped");
      },
    };
  } catch (e) {
    for (const l of opened) await l.close();
    noisy.close();
    throw e;
  }
}

/** relay.key must be the private half of relay.crt's key, or TLS would fail at every handshake. */
async function checkKeyMatches(keyPem: string, leaf: X509Certificate, dir: string): Promise<void> {
  let spki: Uint8Array;
  try {
    const pair = await importKeyPair(keyPem);
    spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  } catch (e) {
    throw new PkiError(
      "unsupported-key",
      `${dir}/${RELAY_FILES.key} is not a usable private key (${
        (e as Error).message
      }); run "relay gen-csr --dir ${dir}" and have the new CSR signed`,
    );
  }
  const certSpki = new Uint8Array(leaf.publicKey.rawData);
  if (spki.length !== certSpki.length || spki.some((b, i) => b !== certSpki[i])) {
    throw new PkiError(
      "key-mismatch",
      `${dir}/${RELAY_FILES.key} does not belong to ${dir}/${RELAY_FILES.cert}: install the certificate issued for this key's CSR`,
    );
  }
}
