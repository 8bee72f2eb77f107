/**
 * The agent's data plane as one object: identity, the client interface,
 * inner links, network policy and Xray, restored from disk in dependency
 * order at start (client interface → inner links → policy → Xray) with no
 * controller needed, observed for events, and stopped cleanly. The gRPC
 * service (service.ts) calls into it; nothing here knows about gRPC.
 */
import type { AwgObfuscation, WgDump } from "../core/dataplane/mod.ts";
import type { Logger } from "../core/log.ts";
import { ClientInterface } from "./client_interface.ts";
import type { AwgDriver } from "./dataplane/awg.ts";
import { PolicyApplier } from "./dataplane/netpolicy.ts";
import { XrayManager } from "./dataplane/xray.ts";
import { EventHub, HANDSHAKE_UP_WINDOW_S, Observer } from "./events.ts";
import type { NodeIdentity } from "./identity.ts";
import { InnerLinks } from "./inner_links.ts";
import type { StateStore } from "./store.ts";

export interface NodeSettings {
  /** Client interface name (awg0 … awg999). */
  interface: string;
  awgPort: number;
  mtu: number;
  /** xray program (name on PATH or absolute path). */
  xray: string;
  xrayApiPort: number;
  egressInterface?: string;
  diversity?: { ips: string[]; portMin: number; portMax: number };
  pollIntervalMs: number;
}

export interface PeerCounters {
  publicKey: string;
  latestHandshake: number;
  rx: bigint;
  tx: bigint;
  endpoint: string | null;
}

export interface AwgStatus {
  running: boolean;
  peers: number;
  detail: string;
  newestHandshakeAge: number;
  handshaking: number;
}

/** `UDP 2000-2100 on 192.0.2.1,192.0.2.5`, one group per port range, in first-seen order. */
export function describeRanges(
  ranges: readonly { ip: string; portMin: number; portMax: number }[],
): string {
  const groups = new Map<string, string[]>();
  for (const r of ranges) {
    const ports = r.portMin === r.portMax ? `${r.portMin}` : `${r.portMin}-${r.portMax}`;
    groups.set(ports, [...groups.get(ports) ?? [], r.ip]);
  }
  return [...groups].map(([ports, ips]) => `UDP ${ports} on ${ips.join(",")}`).join(", ");
}

export class AgentNode {
  readonly client: ClientInterface;
  readonly inner: InnerLinks;
  readonly policy: PolicyApplier;
  readonly xray: XrayManager;
  readonly hub: EventHub;
  readonly observer: Observer;
  readonly startedAt = Date.now();
  #health: ReturnType<typeof setInterval> | null = null;

  constructor(
    readonly settings: NodeSettings,
    readonly identity: NodeIdentity,
    readonly driver: AwgDriver,
    readonly store: StateStore,
    readonly log: Logger,
  ) {
    this.policy = new PolicyApplier({
      store,
      log,
      clientInterface: settings.interface,
      egress: settings.egressInterface,
      diversity: settings.diversity,
      listenPort: settings.awgPort,
    });
    const reapply = async () => {
      if (!this.#started) return;
      await this.policy.reapply(this.inner.reservedPorts()).catch((e) =>
        log.error("network policy re-apply failed", { code: "policy-failed", error: e })
      );
    };
    this.client = new ClientInterface({
      driver,
      name: settings.interface,
      listenPort: settings.awgPort,
      mtu: settings.mtu,
      privateKey: identity.awgPrivateKey,
      obfuscation: identity.obfuscation,
      store,
      log,
      onRecreated: reapply,
    });
    this.inner = new InnerLinks({
      driver,
      store,
      log,
      privateKey: identity.awgPrivateKey,
      clientInterface: settings.interface,
      onChange: reapply,
    });
    this.xray = new XrayManager({
      store,
      log,
      program: settings.xray,
      apiPort: settings.xrayApiPort,
      privateKey: identity.realityPrivateKey,
    });
    this.hub = new EventHub(log);
    this.observer = new Observer({
      hub: this.hub,
      log,
      intervalMs: settings.pollIntervalMs,
      read: async () => {
        try {
          const d = await this.client.dump();
          if (d === null) void this.client.heal();
          return d;
        } catch (e) {
          void this.client.heal();
          throw e;
        }
      },
    });
  }

  #started = false;

  /** The obfuscation clients must use (neutral when the node runs plain WireGuard). */
  get obfuscation(): AwgObfuscation {
    return this.driver.effectiveObfuscation(this.identity.obfuscation);
  }

  /** Restores everything from disk; never needs the controller. */
  async start(): Promise<void> {
    await this.store.open();
    await this.client.restore();
    await this.inner.restore();
    await this.policy.restore(this.inner.reservedPorts());
    this.#started = true;
    await this.xray.restore();
    this.observer.start();
    this.#health = setInterval(() => {
      void this.inner.heal().catch(() => {});
    }, Math.max(this.settings.pollIntervalMs, 1000) * 2);
    this.log.info("data plane restored", {
      code: "dataplane-restored",
      dataplane: this.driver.kind,
      obfuscation: this.driver.obfuscation,
      interface: this.settings.interface,
      peers: this.client.peers.length,
      revision: String(this.client.revision),
      inner_links: this.inner.names,
      policy: this.policy.policy,
      xray: this.xray.status().detail,
    });
  }

  /** Graceful stop: node-shutdown events, streams ended, data plane down. */
  async stop(): Promise<void> {
    if (this.#health) clearInterval(this.#health);
    this.#health = null;
    await this.observer.stop();
    this.hub.closeAll();
    this.policy.close();
    await this.xray.stop();
    await this.inner.stop();
    await this.client.stop();
  }

  /** Live counters per configured peer of the client interface. */
  async counters(): Promise<{ dump: WgDump | null; error: string }> {
    try {
      return { dump: await this.client.dump(), error: "" };
    } catch (e) {
      return { dump: null, error: (e as Error).message };
    }
  }

  /** The AmneziaWG service line of GetStatus. */
  async awgStatus(): Promise<AwgStatus> {
    const name = this.settings.interface;
    const { dump, error } = await this.counters();
    const notes: string[] = [];
    if (!this.driver.obfuscation) {
      notes.push(`plain WireGuard (${this.driver.kind}): obfuscation off`);
    }
    const ranges = this.policy.endpointRanges;
    if (ranges.length > 0) {
      const source = this.policy.rangesPushed ? "from the controller" : "from local flags";
      notes.push(
        `${describeRanges(ranges)} forwarded to :${this.settings.awgPort} (${source})`,
      );
    }
    for (const l of this.inner.status()) {
      notes.push(
        `inner link ${l.interface} ${l.up ? "up" : "down"}` +
          (l.endpoint ? ` to ${l.endpoint}` : "") + (l.error ? ` (${l.error})` : ""),
      );
    }
    const foreign = this.policy.foreignAddresses;
    if (foreign.length > 0) {
      notes.push(`endpoints on ${foreign.join(",")} not forwarded (not this host's addresses)`);
    }
    const missing = this.policy.missing.length;
    if (missing > 0) notes.push(`${missing} network rules pending`);
    const suffix = notes.length > 0 ? `; ${notes.join("; ")}` : "";
    if (dump === null) {
      const why = error || this.client.lastError;
      return {
        running: false,
        peers: 0,
        detail: (why ? `${name} not up: ${why}` : `${name} not up`) + suffix,
        newestHandshakeAge: -1,
        handshaking: 0,
      };
    }
    const now = Date.now() / 1000;
    const handshakes = dump.peers.map((p) => p.latestHandshake).filter((h) => h > 0);
    const newest = handshakes.length > 0 ? Math.max(...handshakes) : 0;
    return {
      running: true,
      peers: dump.peers.length,
      detail: `${name} up, ${dump.peers.length} peers` + suffix,
      newestHandshakeAge: newest > 0 ? Math.max(0, Math.floor(now - newest)) : -1,
      handshaking: handshakes.filter((h) => now - h < HANDSHAKE_UP_WINDOW_S).length,
    };
  }

  get uptimeSeconds(): number {
    return Math.floor((Date.now() - this.startedAt) / 1000);
  }
}
