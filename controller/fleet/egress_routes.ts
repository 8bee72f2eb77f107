/**
 * Nodes marked "via relay": reached through that relay's control-plane
 * egress (CONTRACTS.md §3.5). Per such node a loopback listener in the
 * controller process (127.0.0.1, port 0) carries each connection of the
 * gRPC worker over a yamux stream of the relay's egress session to the
 * node's `host:control_port`; the worker dials the listener and does its
 * mTLS with the node through it, so the relay sees ciphertext only and no
 * HTTP/2 runs in this process.
 *
 * Before a stream is opened on a session, the relay gets the policy (the
 * revocation list and the allow-list built from the node table): a relay
 * restarted meanwhile has forgotten it. A changed allow-list is pushed at
 * once (`sync`).
 */
import type { Logger } from "../../core/log.ts";
import type { MuxSession } from "../../core/mux/mod.ts";
import type { ControllerTlsIdentity } from "../relay/dial.ts";
import { EgressClient } from "../relay/egress_client.ts";
import type { PolicySource } from "../relay/policy_source.ts";
import type { RevocationFeed } from "../relay/tunnel_client.ts";

/** The relay's egress port when the relays table names none (the relay's default). */
export const DEFAULT_EGRESS_PORT = 8456;

export interface RelayEgress {
  id: string;
  host: string;
  port: number;
}

export interface RoutedNode {
  id: string;
  host: string;
  port: number;
  relay: RelayEgress;
}

class RelayRoute {
  readonly client: EgressClient;
  /** The session the current policy was accepted on, and what it allowed. */
  #pushedOn: MuxSession | null = null;
  #pushedAllow = "";
  #pushing: Promise<void> | null = null;

  constructor(
    readonly relay: RelayEgress,
    identity: ControllerTlsIdentity,
    private readonly policy: PolicySource,
    private readonly log: Logger,
    revocations?: RevocationFeed,
  ) {
    this.client = new EgressClient(
      { host: relay.host, port: relay.port },
      identity,
      log,
      { revocations },
    );
  }

  /** Makes sure the relay holds the current policy on the current session. */
  ensurePolicy(): Promise<void> {
    this.#pushing ??= this.#push().finally(() => this.#pushing = null);
    return this.#pushing;
  }

  async #push(): Promise<void> {
    const session = await this.client.session();
    const allow = this.policy.egressAllowFor(this.relay.id).join(",");
    if (session === this.#pushedOn && allow === this.#pushedAllow) return;
    for (let attempt = 0; attempt < 2; attempt++) {
      const doc = this.policy.document(this.relay.id);
      const answer = await this.client.pushPolicy(doc);
      if (answer === "ok" || answer.startsWith("unsupported")) {
        this.#pushedOn = session;
        this.#pushedAllow = allow;
        this.log.info("egress policy pushed", {
          relay: this.relay.host,
          revision: doc.revision,
          allow: doc.egress_allow.length,
          answer,
        });
        return;
      }
      const stale = /^stale: ([0-9]+)$/.exec(answer);
      if (!stale || !this.policy.catchUp(Number(stale[1]))) {
        throw new Error(`relay ${this.relay.host} refused the policy: ${answer}`);
      }
    }
    throw new Error(`relay ${this.relay.host} kept answering "stale"`);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

class NodeForwarder {
  readonly listener: Deno.TcpListener;
  #conns = new Set<Deno.Conn>();

  constructor(readonly node: RoutedNode, route: RelayRoute, log: Logger) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.listener = listener;
    void (async () => {
      for await (const conn of listener) void this.#carry(conn, route, log);
    })().catch(() => {});
  }

  get port(): number {
    return this.listener.addr.port;
  }

  async #carry(conn: Deno.Conn, route: RelayRoute, log: Logger): Promise<void> {
    this.#conns.add(conn);
    try {
      await route.ensurePolicy();
      const stream = await route.client.dial(this.node.host, this.node.port);
      // Either direction ending ends both (the egress stream has no half-close).
      await Promise.race([
        conn.readable.pipeTo(stream.writable).catch(() => {}),
        stream.readable.pipeTo(conn.writable, { preventClose: true }).catch(() => {}),
      ]);
      await stream.writable.abort().catch(() => {});
      await stream.readable.cancel().catch(() => {});
    } catch (e) {
      log.warn("egress connection to a node failed", {
        code: "egress-dial",
        node: this.node.id,
        relay: route.relay.host,
        error: e,
      });
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }

  close(): void {
    try {
      this.listener.close();
    } catch { /* closed */ }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }
}

/** The egress sessions and per-node forwarders the node table calls for. */
export class EgressRoutes {
  #routes = new Map<string, RelayRoute>();
  #forwarders = new Map<string, NodeForwarder>();

  constructor(
    private readonly identity: () => ControllerTlsIdentity,
    private readonly policy: PolicySource,
    private readonly log: Logger,
    private readonly revocations?: RevocationFeed,
  ) {}

  /**
   * Opens, keeps or closes routes to match `nodes`; returns node id →
   * local target (`127.0.0.1:port`) for the gRPC worker.
   */
  sync(nodes: RoutedNode[]): Map<string, string> {
    const relayKey = (r: RelayEgress) => `${r.id}|${r.host}|${r.port}`;
    const wantRelays = new Map(nodes.map((n) => [relayKey(n.relay), n.relay]));
    const wantNodes = new Map(nodes.map((n) => [n.id, n]));
    for (const [id, f] of this.#forwarders) {
      const n = wantNodes.get(id);
      if (
        !n || n.host !== f.node.host || n.port !== f.node.port ||
        relayKey(n.relay) !== relayKey(f.node.relay)
      ) {
        f.close();
        this.#forwarders.delete(id);
      }
    }
    for (const [key, r] of this.#routes) {
      if (!wantRelays.has(key)) {
        this.#routes.delete(key);
        // Its last node went: the relay learns its shorter allow-list, then the session ends.
        void r.ensurePolicy().catch(() => {}).finally(() => r.close());
      }
    }
    for (const [key, relay] of wantRelays) {
      if (!this.#routes.has(key)) {
        this.#routes.set(
          key,
          new RelayRoute(
            relay,
            this.identity(),
            this.policy,
            this.log.child({ relay: relay.host }),
            this.revocations,
          ),
        );
      }
    }
    const targets = new Map<string, string>();
    for (const n of nodes) {
      let f = this.#forwarders.get(n.id);
      if (!f) {
        f = new NodeForwarder(n, this.#routes.get(relayKey(n.relay))!, this.log);
        this.#forwarders.set(n.id, f);
      }
      targets.set(n.id, `127.0.0.1:${f.port}`);
    }
    // The node table changed: each relay gets its new allow-list now, not at the next dial.
    void Promise.all(
      [...this.#routes.values()].map((r) =>
        r.ensurePolicy().catch((e) =>
          this.log.warn("egress policy not pushed", {
            code: "egress-policy",
            relay: r.relay.host,
            error: e,
          })
        )
      ),
    );
    return targets;
  }

  async close(): Promise<void> {
    for (const f of this.#forwarders.values()) f.close();
    this.#forwarders.clear();
    await Promise.all([...this.#routes.values()].map((r) => r.close()));
    this.#routes.clear();
  }
}
