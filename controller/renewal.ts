/**
 * Certificate renewal before expiry (a third of a leaf's life left, see
 * core/pki/renewal.ts), checked at start and then on an interval:
 *
 * - nodes and remote relays onboarded over SSH get a new certificate for
 *   the key they already hold, through the onboarding engine in renewal
 *   mode (connect with the controller's key, gen-csr, sign, upload, wait
 *   until the host presents the new certificate). The agent re-reads its
 *   certificate files while running, so a node renews without a restart and
 *   its data plane never stops; a relay is restarted (its clients
 *   reconnect).
 * - the controller's own service certificates are re-issued by
 *   `issueServiceCert` and handed to the running controller (`reload`,
 *   serve.ts): the embedded relay's listener, the gRPC server and the relay
 *   tunnels switch to it while running, calls in progress go on. Only a
 *   certificate nothing running took up (no `reload`, or no holder) waits
 *   for the next start, and the log says so (code restart-to-renew).
 *
 * One host that cannot be reached does not stop the others; its failure is
 * in the log with the onboarding step and the command that retries it.
 */
import type { Logger } from "../core/log.ts";
import { parseCertificate, renewalDue, serialOf } from "../core/pki/mod.ts";
import { describeError } from "./onboarding/errors.ts";
import { type NodeOnboarding, onboardNode } from "./onboarding/node.ts";
import { onboardRelay, type RelayOnboarding } from "./onboarding/relay.ts";
import { Nodes } from "./service/nodes.ts";
import { Relays } from "./service/relays.ts";
import { Service } from "./service/service.ts";
import { issueServiceCert, type ServiceCertName, type ServiceCertReload } from "./service_certs.ts";
import type { ControllerState } from "./state.ts";
import { statement } from "./db/sqlite.ts";

/** The renewal check's default interval: twice a day. */
export const RENEWAL_INTERVAL_MS = 12 * 3600_000;

export const RENEWAL_ACTOR = "system:renewal";

export interface RenewalOutcome {
  kind: "node" | "relay" | "controller";
  name: string;
  ok: boolean;
  /** New certificate serial when renewed. */
  serial?: string;
  /** Error code and message when not. */
  code?: string;
  message?: string;
}

export interface RenewalOptions {
  now?: () => Date;
  log: Logger;
  /** Extra request fields per node (tests: where the agent runs, how it is reached). */
  nodeRequest?(name: string): Partial<NodeOnboarding>;
  relayRequest?(host: string): Partial<RelayOnboarding>;
  /** Takes a renewed controller certificate into use while running (serve.ts). */
  reload?: ServiceCertReload;
}

const due = (pem: string | null, now: Date): boolean => {
  if (pem === null) return false;
  try {
    return renewalDue(parseCertificate(pem), now);
  } catch {
    return true; // unreadable: a new one is the fix
  }
};

/** Renews every certificate that is due; returns one outcome per renewal tried. */
export async function renewDueCertificates(
  state: ControllerState,
  opts: RenewalOptions,
): Promise<RenewalOutcome[]> {
  const now = (opts.now ?? (() => new Date()))();
  const service = new Service(state.db);
  const outcomes: RenewalOutcome[] = [];
  const attempt = async (
    kind: RenewalOutcome["kind"],
    name: string,
    run: () => Promise<string>,
  ) => {
    try {
      const serial = await run();
      outcomes.push({ kind, name, ok: true, serial });
      opts.log.info("certificate renewed", { kind, name, serial });
    } catch (e) {
      const { code, message } = describeError(e);
      outcomes.push({ kind, name, ok: false, code, message });
      opts.log.error("certificate renewal failed; retried at the next check", {
        code,
        kind,
        name,
        error: message,
      });
    }
  };

  for (const node of new Nodes(service).list()) {
    if (node.onboardedAt === null || node.status === "disabled" || !due(node.certPem, now)) {
      continue;
    }
    await attempt("node", node.name, async () => {
      const r = await onboardNode(state, RENEWAL_ACTOR, {
        target: { user: node.sshUser, host: node.host, port: node.sshPort },
        name: node.name,
        credentials: { kind: "key" },
        sudo: node.sshUser !== "root",
        renew: true,
        rerun: `cox nodes add ${node.sshUser}@${node.host}:${node.sshPort} --name ${node.name}`,
        ...opts.nodeRequest?.(node.name),
      });
      return r.serial;
    });
  }
  for (const relay of new Relays(service).list()) {
    if (
      relay.onboardedAt === null || relay.sshUser === null || relay.status === "revoked" ||
      !due(relay.certPem, now)
    ) continue;
    const sshUser = relay.sshUser;
    await attempt("relay", relay.host, async () => {
      const r = await onboardRelay(state, RENEWAL_ACTOR, {
        target: { user: sshUser, host: relay.host, port: relay.sshPort ?? 22 },
        hosts: relay.certHosts,
        credentials: { kind: "key" },
        sudo: sshUser !== "root",
        renew: true,
        ...opts.relayRequest?.(relay.host),
      });
      return r.serial;
    });
  }
  const names: ServiceCertName[] = ["controller-client", "controller-server", "embedded-relay"];
  for (const name of names) {
    const row = statement(state.db, "SELECT cert_pem FROM service_certs WHERE name = ?").get(
      name,
    ) as
      | { cert_pem: string }
      | undefined;
    if (!row || !due(row.cert_pem, now)) continue;
    await attempt("controller", name, async () => {
      // Issued at the real time whatever clock decided it was due (tests move that one).
      const cert = await issueServiceCert(state, name);
      const serial = serialOf(cert.leaf);
      if (await reloaded(opts, name, cert)) {
        opts.log.info("the running controller uses the renewed certificate", {
          code: "cert-reloaded",
          name,
          serial,
        });
      } else {
        opts.log.warn("a controller certificate was renewed; restart the controller to use it", {
          code: "restart-to-renew",
          name,
        });
      }
      return serial;
    });
  }
  return outcomes;
}

/** True when the running controller took `cert` up; a failure is logged (the next start will). */
async function reloaded(
  opts: RenewalOptions,
  name: ServiceCertName,
  cert: Parameters<ServiceCertReload>[1],
): Promise<boolean> {
  if (!opts.reload) return false;
  try {
    return await opts.reload(name, cert);
  } catch (e) {
    opts.log.error("the renewed certificate could not be taken up while running", {
      code: "cert-reload-failed",
      name,
      error: e,
    });
    return false;
  }
}

/**
 * Checks at once and then every `intervalMs` (a check still running is not
 * doubled); returns the function that stops it, which waits for that check.
 */
export function startRenewal(
  state: ControllerState,
  opts: RenewalOptions & { intervalMs?: number },
): () => Promise<void> {
  let running: Promise<unknown> | null = null;
  let stopped = false;
  const tick = () => {
    if (stopped || running) return;
    running = renewDueCertificates(state, opts).catch((e) =>
      opts.log.error("certificate renewal check failed", { code: "renewal", error: e })
    ).finally(() => running = null);
  };
  tick();
  const timer = setInterval(tick, opts.intervalMs ?? RENEWAL_INTERVAL_MS);
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
  };
}
