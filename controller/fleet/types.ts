/**
 * What the rest of the controller sees of the fleet driver: a way to call
 * one node's NodeControl service, and the node events and health changes
 * the driver observes. The reconcile loop, accounts provisioning and the
 * API depend on these types only, never on how the driver reaches a node
 * (directly, through a relay's egress, in a child process).
 */

/** NodeControl methods (proto/pharos/node/v1/node.proto), unary ones. */
export type NodeMethod =
  | "GetStatus"
  | "GetMetrics"
  | "PushConfig"
  | "AddPeer"
  | "RemovePeer"
  | "ListPeers"
  | "RestartService"
  | "SetNetworkConfig"
  | "ConfigureInnerLink"
  | "RemoveInnerLink";

/**
 * Request and response messages as plain objects with the proto's
 * snake_case field names (proto-loader `keepCase`), 64-bit integers as
 * decimal strings and `bytes` as Uint8Array.
 */
export type NodeMessage = Record<string, unknown>;

export interface NodeCallOptions {
  /** Deadline of the call (default chosen by the driver). */
  timeoutMs?: number;
}

/** Calls one node. Rejects with a PharosError whose code names the failure. */
export interface NodeCaller {
  call(
    nodeId: string,
    method: NodeMethod,
    request: NodeMessage,
    opts?: NodeCallOptions,
  ): Promise<NodeMessage>;
}

/** Health of a node as the driver sees it. */
export type NodeHealth = "healthy" | "unreachable";

/** Something the driver observed on a node. */
export type FleetEvent =
  | { kind: "health"; nodeId: string; health: NodeHealth; at: string; reason?: string }
  /** An Event of WatchEvents, as received (snake_case fields). */
  | { kind: "node-event"; nodeId: string; event: NodeMessage; at: string };

export type FleetListener = (event: FleetEvent) => void;
