/**
 * The admin API's FleetView (controller/api/fleet_view.ts) over the running
 * controller: health from the fleet driver, the last observation from the
 * reconcile loop, and a bounded in-memory ring of each node's traffic
 * totals, taken at every observation (so the sparkline has a history even
 * when nobody had the page open). Observations that change what a page
 * shows are told to `onChange` listeners, batched: at most one call a
 * second for the whole fleet (the admin API puts it on the change feed).
 */
import type { Db } from "./db/sqlite.ts";
import { Coalescer } from "./api/feed.ts";
import type { FleetView, ObservedNodeJson, TrafficSample } from "./api/fleet_view.ts";
import type { NodeHealthStatus } from "./fleet/driver.ts";
import type { ObservedNode } from "./reconcile/observed.ts";

/** The fleet driver as seen here (FleetDriver). */
export interface HealthSource {
  status(nodeId: string): NodeHealthStatus | undefined;
}

/** The reconcile loop as seen here (Reconciler). */
export interface ObservationSource {
  observed(nodeId: string): ObservedNode | undefined;
  lastError(nodeId: string): string | undefined;
  onObserved(fn: (nodeId: string, observed: ObservedNode) => void): () => void;
}

export interface FleetViewOptions {
  /** Samples kept per node (default 60: 30 min at the default 30 s sweep). */
  samplesPerNode?: number;
  /** Nodes with samples kept; the longest unobserved is dropped beyond (default 10 000). */
  maxNodes?: number;
  /** Shortest time between two `onChange` calls (default 1000 ms). */
  changeIntervalMs?: number;
}

const iso = (ms: number | null) => ms === null ? null : new Date(ms).toISOString();

export class ControllerFleetView implements FleetView {
  readonly #samples = new Map<string, TrafficSample[]>();
  readonly #per: number;
  readonly #maxNodes: number;
  readonly #detach: () => void;
  readonly #devices: ReturnType<Db["prepare"]>;
  /** What each node's last observation showed, to tell a change from a repeat. */
  readonly #shown = new Map<string, string>();
  readonly #listeners = new Set<(nodeIds: string[]) => void>();
  readonly #changes: Coalescer;

  constructor(
    db: Db,
    private readonly fleet: HealthSource,
    private readonly reconcile: ObservationSource,
    opts: FleetViewOptions = {},
  ) {
    this.#per = Math.max(2, opts.samplesPerNode ?? 60);
    this.#maxNodes = Math.max(1, opts.maxNodes ?? 10_000);
    this.#devices = db.prepare(
      "SELECT public_key, device_id FROM node_peers WHERE node_id = ? AND device_id IS NOT NULL",
    );
    this.#changes = new Coalescer(
      (ids) => this.#tell(ids),
      Math.max(1, opts.changeIntervalMs ?? 1000),
    );
    this.#detach = reconcile.onObserved((id, o) => this.#record(id, o));
  }

  /** Stops taking samples and telling changes. */
  close(): void {
    this.#detach();
    this.#changes.close();
  }

  /** Hears the ids of nodes whose observed state changed (batched, at most once per interval). */
  onChange(fn: (nodeIds: string[]) => void): () => void {
    this.#listeners.add(fn);
    return () => void this.#listeners.delete(fn);
  }

  #tell(ids: string[]): void {
    for (const fn of [...this.#listeners]) {
      try {
        fn(ids);
      } catch {
        this.#listeners.delete(fn); // a broken listener must not stop the observations
      }
    }
  }

  observed(nodeId: string): ObservedNodeJson | null {
    const h = this.fleet.status(nodeId);
    const o = this.reconcile.observed(nodeId);
    if (!h && !o) return null;
    const devices = new Map(
      (this.#devices.all(nodeId) as { public_key: string; device_id: string }[])
        .map((r) => [r.public_key, r.device_id]),
    );
    const st = o?.status;
    return {
      health: h?.health ?? "unknown",
      missed_polls: h?.missed ?? 0,
      last_seen: h?.lastSeen?.toISOString() ?? iso(o?.at ?? null),
      last_error: h?.lastError ?? this.reconcile.lastError(nodeId) ?? null,
      observed_at: iso(o?.at ?? null),
      agent_version: st?.agentVersion || null,
      uptime_seconds: st ? st.uptimeSeconds : null,
      dataplane: st
        ? {
          running: st.awg.running,
          kind: "amneziawg",
          peer_count: st.awg.peerCount,
          detail: st.awg.detail,
        }
        : null,
      applied_revision: st ? st.appliedRevision : null,
      peers: o
        ? [...o.awgPeers.values()].map((p) => {
          const device = devices.get(p.publicKey);
          return {
            public_key: p.publicKey,
            ...(device ? { device_id: device } : {}),
            last_handshake: iso(p.traffic?.lastHandshake ?? null),
            rx_bytes: p.traffic?.rxBytes ?? 0,
            tx_bytes: p.traffic?.txBytes ?? 0,
          };
        })
        : [],
      samples: [...(this.#samples.get(nodeId) ?? [])],
    };
  }

  #record(nodeId: string, o: ObservedNode): void {
    let rx = 0;
    let tx = 0;
    let handshakes = 0;
    for (const p of o.awgPeers.values()) {
      rx += p.traffic?.rxBytes ?? 0;
      tx += p.traffic?.txBytes ?? 0;
      handshakes += p.traffic?.lastHandshake ?? 0;
    }
    // Traffic, handshakes, peers and the data plane: what the node page shows.
    const st = o.status;
    const shown = [
      rx,
      tx,
      handshakes,
      o.awgPeers.size,
      st?.awg.running,
      st?.awg.peerCount,
      st?.awg.detail,
      st?.appliedRevision,
      st?.agentVersion,
    ].join("|");
    if (this.#shown.get(nodeId) !== shown) {
      this.#shown.set(nodeId, shown);
      this.#changes.add(nodeId);
    }
    let ring = this.#samples.get(nodeId);
    if (ring) this.#samples.delete(nodeId); // re-inserted last: Map order is least recently observed first
    else ring = [];
    ring.push({ t: new Date(o.at).toISOString(), rx, tx });
    if (ring.length > this.#per) ring.splice(0, ring.length - this.#per);
    this.#samples.set(nodeId, ring);
    while (this.#samples.size > this.#maxNodes) {
      const oldest = this.#samples.keys().next().value!;
      this.#samples.delete(oldest);
      this.#shown.delete(oldest);
    }
  }
}
