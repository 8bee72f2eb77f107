/**
 * The always-on reconcile loop (DESIGN.md §4): on an interval, and at once
 * for the nodes a change touches (`nudge`), it reads the desired state of
 * the fleet from the database, observes each node (GetStatus, ListPeers)
 * through the fleet driver's NodeCaller, and runs the steps diff.ts finds.
 *
 * A pass observes every node first (bounded concurrency), so edges between
 * nodes are built with both ends' keys, then heals each node on its own:
 * a node that fails (unreachable, refusing a call) is counted and logged,
 * its remaining steps wait for the next pass, and the others go on. Every
 * heal is a reconcile_heals row written through the service layer, hence
 * an audit entry (writes.ts). Passes never overlap; nudges arriving during
 * a pass are merged into the next one. The first pass after `start()`
 * covers the whole fleet (a controller start reconciles everything).
 *
 * Endpoint confirmations: each SetNetworkConfig answer is recorded
 * (endpoint_confirmations.ts) and profiles advertise only what nodes
 * confirmed, so when a pass records a change the profiles are resealed in
 * the background (`resealProfiles`), one reseal per pass however many
 * nodes changed, and one more at most while a reseal runs (coalesced_run.ts).
 * A failed reseal is retried with growing delays (coalesced_run.ts
 * RETRY_MS) until one succeeds or the delays are used up. A reseal that
 * went through every device (resealed, or failed after its retries)
 * records the newest confirmation it covered; a start's first sweep
 * reseals when a confirmation is newer (a reseal cut short by a stop or a
 * crash), so a device no reseal can fix does not reseal the fleet at
 * every start.
 */
import type { Logger } from "../../core/log.ts";
import type { NodeCaller, NodeMessage, NodeMethod } from "../fleet/types.ts";
import type { Actor, Service } from "../service/service.ts";
import { buildDesired, type DesiredNode, type Identity, readFleetRows } from "./desired.ts";
import {
  agentSlackOf,
  agentStartOf,
  diffNode,
  type DiffOptions,
  emptyMemory,
  type NodeMemory,
} from "./diff.ts";
import { AuditFollower } from "./changes.ts";
import { ReconcileError } from "./errors.ts";
import { type ObservedNode, parseAwgPeers, parseStatus, parseXrayPeers } from "./observed.ts";
import type { Sealer } from "./psk.ts";
import { AWG, XRAY } from "./requests.ts";
import { describe, type Done, runStep, type StepContext } from "./steps.ts";
import { allocateLinks, recordHeal, recordResealedThrough } from "./writes.ts";
import { CoalescedRun, type FailureNext } from "./coalesced_run.ts";
import { latestConfirmation, resealPendingAtStart } from "./endpoint_confirmations.ts";
import { statement } from "../db/sqlite.ts";

/** The settings row (key) that sets the interval when no option does; a JSON number of ms. */
export const INTERVAL_SETTING = "reconcile_interval_ms";
export const DEFAULT_INTERVAL_MS = 30_000;
const MIN_INTERVAL_MS = 200;
const MAX_INTERVAL_MS = 24 * 3600_000;

export interface ReconcilerOptions {
  service: Service;
  caller: NodeCaller;
  /** Opens sealed preshared keys (the state keystore). */
  sealer: Sealer;
  log?: Logger;
  /** Sweep interval; default: the `reconcile_interval_ms` setting, else 30 s. */
  intervalMs?: number;
  /** Nodes observed or healed at the same time (default 32). */
  concurrency?: number;
  /** Deadline of one call (default 10 s; RestartService gets 3×). */
  callTimeoutMs?: number;
  actor?: Actor;
  diff?: DiffOptions;
  /**
   * How often the audit log is followed for changes to nodes, peers, paths
   * and devices by any writer (changes.ts), each nudging the nodes it
   * touches; default 1 s, 0 = off (then only `nudge` and the sweeps).
   */
  followAuditMs?: number;
  /**
   * Told a node's AmneziaWG public key when first seen after a start and
   * whenever it changes (accounts records it: profiles list it).
   */
  onNodeKey?: (nodeId: string, awgPublicKey: string) => void;
  /**
   * Reseals every device profile (accounts' `reprovisionAll`); run in the
   * background when nodes confirm other endpoint ranges, aborted by
   * `stop()` through the signal. Absent: profiles are not resealed here.
   */
  resealProfiles?: (signal: AbortSignal) => Promise<unknown>;
  /** Delays between retries of a failed reseal (default coalesced_run.ts RETRY_MS). */
  resealRetryMs?: readonly number[];
}

/** One pass. */
export interface PassStats {
  kind: "sweep" | "nudge";
  pass: number;
  startedAt: string;
  durationMs: number;
  nodes: number;
  /** Nodes with at least one heal. */
  healedNodes: number;
  /** Steps that changed something on a node. */
  heals: number;
  /** Nodes that failed (observe or heal). */
  errors: number;
}

export interface ReconcileStats {
  running: boolean;
  intervalMs: number;
  passes: number;
  sweeps: number;
  heals: number;
  errors: number;
  lastSweep: PassStats | null;
  lastPass: PassStats | null;
}

const noLog: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return noLog;
  },
};

/** Runs `fn` over `items`, at most `limit` at a time. */
async function eachLimited<T>(
  items: T[],
  limit: number,
  fn: (t: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export class Reconciler {
  readonly #o:
    & Required<
      Omit<
        ReconcilerOptions,
        "intervalMs" | "diff" | "onNodeKey" | "resealProfiles" | "resealRetryMs"
      >
    >
    & Pick<ReconcilerOptions, "onNodeKey">
    & { diff: DiffOptions };
  /** The profile reseal endpoint confirmations ask for; null without `resealProfiles`. */
  readonly #reseals: CoalescedRun | null;
  /** Set until the first sweep after a start looked for profiles older than a confirmation. */
  #checkStaleProfiles = true;
  readonly #ctx: StepContext;
  #follower: AuditFollower | null = null;
  #followTimer: ReturnType<typeof setInterval> | null = null;
  readonly #intervalOpt: number | undefined;
  readonly #memory = new Map<string, NodeMemory>();
  readonly #identities = new Map<string, Identity>();
  readonly #observed = new Map<string, ObservedNode>();
  readonly #errors = new Map<string, string>();
  /** Told of every observation (the dashboard's traffic samples). */
  readonly #observers = new Set<(nodeId: string, observed: ObservedNode) => void>();
  #stats: ReconcileStats;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #started = false;
  #pump: Promise<void> | null = null;
  #wantSweep = false;
  #wantNodes = new Set<string>();
  #idle: (() => void)[] = [];
  #intervalQuery: ReturnType<Service["db"]["prepare"]> | null = null;
  #badInterval: string | null = null;
  /** The pass running or last run: passes never overlap. */
  #lock: Promise<unknown> = Promise.resolve();

  constructor(opts: ReconcilerOptions) {
    if (opts.intervalMs !== undefined) checkInterval(opts.intervalMs, "intervalMs");
    this.#intervalOpt = opts.intervalMs;
    this.#o = {
      service: opts.service,
      caller: opts.caller,
      sealer: opts.sealer,
      log: opts.log ?? noLog,
      concurrency: Math.max(1, opts.concurrency ?? 32),
      callTimeoutMs: opts.callTimeoutMs ?? 10_000,
      actor: opts.actor ?? "system:reconcile",
      diff: opts.diff ?? {},
      followAuditMs: opts.followAuditMs ?? 1000,
      onNodeKey: opts.onNodeKey,
    };
    const reseal = opts.resealProfiles;
    this.#reseals = reseal
      ? new CoalescedRun(
        (signal) => this.#resealRun(reseal, signal),
        (e, next) => this.#resealFailed(e, next),
        opts.resealRetryMs,
      )
      : null;
    this.#ctx = {
      service: this.#o.service,
      sealer: this.#o.sealer,
      actor: this.#o.actor,
      call: (id, method, req, slow) => this.#call(id, method, req, slow),
    };
    this.#stats = {
      running: false,
      intervalMs: this.intervalMs,
      passes: 0,
      sweeps: 0,
      heals: 0,
      errors: 0,
      lastSweep: null,
      lastPass: null,
    };
  }

  /** The sweep interval now: the option, else the setting, else 30 s. */
  get intervalMs(): number {
    if (this.#intervalOpt !== undefined) return this.#intervalOpt;
    this.#intervalQuery ??= statement(
      this.#o.service.db,
      "SELECT value FROM settings WHERE key = ?",
    );
    const row = this.#intervalQuery.get(INTERVAL_SETTING) as { value: string } | undefined;
    if (!row) return DEFAULT_INTERVAL_MS;
    try {
      return checkInterval(JSON.parse(row.value), `setting ${INTERVAL_SETTING}`);
    } catch (e) {
      if (this.#badInterval !== row.value) {
        this.#badInterval = row.value; // said once per bad value
        this.#o.log.warn("reconcile interval setting ignored", {
          code: (e as ReconcileError).code ?? "bad-interval",
          error: (e as Error).message,
        });
      }
      return DEFAULT_INTERVAL_MS;
    }
  }

  /** Starts the loop: a sweep of the whole fleet now, then one per interval. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#stats.running = true;
    this.#wantSweep = true;
    this.#checkStaleProfiles = true;
    this.#kick();
    if (this.#o.followAuditMs > 0) {
      // From the log's end now: the first sweep covers everything before.
      this.#follower = new AuditFollower(this.#o.service.db, this.#o.actor);
      this.#followTimer = setInterval(() => this.#follow(), this.#o.followAuditMs);
    }
  }

  /** Stops the loop and waits for a pass and a profile reseal in progress to end. */
  async stop(): Promise<void> {
    this.#started = false;
    this.#stats.running = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#followTimer !== null) clearInterval(this.#followTimer);
    this.#followTimer = null;
    this.#follower = null;
    this.#wantSweep = false;
    this.#wantNodes.clear();
    await this.#pump;
    await this.#reseals?.stop();
  }

  /**
   * Reconciles these nodes as soon as possible (after a change to them, their
   * peers, paths or devices). Calls during a pass are merged into the next.
   */
  nudge(nodeIds: Iterable<string>): void {
    for (const id of nodeIds) this.#wantNodes.add(id);
    if (this.#started && this.#wantNodes.size > 0) this.#kick();
  }

  /** A sweep of the whole fleet as soon as possible. */
  nudgeAll(): void {
    this.#wantSweep = true;
    if (this.#started) this.#kick();
  }

  #follow(): void {
    try {
      const c = this.#follower?.poll();
      if (!c) return;
      if (c.all) this.nudgeAll();
      else if (c.nodes.size > 0) this.nudge(c.nodes);
    } catch (e) {
      this.#o.log.warn("cannot follow the audit log", { code: "audit-follow-failed", error: e });
    }
  }

  /** Resolves when no pass is running or wanted (tests, shutdown). */
  idle(): Promise<void> {
    if (this.#pump === null) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  /** Resolves when no profile reseal asked for by endpoint confirmations runs or waits (tests). */
  resealIdle(): Promise<void> {
    return this.#reseals?.idle() ?? Promise.resolve();
  }

  /** Whether a failed profile reseal waits for its retry (tests, status). */
  get resealRetrying(): boolean {
    return this.#reseals?.retrying ?? false;
  }

  stats(): ReconcileStats {
    return { ...this.#stats, intervalMs: this.intervalMs };
  }

  /** What a node reported at its last observation. */
  observed(nodeId: string): ObservedNode | undefined {
    return this.#observed.get(nodeId);
  }

  /** Calls `fn` after every observation of a node; returns the unsubscribe function. */
  onObserved(fn: (nodeId: string, observed: ObservedNode) => void): () => void {
    this.#observers.add(fn);
    return () => void this.#observers.delete(fn);
  }

  /**
   * A node's AmneziaWG public key as it last reported it (profiles need it;
   * accounts' `nodeKeys`); undefined until the node was observed.
   */
  nodeKey(nodeId: string): string | undefined {
    return this.#identities.get(nodeId)?.awgPublicKey;
  }

  /** The last error of a node in a pass (cleared when a pass succeeds on it). */
  lastError(nodeId: string): string | undefined {
    return this.#errors.get(nodeId);
  }

  /** One pass over the whole fleet now (also without start(); tests, benchmarks). */
  sweep(): Promise<PassStats> {
    return this.#pass(null);
  }

  /** One pass over these nodes now. */
  reconcileNodes(nodeIds: Iterable<string>): Promise<PassStats> {
    return this.#pass(new Set(nodeIds));
  }

  #kick(): void {
    if (this.#pump !== null) return;
    this.#pump = (async () => {
      try {
        while (this.#started && (this.#wantSweep || this.#wantNodes.size > 0)) {
          if (this.#wantSweep) {
            this.#wantSweep = false;
            this.#wantNodes.clear();
            await this.#pass(null).catch((e) => this.#passFailed(e));
            this.#arm();
          } else {
            const ids = new Set(this.#wantNodes);
            this.#wantNodes.clear();
            await this.#pass(ids).catch((e) => this.#passFailed(e));
          }
        }
      } finally {
        this.#pump = null;
        for (const r of this.#idle.splice(0)) r();
      }
    })();
  }

  #arm(): void {
    if (!this.#started) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#wantSweep = true;
      this.#kick();
    }, this.intervalMs);
  }

  #passFailed(e: unknown): void {
    this.#stats.errors++;
    this.#o.log.error("reconcile pass failed", {
      code: (e as ReconcileError).code ?? "pass-failed",
      error: e,
    });
  }

  #pass(only: Set<string> | null): Promise<PassStats> {
    const run = this.#lock.then(() => this.#passNow(only));
    this.#lock = run.catch(() => {});
    return run;
  }

  async #passNow(only: Set<string> | null): Promise<PassStats> {
    const t0 = performance.now();
    const pass = ++this.#stats.passes;
    const stats: PassStats = {
      kind: only === null ? "sweep" : "nudge",
      pass,
      startedAt: new Date().toISOString(),
      durationMs: 0,
      nodes: 0,
      healedNodes: 0,
      heals: 0,
      errors: 0,
    };
    let rows = readFleetRows(this.#o.service.db);
    if (await allocateLinks(this.#o.service, this.#o.sealer, this.#o.actor, rows) > 0) {
      rows = readFleetRows(this.#o.service.db);
    }
    const driven = buildDesired(rows, this.#identities);
    const targets = [...driven.keys()].filter((id) => only === null || only.has(id));
    stats.nodes = targets.length;
    for (const id of this.#memory.keys()) if (!driven.has(id)) this.#forget(id);

    const failed = new Set<string>();
    const confirmedChanged: string[] = [];
    await eachLimited(targets, this.#o.concurrency, async (id) => {
      try {
        await this.#observe(id);
      } catch (e) {
        failed.add(id);
        this.#nodeFailed(id, "observe", e);
      }
    });
    // Identities may have arrived: edges now have both ends.
    const desired = buildDesired(rows, this.#identities);
    await eachLimited(targets.filter((id) => !failed.has(id)), this.#o.concurrency, async (id) => {
      const d = desired.get(id);
      const o = this.#observed.get(id);
      if (!d || !o) return;
      const done: Done[] = [];
      try {
        await this.#heal(d, o, done);
        if (this.#errors.delete(id)) {
          this.#o.log.info("node reconciled again", { code: "reconcile-node-ok", node: id });
        }
      } catch (e) {
        failed.add(id);
        this.#nodeFailed(id, "heal", e);
      }
      if (done.some((x) => x.rangesChanged)) confirmedChanged.push(id);
      const heals = done.filter((x) => x.heal);
      if (heals.length > 0) {
        stats.heals += heals.length;
        stats.healedNodes++;
        this.#record(d, pass, heals);
      }
    });
    this.#resealFor(confirmedChanged, only === null);
    stats.errors = failed.size;
    stats.durationMs = performance.now() - t0;
    this.#stats.heals += stats.heals;
    this.#stats.errors += stats.errors;
    this.#stats.lastPass = stats;
    if (only === null) {
      this.#stats.sweeps++;
      this.#stats.lastSweep = stats;
    }
    this.#o.log.debug("reconcile pass done", { code: "reconcile-pass", ...stats });
    return stats;
  }

  /** The newest confirmation the reseal running now covers (read as it began). */
  #resealThrough: string | null = null;

  /** One reseal; when it succeeds, records the newest confirmation it covered. */
  async #resealRun(
    reseal: (signal: AbortSignal) => Promise<unknown>,
    signal: AbortSignal,
  ): Promise<void> {
    // Read first: a confirmation recorded during the run asks for another run.
    this.#resealThrough = latestConfirmation(this.#o.service.db);
    await reseal(signal);
    this.#markResealed();
  }

  #resealFailed(e: unknown, next: FailureNext): void {
    const code = (e as ReconcileError).code ?? "confirmation-reseal-failed";
    this.#o.log.error("profiles not resealed after endpoint confirmations", {
      code,
      error: e,
      ...(next.retryInMs === null ? { retry: "none left" } : { retryInMs: next.retryInMs }),
    });
    // Every device was tried (accounts throw `reseal-failed` after the last) and the
    // retries are used up: what still fails a reseal at the next start would not fix.
    if (next.retryInMs === null && code === "reseal-failed") this.#markResealed();
  }

  #markResealed(): void {
    const through = this.#resealThrough;
    if (through === null) return;
    try {
      recordResealedThrough(this.#o.service, this.#o.actor, through);
    } catch (e) {
      this.#o.log.error("cannot record the reseal of confirmations", {
        code: "confirmation-reseal-record-failed",
        error: e,
      });
    }
  }

  /** Asks for one profile reseal when nodes confirmed other ranges (or, once, for stale profiles). */
  #resealFor(nodeIds: string[], sweep: boolean): void {
    if (this.#reseals === null) return;
    let stale = false;
    if (sweep && this.#checkStaleProfiles) {
      this.#checkStaleProfiles = false;
      try {
        stale = nodeIds.length === 0 && resealPendingAtStart(this.#o.service.db);
      } catch (e) {
        this.#o.log.error("cannot compare profiles with confirmations", {
          code: "confirmation-check-failed",
          error: e,
        });
      }
    }
    if (nodeIds.length === 0 && !stale) return;
    this.#o.log.info("resealing profiles for the endpoint ranges nodes confirmed", {
      code: "confirmation-reseal",
      nodes: nodeIds,
      ...(stale ? { reason: "a confirmation newer than the last finished reseal" } : {}),
    });
    this.#reseals.request();
  }

  #forget(id: string): void {
    this.#memory.delete(id);
    this.#identities.delete(id);
    this.#observed.delete(id);
    this.#errors.delete(id);
  }

  #nodeFailed(nodeId: string, phase: string, e: unknown): void {
    const msg = (e as Error)?.message ?? String(e);
    const repeat = this.#errors.get(nodeId) === msg;
    this.#errors.set(nodeId, msg);
    // Once per kind of failure, not once per pass (an unreachable node fails every pass).
    this.#o.log[repeat ? "debug" : "warn"]("reconcile of a node failed", {
      code: (e as ReconcileError).code ?? "reconcile-node-failed",
      node: nodeId,
      phase,
      error: msg.slice(0, 500),
    });
  }

  #record(d: DesiredNode, pass: number, heals: Done[]): void {
    const actions = heals.map((h) => ({ kind: h.step.kind, ...describe(h.step), ...h.detail }));
    try {
      recordHeal(this.#o.service, this.#o.actor, d.nodeId, pass, actions);
    } catch (e) {
      this.#o.log.error("heal not recorded", {
        code: "heal-record-failed",
        node: d.nodeId,
        error: e,
      });
    }
    this.#o.log.info("node healed", {
      code: "reconcile-heal",
      node: d.nodeId,
      name: d.name,
      actions,
    });
  }

  #call(nodeId: string, method: NodeMethod, req: NodeMessage, slow = false): Promise<NodeMessage> {
    const timeoutMs = this.#o.callTimeoutMs * (slow ? 3 : 1);
    return this.#o.caller.call(nodeId, method, req, { timeoutMs });
  }

  async #observe(id: string): Promise<void> {
    const sent = Date.now();
    const status = parseStatus(await this.#call(id, "GetStatus", {}));
    const at = Date.now(); // when the uptime was current (the agent-start estimate uses it)
    const callMs = at - sent;
    const awgPeers = parseAwgPeers(await this.#call(id, "ListPeers", { protocol: AWG }));
    const xrayPeers = status.xray.configured
      ? parseXrayPeers(await this.#call(id, "ListPeers", { protocol: XRAY }))
      : null;
    if (status.identity) {
      const before = this.#identities.get(id)?.awgPublicKey;
      this.#identities.set(id, status.identity);
      const key = status.identity.awgPublicKey;
      if (key && key !== before) {
        try {
          this.#o.onNodeKey?.(id, key);
        } catch (e) {
          this.#o.log.error("node key not recorded", { code: "node-key", node: id, error: e });
        }
      }
    }
    const observed = { at, callMs, status, awgPeers, xrayPeers };
    this.#observed.set(id, observed);
    for (const fn of this.#observers) {
      try {
        fn(id, observed);
      } catch (e) {
        this.#o.log.error("observer failed", { code: "reconcile-observer", node: id, error: e });
      }
    }
  }

  async #heal(d: DesiredNode, o: ObservedNode, done: Done[]): Promise<void> {
    const mem = this.#memory.get(d.nodeId) ?? emptyMemory();
    this.#memory.set(d.nodeId, mem);
    for (const p of d.problems) {
      this.#o.log.warn("desired state has a problem", {
        code: "desired-invalid",
        node: d.nodeId,
        problem: p,
      });
    }
    const steps = diffNode(d, o, mem, this.#o.diff);
    mem.agentStart = agentStartOf(o);
    mem.agentStartSlack = agentSlackOf(o);
    mem.uptime = o.status.uptimeSeconds;
    for (const step of steps) done.push(await runStep(this.#ctx, d, o, mem, step));
  }
}

function checkInterval(v: unknown, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < MIN_INTERVAL_MS || v > MAX_INTERVAL_MS) {
    throw new ReconcileError(
      "bad-interval",
      `${field}: ${
        JSON.stringify(v)
      } is not a whole number of ms between ${MIN_INTERVAL_MS} and ${MAX_INTERVAL_MS}`,
    );
  }
  return v;
}
