/**
 * What the admin API shows of a node's live state besides its row: the
 * fleet driver's health and the reconcile loop's last observation, with a
 * short history of traffic totals. controller/fleet_view.ts implements it;
 * without one (tests, a controller without a fleet) `observed` is null.
 */

/** One peer as the node last reported it. */
export interface ObservedPeerJson {
  public_key: string;
  /** The device this peer belongs to, when the controller provisioned it for one. */
  device_id?: string;
  last_handshake: string | null;
  rx_bytes: number;
  tx_bytes: number;
}

/** Traffic totals of a node (all peers, bytes since the data plane started) at one observation. */
export interface TrafficSample {
  t: string;
  rx: number;
  tx: number;
}

export interface ObservedNodeJson {
  health: "healthy" | "unreachable" | "unknown";
  missed_polls: number;
  last_seen: string | null;
  last_error: string | null;
  /** When the reconcile loop last observed the node; null = not yet. */
  observed_at: string | null;
  agent_version: string | null;
  uptime_seconds: number | null;
  dataplane: { running: boolean; kind?: string; peer_count?: number; detail?: string } | null;
  applied_revision: number | null;
  peers: ObservedPeerJson[];
  /** Oldest first, bounded. */
  samples: TrafficSample[];
}

export interface FleetView {
  /** The node's observed state; null when neither the driver nor reconcile has seen it. */
  observed(nodeId: string): ObservedNodeJson | null;
  /** Hears ids of nodes whose observed state changed (batched); the API publishes `observed`. */
  onChange?(fn: (nodeIds: string[]) => void): () => void;
}
