/**
 * The fleet driver: keeps an outbound mTLS gRPC connection to every node
 * the controller drives and is the NodeCaller the rest of the controller
 * uses (types.ts).
 *
 * - Which nodes: rows of `nodes` with status active or unreachable and a
 *   certificate (cert_pem) from onboarding; pending (not onboarded yet) and
 *   disabled ones are left alone. The table is re-read when its row count
 *   or newest updated_at changes (also when another process, a CLI, wrote
 *   it), when a certificate is revoked, and on `refresh()`.
 * - Whom it trusts: the node must present exactly its pinned certificate
 *   (nodes.cert_pem, compared by DER in the worker), which must chain to the
 *   Fleet CA, carry the node role, match nodes.cert_serial and not be
 *   revoked (verified here before the node is handed to the worker).
 * - Where: `host:control_port`, or through the egress of the relay in
 *   `via_relay` (egress_routes.ts), whose allow-list comes from the table.
 * - Health: GetStatus every poll interval; after `missedPolls` failed polls
 *   in a row the node becomes `unreachable` (nodes.status, an open
 *   `node-unreachable` alert) and is polled with a backoff doubling to a
 *   cap; its first answer makes it `active` again and resolves the alert.
 *   Every write goes through the service layer as `system:fleet`.
 * - The gRPC clients run in a supervised worker process (worker.ts), so that
 *   Deno's HTTP/2 client aborting on a node that goes away cannot take the
 *   controller down.
 */
import { createLogger, type Logger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { formatConnectTarget } from "../../core/connect/mod.ts";
import { type Db, statement } from "../db/sqlite.ts";
import { holdHeapTrim } from "../../relay/host/heap_trim.ts";
import { PolicySource } from "../relay/policy_source.ts";
import type { ControllerTlsIdentity } from "../relay/dial.ts";
import { Revocations } from "../revocation.ts";
import { Service } from "../service/service.ts";
import { serviceCert } from "../service_certs.ts";
import type { ControllerState } from "../state.ts";
import { Alerts } from "./alerts.ts";
import { DEFAULT_EGRESS_PORT, EgressRoutes, type RoutedNode } from "./egress_routes.ts";
import { FleetError } from "./errors.ts";
import { HeapReleaser } from "./heap_release.ts";
import type {
  FleetEvent,
  FleetListener,
  NodeCaller,
  NodeCallOptions,
  NodeHealth,
  NodeMessage,
  NodeMethod,
} from "./types.ts";
import type { WorkerIdentity, WorkerMemory, WorkerNode } from "./wire.ts";
import { type WorkerStats, WorkerSupervisor } from "./worker.ts";

/** The actor of the driver's writes (audit log). */
export const FLEET_ACTOR = "system:fleet";
/** Kind of the alert a node gets when it stops answering. */
export const UNREACHABLE_ALERT = "node-unreachable";
/** Kind of the alert a node gets when its pinned certificate is unusable. */
export const CERTIFICATE_ALERT = "node-certificate";

export interface FleetDriverOptions {
  log?: Logger;
  /** The controller's revocation list: a revoked node certificate is refused. */
  revocations?: Revocations;
  /** Heartbeat (GetStatus) interval per node (default 10 s). */
  pollIntervalMs?: number;
  /** Deadline of one heartbeat (default 5 s). */
  pollTimeoutMs?: number;
  /** Failed polls in a row that make a node unreachable (default 3). */
  missedPolls?: number;
  /** Cap of the backoff between polls of an unreachable node (default 5 min). */
  backoffMaxMs?: number;
  /** Deadline of a call without its own (default 15 s). */
  callTimeoutMs?: number;
  /** How often the node table is checked for changes (default 1 s). */
  tableCheckMs?: number;
}

/** What the driver knows of one node's health. */
export interface NodeHealthStatus {
  health: NodeHealth | "unknown";
  /** Failed polls in a row. */
  missed: number;
  lastSeen: Date | null;
  lastError: string | null;
}

interface NodeRow {
  id: string;
  name: string;
  host: string;
  control_port: number;
  via_relay: string | null;
  status: string;
  cert_pem: string;
  cert_serial: string | null;
  agent_version: string | null;
  observed_revision: number | null;
  relay_host: string | null;
  relay_egress_port: number | null;
}

interface Tracked {
  row: NodeRow;
  health: NodeHealth | "unknown";
  missed: number;
  nextPollAt: number;
  backoffMs: number;
  polling: boolean;
  lastSeen: Date | null;
  lastError: string | null;
}

const NODES_SQL = `SELECT n.id, n.name, n.host, n.control_port, n.via_relay, n.status, n.cert_pem,
    n.cert_serial, n.agent_version, n.observed_revision,
    r.host AS relay_host, r.egress_port AS relay_egress_port
  FROM nodes n LEFT JOIN relays r ON r.id = n.via_relay
  WHERE n.status IN ('active', 'unreachable') AND n.cert_pem IS NOT NULL`;

const CHANGE_SQL = `SELECT
  (SELECT count(*) FROM nodes) || '|' || coalesce((SELECT max(updated_at) FROM nodes), '') || '|' ||
  (SELECT count(*) FROM relays) || '|' || coalesce((SELECT max(updated_at) FROM relays), '')
  AS mark`;

/** Re-read the controller's own client certificate this often (renewal). */
const IDENTITY_CHECK_MS = 10 * 60_000;

export class FleetDriver implements NodeCaller {
  readonly #db: Db;
  readonly #service: Service;
  readonly #alerts: Alerts;
  readonly #log: Logger;
  readonly #revocations: Revocations;
  readonly #worker: WorkerSupervisor;
  readonly #routes: EgressRoutes;
  readonly #listeners = new Set<FleetListener>();
  readonly #nodes = new Map<string, Tracked>();
  /** Nodes left out because their pinned certificate failed verification → why. */
  readonly #refused = new Map<string, string>();
  /** cert_pem + revocation count → verification outcome (null = fine). */
  readonly #verified = new Map<string, string | null>();
  readonly #opts: Required<Omit<FleetDriverOptions, "log" | "revocations">>;
  #identity!: WorkerIdentity & { tls: ControllerTlsIdentity; checkedAt: number };
  #mark = "";
  #reloading: Promise<void> | null = null;
  #again = false;
  #timers: ReturnType<typeof setInterval>[] = [];
  #unsubscribe: (() => void) | null = null;
  #releaseTrim: (() => void) | null = null;
  #heap: HeapReleaser | null = null;
  #stopped = false;

  private constructor(
    private readonly state: ControllerState,
    private readonly options: FleetDriverOptions,
  ) {
    this.#db = state.db;
    this.#service = new Service(state.db);
    this.#alerts = new Alerts(this.#service);
    this.#log = options.log ?? createLogger("fleet");
    this.#revocations = options.revocations ?? new Revocations(state.db, this.#log);
    this.#opts = {
      pollIntervalMs: options.pollIntervalMs ?? 10_000,
      pollTimeoutMs: options.pollTimeoutMs ?? 5_000,
      missedPolls: options.missedPolls ?? 3,
      backoffMaxMs: options.backoffMaxMs ?? 5 * 60_000,
      callTimeoutMs: options.callTimeoutMs ?? 15_000,
      tableCheckMs: options.tableCheckMs ?? 1_000,
    };
    this.#worker = new WorkerSupervisor({
      onEvent: (nodeId, event) =>
        this.#emit({ kind: "node-event", nodeId, event, at: new Date().toISOString() }),
      onWatch: (nodeId, state, reason) =>
        this.#log.debug("WatchEvents " + state, { node: nodeId, reason }),
      onRestart: () => this.#log.info("fleet worker restarted", { code: "fleet-worker-up" }),
    }, this.#log.child({ part: "fleet-worker" }));
    this.#routes = new EgressRoutes(
      () => this.#identity.tls,
      new PolicySource(state.db, this.#revocations),
      this.#log.child({ part: "egress" }),
      this.#revocations,
    );
  }

  /** Starts the driver: its worker, the table watch and the heartbeats. */
  static async start(
    state: ControllerState,
    options: FleetDriverOptions = {},
  ): Promise<FleetDriver> {
    const d = new FleetDriver(state, options);
    await d.#loadIdentity();
    d.#worker.start();
    await d.refresh();
    const tick = Math.max(20, Math.min(1000, Math.floor(d.#opts.pollIntervalMs / 4)));
    d.#timers.push(setInterval(() => d.#heartbeats(), tick));
    d.#timers.push(setInterval(() => d.#checkTable(), d.#opts.tableCheckMs));
    d.#unsubscribe = d.#revocations.subscribe(() => void d.refresh());
    // Relaying a sweep's thousands of calls and answers leaves freed native
    // memory behind in this process too (relay/host/heap_trim.ts).
    d.#releaseTrim = holdHeapTrim(d.#log);
    // ... and a V8 heap grown by the sweep's garbage, which Deno never shrinks (heap_release.ts).
    d.#heap = HeapReleaser.start(d.#log);
    return d;
  }

  /** Registers a listener of node events and health changes; returns the unsubscribe function. */
  subscribe(listener: FleetListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Health of a driven node (undefined: not driven). */
  status(nodeId: string): NodeHealthStatus | undefined {
    const t = this.#nodes.get(nodeId);
    if (!t) return undefined;
    return { health: t.health, missed: t.missed, lastSeen: t.lastSeen, lastError: t.lastError };
  }

  /** The ids of the nodes driven now. */
  nodeIds(): string[] {
    return [...this.#nodes.keys()];
  }

  /** The worker process: starts and crashes so far (the crash rate goes in reports). */
  get workerStats(): Readonly<WorkerStats> {
    return this.#worker.stats;
  }

  /** The gRPC worker's memory (RSS, V8 heap), or null when it does not answer. */
  workerMemory(): Promise<WorkerMemory | null> {
    return this.#worker.memory();
  }

  /** Test hook: makes the gRPC worker abort (the driver restarts it). */
  crashWorker(): void {
    this.#worker.crash();
  }

  async call(
    nodeId: string,
    method: NodeMethod,
    request: NodeMessage,
    opts: NodeCallOptions = {},
  ): Promise<NodeMessage> {
    if (this.#stopped) throw new FleetError("stopped", "the fleet driver is stopped");
    // A sweep's burst, not the heartbeats' steady trickle (one batch a second at 1,000 nodes).
    this.#heap?.busy();
    // A node added a moment ago (another process): look before refusing.
    if (!this.#nodes.has(nodeId) && !this.#refused.has(nodeId) && this.#tableChanged()) {
      await this.refresh();
    }
    const refused = this.#refused.get(nodeId);
    if (refused) throw new FleetError("bad-certificate", refused);
    if (!this.#nodes.has(nodeId)) {
      throw new FleetError(
        "unknown-node",
        `node ${nodeId} is not driven: no such node, or it is pending, disabled or has no certificate`,
      );
    }
    return await this.#worker.call(
      nodeId,
      method,
      request,
      opts.timeoutMs ?? this.#opts.callTimeoutMs,
    );
  }

  /** Re-reads the node table now (also runs on its own when the table changes). */
  refresh(): Promise<void> {
    if (this.#reloading) {
      this.#again = true;
      return this.#reloading;
    }
    this.#reloading = (async () => {
      do {
        this.#again = false;
        try {
          await this.#reload();
        } catch (e) {
          this.#log.error("cannot read the node table", { code: "fleet-reload", error: e });
        }
      } while (this.#again && !this.#stopped);
    })().finally(() => this.#reloading = null);
    return this.#reloading;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#unsubscribe?.();
    this.#releaseTrim?.();
    this.#heap?.stop();
    await this.#reloading;
    await this.#worker.stop();
    await this.#routes.close();
  }

  #emit(e: FleetEvent): void {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        this.#log.error("fleet listener failed", { code: "fleet-listener", error: err });
      }
    }
  }

  async #loadIdentity(): Promise<void> {
    const cert = await serviceCert(this.state, "controller-client");
    const cas = this.state.pki.cas;
    const caPem = pki.certPem(cas.root.cert) + pki.certPem(cas.fleet.cert);
    if (this.#identity?.chainPem === cert.chainPem) {
      this.#identity.checkedAt = Date.now();
      return;
    }
    this.#identity = {
      chainPem: cert.chainPem,
      keyPem: cert.keyPem,
      caPem,
      checkedAt: Date.now(),
      tls: {
        certPem: cert.chainPem,
        keyPem: cert.keyPem,
        caPem,
        trust: this.state.pki.trust,
        revoked: this.#revocations.list,
      },
    };
    this.#worker.setIdentity({ chainPem: cert.chainPem, keyPem: cert.keyPem, caPem });
  }

  /** True when the nodes or relays table changed since the last reload. */
  #tableChanged(): boolean {
    return (statement(this.#db, CHANGE_SQL).get() as { mark: string }).mark !== this.#mark;
  }

  #checkTable(): void {
    if (this.#stopped) return;
    try {
      const identityDue = Date.now() - this.#identity.checkedAt > IDENTITY_CHECK_MS;
      if (this.#tableChanged() || identityDue) void this.refresh();
    } catch (e) {
      this.#log.error("cannot read the node table", { code: "fleet-reload", error: e });
    }
  }

  /** Why the pinned certificate is unusable, or null when it is fine. */
  async #verifyPin(row: NodeRow): Promise<{ der: Uint8Array; problem: string | null }> {
    let leaf: pki.X509Certificate;
    try {
      leaf = pki.parseCertificate(row.cert_pem);
    } catch (e) {
      return { der: new Uint8Array(), problem: `unreadable certificate: ${(e as Error).message}` };
    }
    const der = pki.certDer(leaf);
    const key = `${row.cert_pem}|${this.#revocations.list.size}|${row.cert_serial}`;
    if (!this.#verified.has(key)) {
      let problem: string | null = null;
      try {
        const v = await this.state.pki.trust.verify(der, {
          expect: "node",
          usage: "serverAuth",
          revoked: this.#revocations.list,
        });
        if (
          row.cert_serial !== null && pki.RevocationList.normalize(row.cert_serial) !== v.serial
        ) {
          problem = `its certificate's serial ${v.serial} is not the recorded ${row.cert_serial}`;
        }
      } catch (e) {
        problem = (e as Error).message;
      }
      if (this.#verified.size > 10_000) this.#verified.clear();
      this.#verified.set(key, problem);
    }
    return { der, problem: this.#verified.get(key) ?? null };
  }

  async #reload(): Promise<void> {
    if (Date.now() - (this.#identity?.checkedAt ?? 0) > IDENTITY_CHECK_MS) {
      await this.#loadIdentity();
    }
    const { mark } = statement(this.#db, CHANGE_SQL).get() as { mark: string };
    this.#mark = mark;
    const rows = statement(this.#db, NODES_SQL).all() as unknown as NodeRow[];
    const pins = new Map<string, Uint8Array>();
    const refusedNow = new Map<string, string>();
    for (const row of rows) {
      const { der, problem } = await this.#verifyPin(row);
      if (problem) refusedNow.set(row.id, `node ${row.name}: ${problem}; re-onboard it`);
      else pins.set(row.id, der);
    }
    if (this.#stopped) return;
    for (const [id, why] of refusedNow) {
      if (this.#refused.get(id) === why) continue;
      this.#log.error("node certificate refused: the node is not driven", {
        code: "node-certificate",
        node: id,
        reason: why,
      });
      this.#write(() =>
        this.#alerts.raise(
          FLEET_ACTOR,
          { kind: CERTIFICATE_ALERT, targetType: "node", targetId: id },
          "critical",
          why,
        )
      );
    }
    this.#refused.clear();
    for (const [id, why] of refusedNow) this.#refused.set(id, why);

    const driven = rows.filter((r) => pins.has(r.id));
    const routed: RoutedNode[] = driven.filter((r) => r.via_relay !== null && r.relay_host)
      .map((r) => ({
        id: r.id,
        host: r.host,
        port: Number(r.control_port),
        relay: {
          id: r.via_relay!,
          host: r.relay_host!,
          port: Number(r.relay_egress_port ?? DEFAULT_EGRESS_PORT),
        },
      }));
    const local = this.#routes.sync(routed);
    const workerNodes: WorkerNode[] = [];
    const seen = new Set<string>();
    for (const r of driven) {
      if (r.via_relay !== null && !local.has(r.id)) continue; // its relay row is gone
      const target = local.get(r.id) ?? formatConnectTarget(r.host, Number(r.control_port));
      const pinDer = pins.get(r.id)!.toBase64();
      workerNodes.push({
        id: r.id,
        target,
        pinDer,
        key: `${target}|${r.cert_serial}|${pinDer.length}`,
      });
      seen.add(r.id);
      const t = this.#nodes.get(r.id);
      if (t) {
        t.row = r;
        continue;
      }
      this.#nodes.set(r.id, {
        row: r,
        // A node that was unreachable before a restart stays so until it answers.
        health: r.status === "unreachable" ? "unreachable" : "unknown",
        missed: 0,
        // Spread the first polls over one interval.
        nextPollAt: Date.now() + Math.floor(Math.random() * this.#opts.pollIntervalMs / 2),
        backoffMs: this.#opts.pollIntervalMs,
        polling: false,
        lastSeen: null,
        lastError: null,
      });
    }
    for (const id of [...this.#nodes.keys()]) {
      if (!seen.has(id)) this.#nodes.delete(id);
    }
    this.#worker.setNodes(workerNodes);
    this.#resolveStaleAlerts();
  }

  /**
   * Resolves the driver's alerts whose condition is gone: the node was
   * removed or disabled, or its certificate is usable again. Looking at the
   * table (not at what this run saw) also covers changes made while the
   * controller was down.
   */
  #resolveStaleAlerts(): void {
    const open = statement(
      this.#db,
      `SELECT kind, target_id FROM alerts WHERE resolved_at IS NULL AND target_type = 'node'
       AND kind IN (?, ?)`,
    ).all(UNREACHABLE_ALERT, CERTIFICATE_ALERT) as { kind: string; target_id: string }[];
    for (const a of open) {
      const stale = a.kind === UNREACHABLE_ALERT
        ? !this.#nodes.has(a.target_id)
        : !this.#refused.has(a.target_id);
      if (stale) this.#resolveAlert(a.target_id, a.kind);
    }
  }

  #heartbeats(): void {
    if (this.#stopped) return;
    const now = Date.now();
    for (const t of this.#nodes.values()) {
      if (t.polling || t.nextPollAt > now) continue;
      t.polling = true;
      void this.#poll(t).finally(() => t.polling = false);
    }
  }

  async #poll(t: Tracked): Promise<void> {
    const id = t.row.id;
    let status: NodeMessage;
    try {
      status = await this.#worker.call(id, "GetStatus", {}, this.#opts.pollTimeoutMs);
    } catch (e) {
      if (this.#stopped || this.#nodes.get(id) !== t) return;
      const err = e as FleetError;
      t.lastError = `${err.code}: ${err.message}`;
      if (err.code === "worker-restarted" || err.code === "stopped") {
        // Our worker's death, not the node's: ask again soon, count nothing.
        t.nextPollAt = Date.now() + Math.min(this.#opts.pollIntervalMs, 1000);
        return;
      }
      t.missed++;
      if (t.health === "unreachable") {
        t.backoffMs = Math.min(t.backoffMs * 2, this.#opts.backoffMaxMs);
        t.nextPollAt = Date.now() + t.backoffMs;
        return;
      }
      t.nextPollAt = Date.now() + this.#opts.pollIntervalMs;
      if (t.missed >= this.#opts.missedPolls) this.#becameUnreachable(t, t.lastError);
      return;
    }
    if (this.#stopped || this.#nodes.get(id) !== t) return;
    t.missed = 0;
    t.lastError = null;
    t.lastSeen = new Date();
    t.backoffMs = this.#opts.pollIntervalMs;
    t.nextPollAt = Date.now() + this.#opts.pollIntervalMs;
    this.#observed(t, status);
  }

  #becameUnreachable(t: Tracked, reason: string): void {
    t.health = "unreachable";
    t.backoffMs = Math.min(this.#opts.pollIntervalMs * 2, this.#opts.backoffMaxMs);
    t.nextPollAt = Date.now() + t.backoffMs;
    const id = t.row.id;
    const message = `node ${t.row.name} did not answer ${t.missed} polls in a row (last: ${
      reason.slice(0, 300)
    })`;
    this.#log.warn("node unreachable", { code: UNREACHABLE_ALERT, node: id, reason });
    this.#write(() =>
      this.#service.transaction(() => {
        this.#service.mutate(
          { actor: FLEET_ACTOR, action: "node.unreachable", target: { type: "node", id } },
          (tx) => {
            if (tx.current?.status === "active") tx.update({ status: "unreachable" });
          },
        );
        this.#alerts.raise(
          FLEET_ACTOR,
          { kind: UNREACHABLE_ALERT, targetType: "node", targetId: id },
          "critical",
          message,
        );
      })
    );
    this.#emit({
      kind: "health",
      nodeId: id,
      health: "unreachable",
      at: new Date().toISOString(),
      reason: message,
    });
  }

  /** A poll answered: records what changed and, after an outage, the recovery. */
  #observed(t: Tracked, status: NodeMessage): void {
    const id = t.row.id;
    const recovered = t.health !== "healthy";
    const wasUnreachable = t.health === "unreachable";
    t.health = "healthy";
    const version = typeof status.agent_version === "string" ? status.agent_version : null;
    const revision = Number(status.applied_revision ?? 0);
    const changed = version !== t.row.agent_version ||
      (Number.isSafeInteger(revision) && revision !== t.row.observed_revision);
    if (recovered || changed) {
      this.#write(() =>
        this.#service.transaction(() => {
          this.#service.mutate(
            { actor: FLEET_ACTOR, action: "node.observe", target: { type: "node", id } },
            (tx) => {
              if (!tx.current) return;
              const changes: Record<string, string | number | null> = {
                last_seen_at: tx.now,
                agent_version: version,
                observed_revision: Number.isSafeInteger(revision) ? revision : null,
              };
              if (tx.current.status === "unreachable") changes.status = "active";
              tx.update(changes);
            },
          );
          this.#alerts.resolve(FLEET_ACTOR, {
            kind: UNREACHABLE_ALERT,
            targetType: "node",
            targetId: id,
          });
        })
      );
      t.row = { ...t.row, agent_version: version, observed_revision: revision };
    }
    if (recovered) {
      if (wasUnreachable) {
        this.#log.info("node reachable again", { code: "node-healthy", node: id });
      }
      this.#emit({ kind: "health", nodeId: id, health: "healthy", at: new Date().toISOString() });
    }
  }

  #resolveAlert(nodeId: string, kind: string): void {
    this.#write(() =>
      this.#alerts.resolve(FLEET_ACTOR, { kind, targetType: "node", targetId: nodeId })
    );
  }

  /** A database write of the driver; a failure is logged, the driver goes on. */
  #write(fn: () => unknown): void {
    try {
      fn();
    } catch (e) {
      this.#log.error("fleet state not written", { code: "fleet-write", error: e });
    }
  }
}

/** Starts a FleetDriver on the controller's state (see FleetDriver). */
export function startFleetDriver(
  state: ControllerState,
  options: FleetDriverOptions = {},
): Promise<FleetDriver> {
  return FleetDriver.start(state, options);
}
