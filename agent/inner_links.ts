/**
 * Inner (cascade) links of an entry node (CONTRACTS.md §1.4, §5.6): one
 * interface per link (awg1, awg2, …) using this node's own private key,
 * the link's listen port and MTU, the EXIT's obfuscation and no routes
 * (Table = off); its single peer is the exit, which this node dials.
 *
 * Each link is persisted with its revision (`inner-<if>.json`) and
 * re-created at start (fixing §7.8). An exit given by name is resolved in
 * the background and retried while the name does not resolve; an exit
 * that is down only means no handshake yet — WireGuard retries (a 25 s
 * keepalive keeps it trying), so the link comes back by itself when the
 * exit returns.
 */
import {
  type AwgObfuscation,
  checkInnerInterface,
  formatEndpoint,
  parseEndpoint,
  type WgDump,
} from "../core/dataplane/mod.ts";
import type { Logger } from "../core/log.ts";
import type { AwgDevice, AwgDriver, AwgPeer } from "./dataplane/awg.ts";
import { AgentError, asAgentError, GrpcCode } from "./errors.ts";
import type { StateStore } from "./store.ts";

/** A checked ConfigureInnerLink config. */
export interface InnerLinkConfig {
  interface: string;
  listenPort: number;
  mtu: number;
  peerObfuscation: AwgObfuscation;
  exit: {
    publicKey: string;
    presharedKey?: string;
    allowedIps: string[];
    /** `host:port` as sent (host may be a name). */
    endpoint: string;
  };
}

interface InnerLinkFile {
  revision: string;
  config: InnerLinkConfig;
}

/** Keepalive on the exit peer: keeps the link warm and retrying through NAT and outages. */
export const INNER_KEEPALIVE_S = 25;
const RESOLVE_RETRY_MS = [1000, 5000, 15_000, 60_000];

interface Link {
  revision: bigint;
  config: InnerLinkConfig;
  device: AwgDevice;
  /** `ip:port` once the endpoint resolved. */
  endpoint: string | null;
  up: boolean;
  error: string;
  retry: ReturnType<typeof setTimeout> | null;
  retries: number;
}

export interface InnerLinksOptions {
  driver: AwgDriver;
  store: StateStore;
  log: Logger;
  privateKey: string;
  clientInterface: string;
  /** Told whenever the set of links changes or a link came back (policy re-apply). */
  onChange?: () => Promise<void> | void;
}

const fileName = (iface: string) => `inner-${iface}.json`;

export class InnerLinks {
  readonly #links = new Map<string, Link>();
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(readonly opts: InnerLinksOptions) {}

  /** Listen ports in use (never DNAT targets of the endpoint range). */
  reservedPorts(): number[] {
    return [...this.#links.values()].map((l) => l.config.listenPort);
  }

  get names(): string[] {
    return [...this.#links.keys()].sort();
  }

  revisionOf(iface: string): bigint {
    return this.#links.get(iface)?.revision ?? 0n;
  }

  status(): { interface: string; up: boolean; endpoint: string | null; error: string }[] {
    return [...this.#links.values()].map((l) => ({
      interface: l.config.interface,
      up: l.up,
      endpoint: l.endpoint,
      error: l.error,
    }));
  }

  async dump(iface: string): Promise<WgDump | null> {
    const l = this.#links.get(iface);
    return l?.up ? await l.device.dump() : null;
  }

  /** Start-up: re-creates every persisted link (each failure logged; the others go on). */
  restore(): Promise<void> {
    return this.#serial(async () => {
      for (const name of await this.opts.store.list(/^inner-awg[0-9]{1,3}\.json$/)) {
        const file = await this.opts.store.read<InnerLinkFile>(name);
        if (file === null) continue;
        try {
          checkInnerInterface(file.config.interface, "interface");
          const link = this.#newLink(file.config, BigInt(file.revision));
          await this.#bring(link);
        } catch (e) {
          this.opts.log.error("inner link not restored", {
            code: (e as AgentError).code ?? "inner-link-failed",
            file: name,
            error: e,
          });
        }
      }
      await this.opts.onChange?.();
    });
  }

  /** ConfigureInnerLink, with the revision rule of §1.3 per interface. */
  configure(
    config: InnerLinkConfig,
    revision: bigint,
  ): Promise<{ applied: bigint; reloaded: boolean }> {
    return this.#serial(async () => {
      const existing = this.#links.get(config.interface);
      const last = existing?.revision ?? 0n;
      if (revision < last) {
        throw new AgentError(
          "stale-revision",
          `stale revision ${revision} for ${config.interface} (last applied ${last})`,
          GrpcCode.FAILED_PRECONDITION,
        );
      }
      if (existing && revision === last && last > 0n && existing.up) {
        return { applied: last, reloaded: false };
      }
      if (
        this.reservedPorts().includes(config.listenPort) &&
        existing?.config.listenPort !== config.listenPort
      ) {
        throw new AgentError(
          "port-in-use",
          `listen port ${config.listenPort} is already used by another inner link`,
          GrpcCode.INVALID_ARGUMENT,
        );
      }
      let link: Link;
      if (existing) {
        // §1.4: on an existing link only the exit peer changes.
        const c = existing.config;
        if (
          c.listenPort !== config.listenPort || c.mtu !== config.mtu ||
          JSON.stringify(c.peerObfuscation) !== JSON.stringify(config.peerObfuscation)
        ) {
          this.opts.log.warn(
            "inner link exists: only its exit peer is updated; RemoveInnerLink first to change port, MTU or obfuscation",
            { code: "inner-link-settings-kept", interface: config.interface },
          );
        }
        link = existing;
        link.config = { ...c, exit: config.exit };
        link.revision = revision;
        link.endpoint = null;
      } else {
        link = this.#newLink(config, revision);
      }
      try {
        await this.#bring(link);
        await this.#persist(link);
      } catch (e) {
        if (!existing) {
          this.#links.delete(config.interface);
          await link.device.down().catch(() => {});
        }
        throw asAgentError(e, `inner link ${config.interface} not configured: `);
      }
      await this.opts.onChange?.();
      return { applied: revision, reloaded: true };
    });
  }

  /** RemoveInnerLink: interface down, config and revision deleted; idempotent. */
  remove(iface: string): Promise<boolean> {
    return this.#serial(async () => {
      const link = this.#links.get(iface);
      if (link) {
        if (link.retry) clearTimeout(link.retry);
        this.#links.delete(iface);
        await link.device.down();
      }
      await this.opts.store.remove(fileName(iface));
      if (link) await this.opts.onChange?.();
      return true;
    });
  }

  /** Re-creates links whose interface vanished. */
  heal(): Promise<void> {
    return this.#serial(async () => {
      let changed = false;
      for (const link of this.#links.values()) {
        if (link.up && await link.device.alive()) continue;
        try {
          await this.#bring(link);
          changed = true;
        } catch (e) {
          link.error = (e as Error).message;
        }
      }
      if (changed) await this.opts.onChange?.();
    });
  }

  async stop(): Promise<void> {
    this.#closed = true;
    await this.#serial(async () => {
      for (const l of this.#links.values()) {
        if (l.retry) clearTimeout(l.retry);
        l.retry = null;
        await l.device.down().catch(() => {});
      }
    });
  }

  #newLink(config: InnerLinkConfig, revision: bigint): Link {
    const device = this.opts.driver.device(config.interface);
    const link: Link = {
      revision,
      config,
      device,
      endpoint: null,
      up: false,
      error: "",
      retry: null,
      retries: 0,
    };
    device.onRestart(() => {
      void this.#serial(async () => {
        await this.#bring(link);
        await this.opts.onChange?.();
      }).catch(() => {});
    });
    this.#links.set(config.interface, link);
    return link;
  }

  async #bring(link: Link): Promise<void> {
    const c = link.config;
    if (link.endpoint === null) link.endpoint = await this.#resolve(c.exit.endpoint);
    try {
      await link.device.up(c.mtu);
      await link.device.sync({
        privateKey: this.opts.privateKey,
        listenPort: c.listenPort,
        obfuscation: c.peerObfuscation,
        peers: [this.#exitPeer(link)],
      });
      link.up = true;
      link.error = link.endpoint === null ? `cannot resolve ${c.exit.endpoint} yet` : "";
    } catch (e) {
      link.up = false;
      link.error = (e as Error).message;
      throw e;
    }
    if (link.endpoint === null) this.#scheduleResolve(link);
    this.opts.log.info("inner link up", {
      code: "inner-link-up",
      interface: c.interface,
      exit: c.exit.endpoint,
      resolved: link.endpoint,
      revision: String(link.revision),
    });
  }

  #exitPeer(link: Link): AwgPeer {
    const e = link.config.exit;
    return {
      publicKey: e.publicKey,
      presharedKey: e.presharedKey,
      allowedIps: e.allowedIps,
      endpoint: link.endpoint ?? undefined,
      persistentKeepalive: INNER_KEEPALIVE_S,
    };
  }

  /** `ip:port` for an endpoint, resolving a name (null when it does not resolve now). */
  async #resolve(endpoint: string): Promise<string | null> {
    const ep = parseEndpoint(endpoint, "exit.endpoint", { allowHostname: true });
    if (ep.host.kind !== "name") return formatEndpoint(ep);
    for (const type of ["A", "AAAA"] as const) {
      try {
        const ips = await Deno.resolveDns(ep.host.name, type);
        if (ips.length > 0) {
          const ip = parseEndpoint(
            type === "A" ? `${ips[0]}:${ep.port}` : `[${ips[0]}]:${ep.port}`,
            "exit.endpoint",
          );
          return formatEndpoint(ip);
        }
      } catch { /* try the other family, then retry later */ }
    }
    return null;
  }

  #scheduleResolve(link: Link): void {
    if (this.#closed || link.retry) return;
    const ms = RESOLVE_RETRY_MS[Math.min(link.retries++, RESOLVE_RETRY_MS.length - 1)];
    link.retry = setTimeout(() => {
      link.retry = null;
      if (this.#closed || this.#links.get(link.config.interface) !== link) return;
      void this.#serial(async () => {
        link.endpoint = await this.#resolve(link.config.exit.endpoint);
        if (link.endpoint === null) return this.#scheduleResolve(link);
        await link.device.upsertPeer(this.#exitPeer(link));
        link.error = "";
        link.retries = 0;
      }).catch((e) => {
        link.error = (e as Error).message;
        this.#scheduleResolve(link);
      });
    }, ms);
  }

  async #persist(link: Link): Promise<void> {
    const file: InnerLinkFile = { revision: String(link.revision), config: link.config };
    await this.opts.store.write(fileName(link.config.interface), file);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn);
    this.#tail = next.catch(() => {});
    return next;
  }
}
