/**
 * The client interface (awg0 by default): its peer set and revision, kept
 * on disk (a journaled document, `awg.json`: whole pushes replace it, each
 * AddPeer/RemovePeer is one fsynced journal line), applied live to the
 * interface without restarting it, with a host route per peer address.
 *
 * Revision rules (CONTRACTS.md §1.3): a lower revision is refused
 * (FAILED_PRECONDITION); an equal one is a no-op once something was applied
 * and the interface is up; revision 0 re-applies on a fresh node; a higher
 * one replaces the peer set. AddPeer/RemovePeer leave the revision alone.
 */
import type { AwgObfuscation, WgDump } from "../core/dataplane/mod.ts";
import type { Logger } from "../core/log.ts";
import type { AwgDevice, AwgDriver, AwgPeer } from "./dataplane/awg.ts";
import { RouteSet } from "./dataplane/routes.ts";
import { AgentError, asAgentError, GrpcCode } from "./errors.ts";
import { JournaledDocument, type StateStore } from "./store.ts";

interface AwgState {
  revision: string;
  peers: AwgPeer[];
}

type AwgJournalEntry = { op: "add"; peer: AwgPeer } | { op: "remove"; key: string };

export interface ClientInterfaceOptions {
  driver: AwgDriver;
  name: string;
  listenPort: number;
  mtu: number;
  privateKey: string;
  obfuscation: AwgObfuscation;
  store: StateStore;
  log: Logger;
  /** Told after the interface was (re)created, so dependants re-apply (policy). */
  onRecreated?: () => Promise<void> | void;
}

function applyEntry(state: AwgState, e: AwgJournalEntry): AwgState {
  if (e.op === "add") {
    return {
      revision: state.revision,
      peers: [...state.peers.filter((p) => p.publicKey !== e.peer.publicKey), e.peer],
    };
  }
  return { revision: state.revision, peers: state.peers.filter((p) => p.publicKey !== e.key) };
}

export class ClientInterface {
  readonly device: AwgDevice;
  readonly routes: RouteSet;
  #revision = 0n;
  /** Insertion-ordered peer set (the on-disk order). */
  #peers = new Map<string, AwgPeer>();
  readonly #doc: JournaledDocument<AwgState, AwgJournalEntry>;
  #up = false;
  #lastError = "";
  #tail: Promise<unknown> = Promise.resolve();
  #healing = false;

  constructor(readonly opts: ClientInterfaceOptions) {
    this.device = opts.driver.device(opts.name);
    this.routes = new RouteSet(opts.name, opts.log, `${opts.store.dir}/run`);
    this.#doc = new JournaledDocument(opts.store, "awg", applyEntry);
    this.device.onRestart(() => {
      this.opts.log.warn("client interface came back blank; re-applying its peers", {
        code: "interface-restarted",
        interface: opts.name,
      });
      void this.#serial(() => this.#bringUp()).catch(() => {});
    });
  }

  get name(): string {
    return this.opts.name;
  }

  get revision(): bigint {
    return this.#revision;
  }

  get peers(): AwgPeer[] {
    return [...this.#peers.values()];
  }

  get up(): boolean {
    return this.#up;
  }

  get lastError(): string {
    return this.#lastError;
  }

  #state(): AwgState {
    return { revision: String(this.#revision), peers: this.peers };
  }

  /** Start-up: loads the persisted peers and brings the interface up (errors logged, not thrown). */
  restore(): Promise<void> {
    return this.#serial(async () => {
      const state = await this.#doc.load();
      if (state === null) {
        await this.#doc.replace(this.#state());
      } else {
        this.#revision = BigInt(state.revision);
        this.#peers = new Map(state.peers.map((p) => [p.publicKey, p]));
      }
      try {
        await this.#bringUp();
      } catch (e) {
        this.opts.log.error("client interface not up; will retry", {
          code: (e as AgentError).code ?? "interface-not-up",
          interface: this.opts.name,
          error: e,
        });
      }
    });
  }

  async #bringUp(): Promise<void> {
    try {
      await this.device.up(this.opts.mtu);
      await this.device.sync(this.#deviceConfig());
      await this.routes.sync(this.peers.flatMap((p) => p.allowedIps));
      this.#up = true;
      this.#lastError = "";
      this.opts.log.info("client interface up", {
        code: "interface-up",
        interface: this.opts.name,
        peers: this.#peers.size,
        revision: String(this.#revision),
      });
      await this.opts.onRecreated?.();
    } catch (e) {
      this.#up = false;
      this.#lastError = (e as Error).message;
      throw e;
    }
  }

  #deviceConfig() {
    return {
      privateKey: this.opts.privateKey,
      listenPort: this.opts.listenPort,
      obfuscation: this.opts.obfuscation,
      peers: this.peers,
    };
  }

  /** PushConfig (AmneziaWG): the peer set replaces the interface's. */
  push(peers: AwgPeer[], revision: bigint): Promise<{ applied: bigint; reloaded: boolean }> {
    return this.#serial(async () => {
      if (revision < this.#revision) {
        throw new AgentError(
          "stale-revision",
          `stale revision ${revision} (last applied ${this.#revision})`,
          GrpcCode.FAILED_PRECONDITION,
        );
      }
      if (revision === this.#revision && this.#revision > 0n && this.#up) {
        return { applied: this.#revision, reloaded: false };
      }
      const before = { revision: this.#revision, peers: this.#peers };
      this.#peers = new Map(peers.map((p) => [p.publicKey, p]));
      this.#revision = revision;
      try {
        if (!this.#up) await this.device.up(this.opts.mtu);
        await this.device.sync(this.#deviceConfig());
        await this.#doc.replace(this.#state());
      } catch (e) {
        this.#revision = before.revision;
        this.#peers = before.peers;
        await this.device.sync(this.#deviceConfig()).catch(() => {});
        throw asAgentError(e, "config not applied, previous config kept: ");
      }
      this.#up = true;
      this.#lastError = "";
      await this.routes.sync(this.peers.flatMap((p) => p.allowedIps));
      return { applied: this.#revision, reloaded: true };
    });
  }

  /**
   * AddPeer: upsert by public key, live. The change is on disk before this
   * resolves; concurrent calls share one fsync (the wait is outside the
   * serialised section).
   */
  async addPeer(peer: AwgPeer): Promise<void> {
    let durable: Promise<void> = Promise.resolve();
    await this.#serial(async () => {
      const old = this.#peers.get(peer.publicKey);
      await this.#needUp();
      await this.device.upsertPeer(peer);
      this.#peers.delete(peer.publicKey); // re-insert at the end, as the journal replays it
      this.#peers.set(peer.publicKey, peer);
      durable = this.#doc.append({ op: "add", peer }, () => this.#state());
      if (old) {
        const keep = new Set(peer.allowedIps);
        this.routes.remove(old.allowedIps.filter((c) => !keep.has(c) && !this.#routedElsewhere(c)));
      }
      this.routes.add(peer.allowedIps);
    });
    await this.#durable(durable, "added");
  }

  /** RemovePeer: removes it live and from disk; succeeds when absent too. */
  async removePeer(publicKey: string): Promise<void> {
    let durable: Promise<void> = Promise.resolve();
    await this.#serial(async () => {
      const old = this.#peers.get(publicKey);
      if (this.#up) await this.device.removePeer(publicKey);
      if (!old) return;
      this.#peers.delete(publicKey);
      durable = this.#doc.append({ op: "remove", key: publicKey }, () => this.#state());
      this.routes.remove(old.allowedIps.filter((c) => !this.#routedElsewhere(c)));
    });
    await this.#durable(durable, "removed");
  }

  /**
   * Waits for a journal write. If the disk refused it, the change is live but
   * not saved: the whole state is written again (best effort) and the call
   * fails, so the controller retries it.
   */
  async #durable(write: Promise<void>, what: string): Promise<void> {
    try {
      await write;
    } catch (e) {
      this.opts.log.error("peer change not saved; writing the whole peer set again", {
        code: "state-not-saved",
        error: e,
      });
      await this.#serial(() => this.#doc.replace(this.#state())).catch(() => {});
      throw new AgentError(
        "state-not-saved",
        `peer ${what} live but not saved to ${this.opts.store.dir} (${(e as Error).message}); ` +
          "free disk space or fix its permissions, then repeat the call",
        GrpcCode.INTERNAL,
      );
    }
  }

  #routedElsewhere(cidr: string): boolean {
    for (const p of this.#peers.values()) if (p.allowedIps.includes(cidr)) return true;
    return false;
  }

  /** RestartService (AmneziaWG): re-applies the persisted config; tunnels stay up. */
  restart(): Promise<void> {
    return this.#serial(() => this.#bringUp());
  }

  /** Checks that the interface still answers; re-creates and re-applies it if not. */
  heal(): Promise<void> {
    if (this.#healing) return Promise.resolve();
    this.#healing = true;
    return this.#serial(async () => {
      if (this.#up && await this.device.alive()) return;
      this.opts.log.warn("client interface missing; bringing it up again", {
        code: "interface-heal",
        interface: this.opts.name,
      });
      await this.#bringUp();
    }).catch((e) => {
      this.opts.log.error("client interface still not up", {
        code: "interface-not-up",
        interface: this.opts.name,
        error: e,
      });
    }).finally(() => this.#healing = false);
  }

  async #needUp(): Promise<void> {
    if (this.#up) return;
    try {
      await this.#bringUp();
    } catch (e) {
      throw new AgentError(
        "interface-not-up",
        `${this.opts.name} is not up (${(e as Error).message})`,
        GrpcCode.UNAVAILABLE,
      );
    }
  }

  /** The live interface, or null while it is not up. */
  async dump(): Promise<WgDump | null> {
    if (!this.#up) return null;
    return await this.device.dump();
  }

  /** Stops the interface (the agent is stopping). */
  async stop(): Promise<void> {
    await this.#serial(async () => {
      this.#up = false;
      await this.routes.flush();
      await this.device.down().catch(() => {});
      this.#doc.close();
    });
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn);
    this.#tail = next.catch(() => {});
    return next;
  }
}
