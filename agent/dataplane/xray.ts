/**
 * Xray VLESS + REALITY: the node's config as core renders it, one xray
 * process run and restarted on crash (with backoff), users added and
 * removed live through Xray's API (no restart, no dropped connections);
 * a change the API cannot make (port, decoy, names, short ids) or an API
 * failure rewrites the config and restarts the process. The pushed config
 * and its revision are persisted (`xray.json`) and restored at start
 * (CONTRACTS.md §7.8), so Xray serves again with no controller.
 */
import { renderXrayServerConfig, VISION_FLOW, type XrayClient } from "../../core/dataplane/mod.ts";
import type { Logger } from "../../core/log.ts";
import { AgentError, GrpcCode, invalid } from "../errors.ts";
import { type StateStore, writeFileAtomic } from "../store.ts";
import { Supervisor } from "./supervisor.ts";
import { XrayApi } from "./xray_api.ts";

/** What a PushConfig for XRay carries, checked. */
export interface XrayPush {
  port: number;
  dest: string;
  serverNames: string[];
  shortIds: string[];
  clients: XrayClient[];
}

interface XrayFile {
  revision: string;
  config: XrayPush | null;
}

export interface XrayOptions {
  store: StateStore;
  log: Logger;
  /** The xray program: a name on PATH or an absolute path. */
  program: string;
  /** Loopback port of Xray's API. */
  apiPort: number;
  /** REALITY private key (base64url). */
  privateKey: string;
}

export interface XrayStatus {
  running: boolean;
  clients: number;
  port: number;
  detail: string;
}

const FILE = "xray.json";
const READY_MS = 20_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Renders (and so validates) a config; throws INVALID_ARGUMENT on a bad field. */
export function renderXray(push: XrayPush, privateKey: string, apiPort: number): string {
  return renderXrayServerConfig({
    port: push.port,
    privateKey,
    dest: push.dest,
    serverNames: push.serverNames,
    shortIds: push.shortIds,
    clients: push.clients,
    api: { port: apiPort },
  });
}

export class XrayManager {
  #config: XrayPush | null = null;
  #revision = 0n;
  #proc: Supervisor | null = null;
  #ready = false;
  #lastError = "";
  readonly #api: XrayApi;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(readonly opts: XrayOptions) {
    this.#api = new XrayApi(opts.apiPort);
  }

  get revision(): bigint {
    return this.#revision;
  }

  get config(): XrayPush | null {
    return this.#config;
  }

  get running(): boolean {
    return this.#proc?.running === true && this.#ready;
  }

  /** Loads the persisted config and starts Xray when there is one (failures logged). */
  restore(): Promise<void> {
    return this.#serial(async () => {
      const file = await this.opts.store.read<XrayFile>(FILE);
      if (file === null || file.config === null) return;
      try {
        renderXray(file.config, this.opts.privateKey, this.opts.apiPort);
        this.#config = file.config;
        this.#revision = BigInt(file.revision);
      } catch (e) {
        this.opts.log.error("persisted Xray config is invalid; Xray stays off until a push", {
          code: "corrupt-state",
          error: e,
        });
        return;
      }
      await this.#rebuild(true).catch((e) => this.#fail(e));
    });
  }

  /**
   * PushConfig for XRay (§1.3): lower revision → INTERNAL; equal while
   * running → no-op; otherwise a full rebuild (users only: live through
   * the API).
   */
  push(config: XrayPush, revision: bigint): Promise<{ applied: bigint; reloaded: boolean }> {
    return this.#serial(async () => {
      renderXray(config, this.opts.privateKey, this.opts.apiPort); // validation first
      if (revision < this.#revision) {
        throw new AgentError(
          "stale-revision",
          `stale revision ${revision} (last applied ${this.#revision})`,
          GrpcCode.INTERNAL,
        );
      }
      if (revision === this.#revision && this.running) {
        return { applied: this.#revision, reloaded: false };
      }
      const old = { config: this.#config, revision: this.#revision, running: this.running };
      this.#config = config;
      this.#revision = revision;
      try {
        const usersOnly = old.config !== null && old.running &&
          sameExceptClients(old.config, config);
        if (usersOnly && await this.#applyUserDiff(old.config!.clients, config.clients)) {
          await this.#writeConfig();
        } else {
          await this.#rebuild();
        }
      } catch (e) {
        // Not applied: back to the previous config (and its process), nothing persisted.
        this.#config = old.config;
        this.#revision = old.revision;
        if (old.config !== null && old.running) await this.#rebuild().catch(() => {});
        else if (old.config !== null) await this.#writeConfig().catch(() => {});
        else await this.#stopProcess();
        throw e;
      }
      await this.#persist();
      return { applied: this.#revision, reloaded: true };
    });
  }

  /** AddPeer for XRay: `applied:false` when the UUID is already there. */
  addClient(client: XrayClient): Promise<boolean> {
    return this.#serial(async () => {
      const config = this.#needConfig();
      if (config.clients.some((c) => c.id === client.id)) return false;
      const next = { ...config, clients: [...config.clients, client] };
      renderXray(next, this.opts.privateKey, this.opts.apiPort);
      this.#config = next;
      await this.#persist();
      await this.#writeConfig();
      if (
        !(this.running && await this.#tryApi(() => this.#api.addUser(client.id, client.flow ?? "")))
      ) {
        await this.#rebuild();
      }
      return true;
    });
  }

  /** RemovePeer for XRay: `applied:false` when the UUID is not there. */
  removeClient(id: string): Promise<boolean> {
    return this.#serial(async () => {
      const config = this.#needConfig();
      if (!config.clients.some((c) => c.id === id)) return false;
      this.#config = { ...config, clients: config.clients.filter((c) => c.id !== id) };
      await this.#persist();
      await this.#writeConfig();
      if (!(this.running && await this.#tryApi(() => this.#api.removeUser(id)))) {
        await this.#rebuild();
      }
      return true;
    });
  }

  /** RestartService for XRay: rebuild the instance. */
  restart(): Promise<void> {
    return this.#serial(() => this.#config ? this.#rebuild() : Promise.resolve());
  }

  status(): XrayStatus {
    const c = this.#config;
    if (c === null) return { running: false, clients: 0, port: 0, detail: "not configured" };
    const running = this.running;
    return {
      running,
      clients: c.clients.length,
      port: c.port,
      detail: running
        ? `REALITY :${c.port}`
        : `REALITY :${c.port} down: ${this.#lastError || "starting"}`,
    };
  }

  /** The process (tests kill it to prove the restart). */
  get process(): Supervisor | null {
    return this.#proc;
  }

  async stop(): Promise<void> {
    await this.#serial(() => this.#stopProcess());
  }

  async #stopProcess(): Promise<void> {
    const p = this.#proc;
    this.#proc = null;
    this.#ready = false;
    await p?.stop();
  }

  #needConfig(): XrayPush {
    if (this.#config === null) {
      throw new AgentError(
        "xray-not-configured",
        "Xray has no config yet: push one (PushConfig with PROTOCOL_XRAY_REALITY) first",
        GrpcCode.FAILED_PRECONDITION,
      );
    }
    return this.#config;
  }

  get #configPath(): string {
    return this.opts.store.path("xray-config.json");
  }

  async #writeConfig(): Promise<void> {
    const text = renderXray(this.#config!, this.opts.privateKey, this.opts.apiPort);
    await writeFileAtomic(this.#configPath, text);
  }

  /**
   * Writes the config and (re)starts xray, waiting until its API answers.
   * `keep`: leave a process that is not ready yet running (start-up: the
   * supervisor keeps retrying); otherwise it is stopped and the error thrown.
   */
  async #rebuild(keep = false): Promise<void> {
    await this.#writeConfig();
    const old = this.#proc;
    this.#proc = null;
    this.#ready = false;
    await old?.stop();
    const program = this.opts.program;
    const proc = new Supervisor({
      name: "xray",
      argv: [program, "run", "-c", this.#configPath],
      env: { XRAY_LOCATION_ASSET: this.opts.store.dir },
      log: this.opts.log,
      extraPrograms: new Set([program]),
      onCrash: () => {
        this.#ready = false;
      },
      onRestart: () => void this.#waitReady(proc).catch((e) => this.#fail(e)),
    });
    try {
      proc.start();
    } catch (e) {
      const missing = e instanceof Deno.errors.NotFound;
      throw this.#fail(
        new AgentError(
          missing ? "xray-missing" : "xray-start-failed",
          missing
            ? `xray is not installed (${program}); install it or set --xray to its path`
            : `xray cannot start: ${(e as Error).message}`,
          GrpcCode.FAILED_PRECONDITION,
        ),
      );
    }
    this.#proc = proc;
    try {
      await this.#waitReady(proc);
    } catch (e) {
      if (!keep) await this.#stopProcess();
      throw e;
    }
  }

  async #waitReady(proc: Supervisor): Promise<void> {
    const end = Date.now() + READY_MS;
    let last: unknown = null;
    while (Date.now() < end && this.#proc === proc) {
      if (proc.running) {
        try {
          // A plain TCP probe of the API port: no HTTP/2 session in this process for it.
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: this.opts.apiPort });
          conn.close();
          this.#ready = true;
          this.#lastError = "";
          this.opts.log.info("xray serving", {
            code: "xray-ready",
            port: this.#config?.port,
            clients: this.#config?.clients.length,
          });
          return;
        } catch (e) {
          last = e;
        }
      }
      await sleep(100);
    }
    if (this.#proc !== proc) return;
    throw this.#fail(
      new AgentError(
        "xray-not-ready",
        `xray did not open its API port ${this.opts.apiPort} within ${READY_MS} ms` +
          (last ? `: ${(last as Error).message}` : "") + " (see the xray lines in the log)",
        GrpcCode.UNAVAILABLE,
      ),
    );
  }

  async #applyUserDiff(before: XrayClient[], after: XrayClient[]): Promise<boolean> {
    const key = (c: XrayClient) => `${c.id}/${c.flow ?? ""}`;
    const now = new Set(after.map(key));
    const was = new Set(before.map(key));
    for (const c of before) {
      if (!now.has(key(c)) && !(await this.#tryApi(() => this.#api.removeUser(c.id)))) return false;
    }
    for (const c of after) {
      if (!was.has(key(c)) && !(await this.#tryApi(() => this.#api.addUser(c.id, c.flow ?? "")))) {
        return false;
      }
    }
    return true;
  }

  async #tryApi(fn: () => Promise<unknown>): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (e) {
      this.opts.log.warn("xray API call failed; restarting xray with the full config instead", {
        code: "xray-api-failed",
        error: e,
      });
      return false;
    }
  }

  #fail(e: unknown): AgentError {
    const err = e instanceof AgentError ? e : new AgentError("xray-failed", String(e));
    this.#lastError = err.message;
    this.opts.log.error("xray not serving", { code: err.code, error: err });
    return err;
  }

  async #persist(): Promise<void> {
    const file: XrayFile = { revision: String(this.#revision), config: this.#config };
    await this.opts.store.write(FILE, file);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn);
    this.#tail = next.catch(() => {});
    return next;
  }
}

function sameExceptClients(a: XrayPush, b: XrayPush): boolean {
  const j = (x: XrayPush) => JSON.stringify([x.port, x.dest, x.serverNames, x.shortIds]);
  return j(a) === j(b);
}

/** Checks a VLESS flow value the way the renderer does (for AddPeer). */
export function checkFlowValue(flow: string): string {
  if (flow !== "" && flow !== VISION_FLOW) {
    throw invalid("bad-flow", `peer.flow: must be empty or ${VISION_FLOW}`);
  }
  return flow;
}
