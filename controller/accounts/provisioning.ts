/**
 * Provisioning: every enrolled, active device gets its own peer on every
 * node it may use (its own WireGuard key, its own preshared key, sealed at
 * rest), rows in `node_peers`; and its own profile, regenerated on any
 * change, sealed to the device's X25519 key and signed with the
 * profile-signing key, stored as ciphertext with a higher revision
 * (`sealed_profiles`). The plaintext lives only in memory while sealing.
 *
 * Which nodes a device may use: every node that is not disabled. A node is
 * listed in a profile once its AmneziaWG public key is known (`nodeKeys`).
 * Its endpoints there: the part of its pool the node confirmed it serves
 * (CONTRACTS.md §5.7, controller/reconcile/endpoint_confirmations.ts); with
 * none confirmed (an empty pool, a node not reached yet, an original node),
 * its host at 443.
 */
import { fromBase64, toBase64 } from "../../core/encoding.ts";
import type { Logger } from "../../core/log.ts";
import {
  encodeProfileDocument,
  parseProfileDocument,
  type ProfileDocument,
  type ProfileEntry,
  type ProfileNode,
} from "../../core/profile/mod.ts";
import { encodeSealedBundle, type KeyPair, sealProfile } from "../../core/seal/mod.ts";
import { utf8 } from "../../core/encoding.ts";
import type { Keystore } from "../keystore.ts";
import type { Actor, Service } from "../service/service.ts";
import { AccountError } from "./errors.ts";
import { statement } from "../db/sqlite.ts";
import { advertisedRanges } from "../reconcile/endpoint_confirmations.ts";

/** How long a sealed profile is valid; a fetch past half of it reseals. */
export const PROFILE_TTL_MS = 30 * 24 * 3600_000;
const RESEAL_TRIES = 5;
const ALL_TRAFFIC = ["0.0.0.0/0", "::/0"];
/** MTU of a two-hop cascade profile: 1420 − 80 (CONTRACTS §4.6). */
const CASCADE_MTU = 1340;

const errorText = (e: unknown) => String((e as Error)?.message ?? e).slice(0, 300);

/** The keystore label of a node peer's preshared key (the reconcile loop opens it). */
export const pskLabel = (peerId: string) => `node_peer:${peerId}`;
/** The keystore label of a controller-generated device WireGuard private key. */
export const wgKeyLabel = (deviceId: string) => `device-wg:${deviceId}`;

/** A node's AmneziaWG public key (base64), when the controller knows it. */
export type NodeKeys = (nodeId: string) => string | undefined;

export interface ProvisioningOptions {
  service: Service;
  keystore: Keystore;
  signing: KeyPair;
  actor: Actor;
  fleetId: string;
  nodeKeys?: NodeKeys;
  onPeersChanged?: (nodeIds: string[]) => void;
  now: () => Date;
  log?: Logger;
}

interface DeviceRow {
  id: string;
  user_id: string;
  status: string;
  encryption_public_key: Uint8Array | null;
  wg_public_key: string | null;
  wg_private_sealed: Uint8Array | null;
  tunnel_ip: string | null;
}

interface NodeRow {
  id: string;
  name: string;
  host: string;
  region: string | null;
  endpoints: string;
  /** What the node confirmed of endpoint ranges (stored JSON); null: never answered. */
  confirmed_ranges: string | null;
  obfuscation: string;
}

interface PeerRow {
  id: string;
  node_id: string;
  psk_sealed: Uint8Array | null;
  path_id: string | null;
}

interface PathRow {
  id: string;
  entry_node_id: string;
  exit_node_id: string;
  mtu: number | null;
}

/**
 * Reads a node's AmneziaWG key from the `nodes` table when a column for it
 * exists (the fleet driver records what GetStatus reports).
 */
export function nodeKeysFromTable(service: Service): NodeKeys {
  const cols = (statement(service.db, "PRAGMA table_info(nodes)").all() as { name: string }[])
    .map((c) => c.name);
  const col = ["awg_public_key", "wg_public_key"].find((c) => cols.includes(c));
  if (!col) return () => undefined;
  const q = statement(service.db, `SELECT ${col} AS k FROM nodes WHERE id = ?`);
  return (id) => ((q.get(id) as { k: string | null } | undefined)?.k ?? undefined) || undefined;
}

/** One device's outcome in a reseal of many profiles (`resealMany`). */
export interface ResealOutcome {
  deviceId: string;
  userId: string;
  /** Devices finished so far (resealed, failed or gone meanwhile) and how many were planned. */
  done: number;
  total: number;
  /** Why this device's profile could not be resealed. */
  error?: string;
}

export class Provisioning {
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #nodeKeys: NodeKeys;

  constructor(private readonly o: ProvisioningOptions) {
    this.#nodeKeys = o.nodeKeys ?? nodeKeysFromTable(o.service);
  }

  get #db() {
    return this.o.service.db;
  }

  /**
   * Gives each active device of `userId` a peer on every usable node, then
   * reseals the profile of each; tells `onPeersChanged` which nodes gained
   * or lost peers. Serialised per user.
   */
  sync(userId: string): Promise<void> {
    return this.#serial(userId, () => this.#sync(userId));
  }

  /**
   * Reseals the profile of every active device of `userId` (null: of every
   * user), user by user under the same lock as `sync` (peers first). A
   * device that fails does not stop the others: each outcome goes to
   * `onDevice` as it happens; the audit log names `actor` (who asked).
   * Returns how many devices were planned and how many failed. An aborted
   * `signal` stops it between two devices (throwing its reason).
   */
  async resealMany(
    userId: string | null,
    onDevice: (o: ResealOutcome) => void = () => {},
    actor: Actor = this.o.actor,
    signal?: AbortSignal,
  ): Promise<{ total: number; failed: number }> {
    // Devices without a user (their user removed) have no profile to seal: not planned.
    const planned = statement(
      this.#db,
      `SELECT id, user_id FROM devices WHERE status = 'active' AND user_id IS NOT NULL
         AND wg_public_key IS NOT NULL AND encryption_public_key IS NOT NULL
         ${userId === null ? "" : "AND user_id = ?"}
       ORDER BY user_id, id`,
    ).all(...(userId === null ? [] : [userId])) as { id: string; user_id: string }[];
    const byUser = new Map<string, string[]>();
    for (const d of planned) {
      const mine = byUser.get(d.user_id);
      if (mine) mine.push(d.id);
      else byUser.set(d.user_id, [d.id]);
    }
    // Users whose devices only need peers (no sealing key) are brought up to date too.
    const users = userId !== null ? [userId] : (statement(
      this.#db,
      "SELECT DISTINCT user_id FROM devices WHERE user_id IS NOT NULL AND status = 'active' ORDER BY user_id",
    ).all() as { user_id: string }[]).map((r) => r.user_id);
    const total = planned.length;
    let done = 0;
    let failed = 0;
    const report = (deviceId: string, user: string, error?: string) => {
      done++;
      if (error !== undefined) failed++;
      try {
        onDevice({
          deviceId,
          userId: user,
          done,
          total,
          ...(error !== undefined ? { error } : {}),
        });
      } catch (e) {
        this.o.log?.error("reseal progress listener failed", { code: "reseal-listener", error: e });
      }
    };
    for (const user of users) {
      signal?.throwIfAborted();
      const mine = byUser.get(user) ?? [];
      await this.#serial(user, async () => {
        const { devices, nodes } = this.#peersOf(user);
        try {
          this.notify(await this.#ensurePeers(devices, nodes, actor));
        } catch (e) {
          for (const id of mine) report(id, user, `peers: ${errorText(e)}`);
          return;
        }
        const current = new Map(devices.map((d) => [d.id, d]));
        for (const id of mine) {
          signal?.throwIfAborted();
          const device = current.get(id);
          try {
            // Revoked or disabled since the plan was made: nothing to seal for it.
            if (device?.encryption_public_key) await this.#reseal(device, nodes, actor);
            report(id, user);
          } catch (e) {
            report(id, user, errorText(e));
          }
        }
      });
    }
    return { total, failed };
  }

  /** Runs `fn` after every earlier sync or reseal of `userId` has finished. */
  #serial(userId: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.#locks.get(userId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.#locks.set(userId, next);
    next.finally(() => {
      if (this.#locks.get(userId) === next) this.#locks.delete(userId);
    }).catch(() => {});
    return next;
  }

  /** Removes every peer of a device (revocation); returns the nodes touched. */
  removePeers(deviceId: string): string[] {
    const rows = statement(this.#db, "SELECT id, node_id FROM node_peers WHERE device_id = ?")
      .all(deviceId) as { id: string; node_id: string }[];
    this.o.service.transaction(() => {
      for (const r of rows) {
        this.o.service.mutate(
          {
            actor: this.o.actor,
            action: "node_peer.remove",
            target: { type: "node_peer", id: r.id },
          },
          (tx) => {
            if (tx.current) tx.remove();
          },
        );
      }
    });
    return [...new Set(rows.map((r) => r.node_id))];
  }

  /**
   * Routes the device's traffic entering at each node with a path to
   * `exitNodeId` out through that exit (its peers there get the path);
   * `null` clears every choice (traffic leaves where it enters). Returns
   * the entry nodes whose routing changed. Throws `not-found` when no path
   * leads to that exit from a node the device has a peer on.
   */
  bindExit(deviceId: string, exitNodeId: string | null): string[] {
    const peers = statement(
      this.#db,
      "SELECT id, node_id, path_id FROM node_peers WHERE device_id = ?",
    )
      .all(deviceId) as { id: string; node_id: string; path_id: string | null }[];
    const pathFrom = statement(
      this.#db,
      "SELECT id FROM paths WHERE entry_node_id = ? AND exit_node_id = ? ORDER BY id LIMIT 1",
    );
    const wanted = peers.map((p) => ({
      peer: p,
      path: exitNodeId === null
        ? null
        : ((pathFrom.get(p.node_id, exitNodeId) as { id: string } | undefined)?.id ?? null),
    }));
    if (exitNodeId !== null && !wanted.some((w) => w.path !== null)) {
      throw new AccountError(
        "not-found",
        `no path leads to exit node ${exitNodeId} from this device's nodes`,
      );
    }
    const touched: string[] = [];
    this.o.service.transaction(() => {
      for (const w of wanted) {
        if (w.peer.path_id === w.path) continue;
        this.o.service.mutate(
          {
            actor: this.o.actor,
            action: "node_peer.exit",
            target: { type: "node_peer", id: w.peer.id },
          },
          (tx) => tx.update({ path_id: w.path }),
        );
        touched.push(w.peer.node_id);
      }
    });
    return touched;
  }

  /** Tells the reconcile loop (never throws). */
  notify(nodeIds: string[]): void {
    if (nodeIds.length === 0) return;
    try {
      this.o.onPeersChanged?.(nodeIds);
    } catch (e) {
      this.o.log?.error("peer change listener failed", {
        code: "peers-changed-listener",
        error: e,
      });
    }
  }

  /** A user's devices that need peers, and the nodes that serve them. */
  #peersOf(userId: string): { devices: DeviceRow[]; nodes: NodeRow[] } {
    const devices = statement(
      this.#db,
      "SELECT * FROM devices WHERE user_id = ? AND status = 'active' AND wg_public_key IS NOT NULL",
    ).all(userId) as unknown as DeviceRow[];
    const nodes = statement(
      this.#db,
      `SELECT n.*, c.ranges AS confirmed_ranges FROM nodes n
         LEFT JOIN node_endpoint_confirmations c ON c.node_id = n.id
       WHERE n.status <> 'disabled' ORDER BY n.name`,
    ).all() as unknown as NodeRow[];
    return { devices, nodes };
  }

  async #sync(userId: string): Promise<void> {
    const { devices, nodes } = this.#peersOf(userId);
    const touched = await this.#ensurePeers(devices, nodes);
    this.notify(touched);
    for (const d of devices) await this.#reseal(d, nodes);
  }

  async #ensurePeers(
    devices: DeviceRow[],
    nodes: NodeRow[],
    actor: Actor = this.o.actor,
  ): Promise<string[]> {
    const has = statement(this.#db, "SELECT 1 FROM node_peers WHERE node_id = ? AND device_id = ?");
    const wanted: { id: string; device: DeviceRow; node: NodeRow; sealed: Uint8Array }[] = [];
    for (const device of devices) {
      if (!device.tunnel_ip) continue;
      for (const node of nodes) {
        if (has.get(node.id, device.id)) continue;
        const id = crypto.randomUUID();
        const psk = crypto.getRandomValues(new Uint8Array(32));
        wanted.push({ id, device, node, sealed: await this.o.keystore.seal(psk, pskLabel(id)) });
      }
    }
    const added: string[] = [];
    this.o.service.transaction(() => {
      for (const w of wanted) {
        if (has.get(w.node.id, w.device.id)) continue; // another sync got there first
        this.o.service.mutate(
          {
            actor,
            action: "node_peer.create",
            target: { type: "node_peer", id: w.id },
            expectVersion: 0,
          },
          (tx) =>
            tx.insert({
              node_id: w.node.id,
              device_id: w.device.id,
              public_key: w.device.wg_public_key!,
              psk_sealed: w.sealed,
              allowed_ips: JSON.stringify([`${w.device.tunnel_ip}/32`]),
              protocol: "awg",
              created_at: tx.now,
            }),
        );
        added.push(w.node.id);
      }
    });
    return [...new Set(added)];
  }

  /** Builds, seals and stores the profile of one device (compare-and-retry on the revision). */
  async #reseal(device: DeviceRow, nodes: NodeRow[], actor: Actor = this.o.actor): Promise<void> {
    if (!device.encryption_public_key) return;
    const recipient = new Uint8Array(device.encryption_public_key);
    const current = statement(this.#db, "SELECT revision FROM sealed_profiles WHERE device_id = ?");
    for (let attempt = 0; attempt < RESEAL_TRIES; attempt++) {
      const before = (current.get(device.id) as { revision: number } | undefined)?.revision ?? 0;
      const now = this.o.now();
      const expires = new Date(now.getTime() + PROFILE_TTL_MS);
      const doc = await this.#document(device, nodes, before + 1, now, expires);
      const plaintext = utf8.encode(encodeProfileDocument(doc));
      const bundle = await sealProfile(plaintext, recipient, this.o.signing.privateKey);
      plaintext.fill(0);
      const ciphertext = utf8.encode(encodeSealedBundle(bundle));
      const stored = this.o.service.mutate(
        {
          actor,
          action: "sealed_profile.seal",
          target: { type: "sealed_profile", id: device.id },
        },
        (tx) => {
          const rev = Number((tx.current as { revision?: number } | undefined)?.revision ?? 0);
          if (rev !== before) return false; // someone sealed meanwhile: build again
          const values = {
            user_id: device.user_id,
            revision: before + 1,
            ciphertext,
            expires_at: expires.toISOString(),
          };
          if (tx.current) tx.update(values);
          else tx.insert(values);
          return true;
        },
      );
      if (stored) return;
    }
    throw new Error(
      `could not reseal the profile of device ${device.id}: too many concurrent reseals`,
    );
  }

  async #document(
    device: DeviceRow,
    nodes: NodeRow[],
    revision: number,
    now: Date,
    expires: Date,
  ): Promise<ProfileDocument> {
    const peers = new Map(
      (statement(
        this.#db,
        "SELECT id, node_id, psk_sealed, path_id FROM node_peers WHERE device_id = ?",
      )
        .all(device.id) as unknown as PeerRow[]).map((p) => [p.node_id, p]),
    );
    const paths = new Map(
      (statement(this.#db, "SELECT id, entry_node_id, exit_node_id, mtu FROM paths")
        .all() as unknown as PathRow[])
        .map((p) => [p.id, p]),
    );
    const byId = new Map(nodes.map((n) => [n.id, n]));
    // A device that made its own key keeps it: the profile carries an all-zero
    // placeholder the client replaces (CONTRACTS §4.6 needs a 32-byte value here).
    const privateKey = device.wg_private_sealed
      ? toBase64(
        await this.o.keystore.open(
          new Uint8Array(device.wg_private_sealed),
          wgKeyLabel(device.id),
        ),
      )
      : toBase64(new Uint8Array(32));
    const direct: ProfileNode[] = [];
    const cascades: ProfileEntry[] = [];
    for (const node of nodes) {
      const peer = peers.get(node.id);
      const nodeKey = this.#nodeKeys(node.id);
      if (!peer || !nodeKey || !device.tunnel_ip) continue;
      const psk = peer.psk_sealed
        ? toBase64(await this.o.keystore.open(new Uint8Array(peer.psk_sealed), pskLabel(peer.id)))
        : "";
      const pools = advertisedRanges(node.endpoints, node.confirmed_ranges)
        .map((e) => ({ ip: e.ip, port_min: e.portMin, port_max: e.portMax }));
      const endpoints = pools.length > 0
        ? pools
        : [{ ip: node.host, port_min: 443, port_max: 443 }];
      const entry: ProfileNode = {
        id: node.id,
        name: node.name,
        region: node.region ?? "",
        endpoints: [...new Set(endpoints.map((e) => e.ip))],
        protocols: [{
          type: "amneziawg",
          v: 2,
          params: {
            private_key: privateKey,
            address: `${device.tunnel_ip}/32`,
            public_key: nodeKey,
            preshared_key: psk,
            endpoints,
            allowed_ips: ALL_TRAFFIC,
            obfuscation: JSON.parse(node.obfuscation),
          },
        }],
      };
      const path = peer.path_id ? paths.get(peer.path_id) : undefined;
      const exit = path ? byId.get(path.exit_node_id) : undefined;
      if (!path || !exit || path.entry_node_id !== node.id) {
        direct.push(entry);
        continue;
      }
      // Traffic entering here leaves at the path's exit (the device chose it).
      cascades.push({
        id: `path_${path.id}`,
        name: `${node.name} → ${exit.name}`,
        protocol: "amneziawg",
        nodes: [entry],
        path: {
          name: `${node.name} → ${exit.name}`,
          hops: [
            {
              id: node.id,
              name: node.name,
              region: node.region ?? "",
              role: "entry",
              ips: entry.endpoints,
            },
            {
              id: exit.id,
              name: exit.name,
              region: exit.region ?? "",
              role: "exit",
              ips: [exit.host],
            },
          ],
        },
        mtu: CASCADE_MTU,
      });
    }
    const profiles: ProfileEntry[] = [
      ...(direct.length === 0
        ? []
        : [{ id: "pspec_default", name: "Default", protocol: "amneziawg", nodes: direct }]),
      ...cascades,
    ];
    const doc = {
      fleet_id: this.o.fleetId,
      user: device.user_id,
      revision,
      issued_at: now.toISOString(),
      expires_at: expires.toISOString(),
      profiles,
      device_key: device.wg_private_sealed ? "controller" : "device",
    };
    return parseProfileDocument(doc);
  }
}

/** Validates a base64 WireGuard public key (32 bytes) and returns its canonical form. */
export function canonicalWgKey(text: string): string {
  return toBase64(fromBase64(text, "WireGuard public key", 32));
}
