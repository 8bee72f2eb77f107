/**
 * The controller's own leaf certificates (its client identity towards nodes
 * and relays, its gRPC server identity, the embedded relay's identity):
 * issued from the Fleet CA on first use, kept sealed in the database.
 * Renewal before expiry is the renewal check's alone (renewal.ts: it re-issues
 * and tells every running holder); a read here never renews a certificate
 * that is still valid, so no reader swaps it behind the holders' back. A
 * read does issue one when there is none, when the stored one has expired
 * (the controller was off past its end) or when the embedded relay's hosts
 * changed — all at a start, before any holder exists.
 */
import * as pki from "../core/pki/mod.ts";
import { type Db, statement } from "./db/sqlite.ts";
import type { ControllerState } from "./state.ts";

export type ServiceCertName = "controller-client" | "controller-server" | "embedded-relay";

export interface ServiceCert {
  /** Leaf followed by the Fleet CA, PEM. */
  chainPem: string;
  keyPem: string;
  leaf: pki.X509Certificate;
}

interface Row {
  cert_pem: string;
  key_sealed: Uint8Array;
}

function profileFor(name: ServiceCertName, relayHosts: string[]): pki.LeafProfile {
  switch (name) {
    case "controller-client":
      return { kind: "controller-client" };
    case "controller-server":
      return { kind: "controller-server" };
    case "embedded-relay":
      return { kind: "relay", hosts: relayHosts };
  }
}

function sanHosts(cert: pki.X509Certificate): string[] {
  const san = cert.getExtension(pki.SubjectAlternativeNameExtension);
  return (san?.names.items ?? []).filter((n) => n.type === "dns" || n.type === "ip").map((n) =>
    n.value
  ).sort();
}

/**
 * Returns the named certificate as stored; issues one when there is none,
 * when the stored one is no longer valid at `now` (the controller was off
 * past its expiry) or, for the embedded relay, when its hosts changed.
 */
export async function serviceCert(
  state: Pick<ControllerState, "db" | "keystore" | "pki">,
  name: ServiceCertName,
  relayHosts: string[] = ["localhost", "127.0.0.1"],
  now: Date = new Date(),
): Promise<ServiceCert> {
  const fleetPem = pki.certPem(state.pki.cas.fleet.cert);
  const row = statement(state.db, "SELECT cert_pem, key_sealed FROM service_certs WHERE name = ?")
    .get(
      name,
    ) as
      | Row
      | undefined;
  if (row) {
    const leaf = pki.parseCertificate(row.cert_pem);
    const hostsChanged = name === "embedded-relay" &&
      sanHosts(leaf).join() !== relayHosts.map((h) => pki.hostSan(h).value).sort().join();
    const valid = leaf.notBefore <= now && now < leaf.notAfter;
    if (valid && !hostsChanged) {
      const der = await state.keystore.open(row.key_sealed, `service:${name}`);
      const keyPem = pki.derToPem(der, "PRIVATE KEY");
      return { chainPem: row.cert_pem + fleetPem, keyPem, leaf };
    }
  }
  return await issueServiceCert(state, name, relayHosts, now);
}

/**
 * Issues the named certificate anew (a new key), for the same names as the
 * current one unless `relayHosts` says otherwise; the renewal check's path.
 */
export async function issueServiceCert(
  state: Pick<ControllerState, "db" | "keystore" | "pki">,
  name: ServiceCertName,
  relayHosts?: string[],
  now: Date = new Date(),
): Promise<ServiceCert> {
  const fleetPem = pki.certPem(state.pki.cas.fleet.cert);
  if (relayHosts === undefined) {
    const row = statement(state.db, "SELECT cert_pem FROM service_certs WHERE name = ?").get(
      name,
    ) as
      | { cert_pem: string }
      | undefined;
    relayHosts = row ? sanHosts(pki.parseCertificate(row.cert_pem)) : ["localhost", "127.0.0.1"];
  }
  const keys = await pki.generateKeyPair("P-256");
  const leaf = await pki.issueLeaf(state.pki.cas, keys.publicKey, profileFor(name, relayHosts), {
    now,
  });
  const der = await pki.exportPrivateKeyDer(keys.privateKey);
  store(state.db, name, leaf, await state.keystore.seal(der, `service:${name}`));
  return { chainPem: pki.certPem(leaf) + fleetPem, keyPem: pki.derToPem(der, "PRIVATE KEY"), leaf };
}

function store(db: Db, name: ServiceCertName, leaf: pki.X509Certificate, sealed: Uint8Array): void {
  statement(
    db,
    `INSERT INTO service_certs (name, cert_pem, key_sealed, serial, not_after, updated_at)
     VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT(name) DO UPDATE SET cert_pem = excluded.cert_pem, key_sealed = excluded.key_sealed,
       serial = excluded.serial, not_after = excluded.not_after, version = version + 1,
       updated_at = excluded.updated_at`,
  ).run(
    name,
    pki.certPem(leaf),
    sealed,
    pki.serialOf(leaf),
    leaf.notAfter.toISOString(),
    new Date().toISOString(),
  );
}

/**
 * Takes a renewed service certificate into use in the running controller;
 * true when it did (nothing left for a restart).
 */
export type ServiceCertReload = (name: ServiceCertName, cert: ServiceCert) => Promise<boolean>;

/**
 * The running parts that hold a service certificate, by name: the renewal
 * check tells it each renewal (the one "certificate renewed" path), and
 * every holder switches to the new certificate while running.
 */
export class ServiceCertHolders {
  #holders = new Map<ServiceCertName, Set<(cert: ServiceCert) => void | Promise<void>>>();

  /** Registers a part that holds `name`; returns the function that unregisters it. */
  hold(name: ServiceCertName, apply: (cert: ServiceCert) => void | Promise<void>): () => void {
    let set = this.#holders.get(name);
    if (!set) this.#holders.set(name, set = new Set());
    set.add(apply);
    return () => set.delete(apply);
  }

  /**
   * Hands `cert` to every holder of `name`; true when at least one holds it
   * and none failed (a failure is thrown after the others were told).
   */
  readonly renewed: ServiceCertReload = async (name, cert) => {
    const holders = [...(this.#holders.get(name) ?? [])];
    const results = await Promise.allSettled(holders.map(async (apply) => await apply(cert)));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return holders.length > 0;
  };
}
