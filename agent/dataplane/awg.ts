/**
 * AmneziaWG drivers behind one interface. A driver makes {@link AwgDevice}s
 * (one per interface: the client interface and each inner cascade link):
 *
 * | kind               | interface made by            | configured through         | obfuscation |
 * | ------------------ | ---------------------------- | -------------------------- | ----------- |
 * | `amneziawg-kernel` | `ip link add … type amneziawg` | `awg syncconf` / `awg set` | on          |
 * | `amneziawg-go`     | `amneziawg-go -f <if>` (supervised) | UAPI socket          | on          |
 * | `wireguard-kernel` | `ip link add … type wireguard` | `wg syncconf` / `wg set`   | off         |
 * | `wireguard-go`     | `wireguard-go -f <if>` (supervised) | UAPI socket          | off         |
 *
 * With plain WireGuard the node runs without obfuscation and says so (the
 * GetStatus detail and a warning at start), rather than failing.
 *
 * Every request is rendered by core/dataplane (UAPI set, server config),
 * which validates and re-serialises each field first.
 */
import {
  type AwgObfuscation,
  NEUTRAL_OBFUSCATION,
  OBFUSCATION_NUMBER_KEYS,
  OBFUSCATION_TEMPLATE_KEYS,
  parseWgDump,
  renderServerConfig,
  renderUapiSet,
  stripAwgKeys,
  type UapiPeer,
  type UapiSet,
  type WgDump,
} from "../../core/dataplane/mod.ts";
import type { Logger } from "../../core/log.ts";
import { AgentError, GrpcCode } from "../errors.ts";
import { mustRun, runCommand } from "../exec.ts";
import { writeFileAtomic } from "../store.ts";
import { Supervisor } from "./supervisor.ts";
import { UapiClient } from "./uapi_client.ts";

export type AwgKind = "amneziawg-kernel" | "amneziawg-go" | "wireguard-kernel" | "wireguard-go";
export const AWG_KINDS: readonly AwgKind[] = [
  "amneziawg-kernel",
  "amneziawg-go",
  "wireguard-kernel",
  "wireguard-go",
];

/** A peer as the agent holds it (checked fields, base64 keys). */
export interface AwgPeer {
  publicKey: string;
  presharedKey?: string;
  allowedIps: string[];
  /** `ip:port` (names are resolved before they get here). */
  endpoint?: string;
  persistentKeepalive?: number;
}

/** Everything one interface is configured with. */
export interface AwgDeviceConfig {
  privateKey: string;
  listenPort: number;
  /** Ignored (never sent) when the driver has no obfuscation. */
  obfuscation: AwgObfuscation;
  peers: readonly AwgPeer[];
}

/** One interface. */
export interface AwgDevice {
  readonly name: string;
  /** Creates the interface (or adopts a running one), sets the MTU and brings it up. */
  up(mtu: number): Promise<void>;
  /** True when the interface exists and answers. */
  alive(): Promise<boolean>;
  /** Makes the interface match `config` exactly, keeping sessions of unchanged peers. */
  sync(config: AwgDeviceConfig): Promise<void>;
  /** Adds a peer or replaces its key, endpoint and allowed IPs. */
  upsertPeer(peer: AwgPeer): Promise<void>;
  removePeer(publicKey: string): Promise<void>;
  dump(): Promise<WgDump>;
  /** Removes the interface. */
  down(): Promise<void>;
  /** Called after the interface came back by itself (its daemon restarted); it is blank then. */
  onRestart(cb: () => void): void;
}

export interface AwgDriver {
  readonly kind: AwgKind;
  /** False for plain WireGuard: obfuscation is off. */
  readonly obfuscation: boolean;
  device(name: string): AwgDevice;
  /** The obfuscation clients must use with this node (neutral when off). */
  effectiveObfuscation(own: AwgObfuscation): AwgObfuscation;
}

/** Options shared by drivers. */
export interface DriverOptions {
  log: Logger;
  /** Directory for short-lived 0600 files (`wg syncconf` input). */
  runtimeDir: string;
}

const SOCKET_DIRS: Record<"amneziawg-go" | "wireguard-go", string> = {
  "amneziawg-go": "/var/run/amneziawg",
  "wireguard-go": "/var/run/wireguard",
};
/** How long a userspace daemon may take to create its socket. */
const SOCKET_WAIT_MS = 15_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sets MTU, brings the link up, and turns off reverse-path filtering on it (§5.2). */
async function linkUp(name: string, mtu: number): Promise<void> {
  await mustRun(["ip", "link", "set", "dev", name, "mtu", String(mtu), "up"]);
  await runCommand(["sysctl", "-q", "-w", `net.ipv4.conf.${name}.rp_filter=0`]);
}

async function linkExists(name: string): Promise<boolean> {
  return (await runCommand(["ip", "link", "show", "dev", name])).code === 0;
}

function peerToUapi(p: AwgPeer): UapiPeer {
  return {
    publicKey: p.publicKey,
    presharedKey: p.presharedKey,
    endpoint: p.endpoint,
    persistentKeepalive: p.persistentKeepalive,
    replaceAllowedIps: true,
    allowedIps: p.allowedIps,
  };
}

const ZERO_KEY = new Uint8Array(32).toBase64();

/** Whether the live peer already matches the wanted one (endpoint only if one is wanted). */
function peerMatches(want: AwgPeer, live: WgDump["peers"][number]): boolean {
  const psk = want.presharedKey || null;
  if ((live.presharedKey === ZERO_KEY ? null : live.presharedKey) !== psk) return false;
  if (want.endpoint && live.endpoint !== want.endpoint) return false;
  if ((want.persistentKeepalive ?? null) !== live.persistentKeepalive) return false;
  const a = [...want.allowedIps].sort();
  const b = [...live.allowedIps].sort();
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Whether the device keys of a dump show `o` in force. amneziawg-go's `get`
 * leaves out a number key whose value is zero, so an absent one reads as 0.
 */
function obfuscationApplied(dump: WgDump, o: AwgObfuscation): boolean {
  const have = new Map(dump.interface.awgFields.map((f) => {
    const eq = f.indexOf("=");
    return [f.slice(0, eq), f.slice(eq + 1)];
  }));
  return OBFUSCATION_NUMBER_KEYS.every((k) => (have.get(k) ?? "0") === String(o[k])) &&
    OBFUSCATION_TEMPLATE_KEYS.every((k) => !o[k] || have.get(k) === o[k]);
}

/** The set request that turns `live` into `config` (null when nothing differs). */
export function diffRequest(
  live: WgDump,
  config: AwgDeviceConfig,
  withObfuscation: boolean,
): UapiSet | null {
  const req: { -readonly [K in keyof UapiSet]: UapiSet[K] } = { peers: [] };
  let changed = false;
  if (live.interface.privateKey !== config.privateKey) {
    req.privateKey = config.privateKey;
    changed = true;
  }
  if (live.interface.listenPort !== config.listenPort) {
    req.listenPort = config.listenPort;
    changed = true;
  }
  if (withObfuscation && !obfuscationApplied(live, config.obfuscation)) {
    req.obfuscation = config.obfuscation;
    changed = true;
  }
  const want = new Map(config.peers.map((p) => [p.publicKey, p]));
  const liveByKey = new Map(live.peers.map((p) => [p.publicKey, p]));
  const peers: UapiPeer[] = [];
  for (const p of live.peers) {
    if (!want.has(p.publicKey)) peers.push({ publicKey: p.publicKey, remove: true });
  }
  for (const p of config.peers) {
    const l = liveByKey.get(p.publicKey);
    if (l && peerMatches(p, l)) continue;
    peers.push(peerToUapi(p));
  }
  req.peers = peers;
  return changed || peers.length > 0 ? req : null;
}

/** A userspace daemon (wireguard-go / amneziawg-go) configured through its UAPI socket. */
class UserspaceDevice implements AwgDevice {
  readonly #uapi: UapiClient;
  #proc: Supervisor | null = null;
  #restartCbs: (() => void)[] = [];
  #mtu = 1420;

  constructor(
    readonly name: string,
    readonly program: "amneziawg-go" | "wireguard-go",
    readonly obfuscation: boolean,
    readonly log: Logger,
  ) {
    this.#uapi = new UapiClient(`${SOCKET_DIRS[program]}/${name}.sock`);
  }

  onRestart(cb: () => void): void {
    this.#restartCbs.push(cb);
  }

  async up(mtu: number): Promise<void> {
    this.#mtu = mtu;
    if (this.#proc === null && await this.#uapi.alive()) {
      this.log.info("adopted a running interface", {
        code: "interface-adopted",
        interface: this.name,
      });
    } else if (this.#proc === null) {
      const proc = new Supervisor({
        name: `${this.program} ${this.name}`,
        argv: [this.program, "-f", this.name],
        env: { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1", LOG_LEVEL: "error" },
        log: this.log,
        onCrash: () => this.#uapi.close(),
        onRestart: () => void this.#afterRestart(),
      });
      try {
        proc.start();
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) {
          throw new AgentError(
            "program-missing",
            `${this.program} is not installed; install it or choose another --dataplane`,
            GrpcCode.FAILED_PRECONDITION,
          );
        }
        throw e;
      }
      this.#proc = proc;
      await this.#waitSocket();
    } else if (!(await this.#uapi.alive())) {
      await this.#waitSocket();
    }
    await linkUp(this.name, mtu);
  }

  async #afterRestart(): Promise<void> {
    try {
      await this.#waitSocket();
      await linkUp(this.name, this.#mtu);
      for (const cb of this.#restartCbs) cb();
    } catch (e) {
      this.log.error("interface did not come back after its daemon restarted", {
        code: "interface-restart-failed",
        interface: this.name,
        error: e,
      });
    }
  }

  async #waitSocket(): Promise<void> {
    const end = Date.now() + SOCKET_WAIT_MS;
    while (Date.now() < end) {
      // A daemon that exits at once is logged and restarted by its supervisor.
      if (await this.#uapi.alive()) return;
      await sleep(25);
    }
    throw new AgentError(
      "interface-not-up",
      `${this.program} did not create ${this.#uapi.socketPath} within ${SOCKET_WAIT_MS} ms ` +
        "(is /dev/net/tun available and does the agent hold CAP_NET_ADMIN?)",
      GrpcCode.UNAVAILABLE,
    );
  }

  alive(): Promise<boolean> {
    return this.#uapi.alive();
  }

  async sync(config: AwgDeviceConfig): Promise<void> {
    const req = diffRequest(await this.#uapi.get(), config, this.obfuscation);
    if (req) await this.#uapi.set(renderUapiSet(req, { allowNeutral: true }));
  }

  async upsertPeer(peer: AwgPeer): Promise<void> {
    await this.#uapi.set(renderUapiSet({ peers: [peerToUapi(peer)] }));
  }

  async removePeer(publicKey: string): Promise<void> {
    await this.#uapi.set(renderUapiSet({ peers: [{ publicKey, remove: true }] }));
  }

  dump(): Promise<WgDump> {
    return this.#uapi.get();
  }

  async down(): Promise<void> {
    const proc = this.#proc;
    this.#proc = null;
    this.#uapi.close();
    if (proc) await proc.stop();
    // An adopted daemon (or one that ignored SIGTERM) exits once its link is gone.
    if (await linkExists(this.name)) await runCommand(["ip", "link", "del", "dev", this.name]);
  }
}

/** A kernel interface configured with the `awg` / `wg` tools. */
class KernelDevice implements AwgDevice {
  constructor(
    readonly name: string,
    readonly tool: "awg" | "wg",
    readonly linkType: "amneziawg" | "wireguard",
    readonly runtimeDir: string,
  ) {}

  onRestart(_cb: () => void): void {
    // A kernel interface has no daemon to restart.
  }

  async up(mtu: number): Promise<void> {
    if (!(await linkExists(this.name))) {
      await mustRun(["ip", "link", "add", "dev", this.name, "type", this.linkType]);
    }
    await linkUp(this.name, mtu);
  }

  async alive(): Promise<boolean> {
    return (await runCommand([this.tool, "show", this.name, "dump"])).code === 0;
  }

  async sync(config: AwgDeviceConfig): Promise<void> {
    const text = renderServerConfig({
      interfaceName: "awg0", // placeholder: the name is not part of the syncconf input
      innerLink: false,
      privateKey: config.privateKey,
      listenPort: config.listenPort,
      obfuscation: this.tool === "awg" ? config.obfuscation : NEUTRAL_OBFUSCATION,
      peers: config.peers.map((p) => ({
        publicKey: p.publicKey,
        presharedKey: p.presharedKey,
        allowedIps: p.allowedIps,
        endpoint: p.endpoint,
      })),
    }, { allowNeutral: true });
    const file = `${this.runtimeDir}/${this.name}.conf`;
    await Deno.mkdir(this.runtimeDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(
      file,
      stripAwgKeys(text, this.tool === "awg" ? "awg-setconf" : "wg-setconf"),
    );
    try {
      await mustRun([this.tool, "syncconf", this.name, file]);
    } finally {
      await Deno.remove(file).catch(() => {});
    }
    for (const p of config.peers) {
      if (p.persistentKeepalive !== undefined) {
        await mustRun([
          this.tool,
          "set",
          this.name,
          "peer",
          p.publicKey,
          "persistent-keepalive",
          String(p.persistentKeepalive),
        ]);
      }
    }
  }

  async upsertPeer(peer: AwgPeer): Promise<void> {
    // The rendered UAPI request is the validation of every field.
    renderUapiSet({ peers: [peerToUapi(peer)] });
    // The PSK goes through a 0600 file: never on a command line, and no stdin pipe (each
    // process started with one costs the agent memory it does not get back).
    const pskFile = `${this.runtimeDir}/${this.name}.psk`;
    const argv = [this.tool, "set", this.name, "peer", peer.publicKey];
    argv.push("preshared-key", peer.presharedKey ? pskFile : "/dev/null");
    if (peer.endpoint) argv.push("endpoint", peer.endpoint);
    if (peer.persistentKeepalive !== undefined) {
      argv.push("persistent-keepalive", String(peer.persistentKeepalive));
    }
    if (peer.allowedIps.length > 0) argv.push("allowed-ips", peer.allowedIps.join(","));
    if (peer.presharedKey) {
      await Deno.mkdir(this.runtimeDir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(pskFile, peer.presharedKey + "\n");
    }
    try {
      await mustRun(argv);
    } finally {
      if (peer.presharedKey) await Deno.remove(pskFile).catch(() => {});
    }
  }

  async removePeer(publicKey: string): Promise<void> {
    renderUapiSet({ peers: [{ publicKey, remove: true }] });
    await mustRun([this.tool, "set", this.name, "peer", publicKey, "remove"]);
  }

  async dump(): Promise<WgDump> {
    return parseWgDump(await mustRun([this.tool, "show", this.name, "dump"]));
  }

  async down(): Promise<void> {
    if (await linkExists(this.name)) await mustRun(["ip", "link", "del", "dev", this.name]);
  }
}

async function onPath(program: string): Promise<boolean> {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    if (!dir) continue;
    try {
      const st = await Deno.stat(`${dir}/${program}`);
      if (st.isFile && ((st.mode ?? 0) & 0o111) !== 0) return true;
    } catch { /* not here */ }
  }
  return false;
}

async function moduleLoaded(name: string): Promise<boolean> {
  try {
    return (await Deno.stat(`/sys/module/${name}`)).isDirectory;
  } catch {
    return false;
  }
}

/** Finds the best data plane present, in the order of the table above. */
export async function detectAwgKind(): Promise<AwgKind | null> {
  if (await moduleLoaded("amneziawg") && await onPath("awg")) return "amneziawg-kernel";
  if (await onPath("amneziawg-go")) return "amneziawg-go";
  if (await moduleLoaded("wireguard") && await onPath("wg")) return "wireguard-kernel";
  if (await onPath("wireguard-go")) return "wireguard-go";
  return null;
}

/** The driver for `kind` ("auto" detects one; throws an actionable error when none exists). */
export async function createAwgDriver(
  setting: AwgKind | "auto",
  opts: DriverOptions,
): Promise<AwgDriver> {
  const kind = setting === "auto" ? await detectAwgKind() : setting;
  if (kind === null) {
    throw new AgentError(
      "no-dataplane",
      "no AmneziaWG or WireGuard found: install amneziawg (kernel module + awg tools) or " +
        "amneziawg-go, or at least wireguard-go / the wireguard module with wireguard-tools",
      GrpcCode.FAILED_PRECONDITION,
    );
  }
  const obfuscation = kind.startsWith("amneziawg");
  if (!obfuscation) {
    opts.log.warn(
      "plain WireGuard only: AmneziaWG obfuscation is off on this node; install amneziawg to turn it on",
      { code: "obfuscation-off", dataplane: kind },
    );
  }
  return {
    kind,
    obfuscation,
    device(name) {
      switch (kind) {
        case "amneziawg-go":
        case "wireguard-go":
          return new UserspaceDevice(name, kind, obfuscation, opts.log);
        case "amneziawg-kernel":
          return new KernelDevice(name, "awg", "amneziawg", opts.runtimeDir);
        case "wireguard-kernel":
          return new KernelDevice(name, "wg", "wireguard", opts.runtimeDir);
      }
    },
    effectiveObfuscation(own) {
      return obfuscation ? own : { ...NEUTRAL_OBFUSCATION };
    },
  };
}
