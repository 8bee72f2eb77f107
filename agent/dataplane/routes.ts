/**
 * Host routes of a client interface: `ip route replace <cidr> dev <if>` for
 * every allowed IP of every peer except the default routes (CONTRACTS.md
 * §5.2), and their removal when the peer goes. Changes are queued for a
 * short moment and written by one `ip -force -batch FILE` run per burst
 * (lines of validated tokens, no shell; a 0600 file, as a process started
 * with a stdin pipe costs the agent memory it never gives back), so
 * thousands of peers cost one process, and an AddPeer never waits for a
 * process start.
 */
import { canonicalCidr, checkLinuxInterface } from "../../core/dataplane/mod.ts";
import type { Logger } from "../../core/log.ts";
import { runCommand } from "../exec.ts";

const DEFAULTS = new Set(["0.0.0.0/0", "::/0"]);

/** The CIDRs of `allowedIps` that get a host route. */
export function routedCidrs(allowedIps: readonly string[]): string[] {
  return allowedIps.filter((c) => !DEFAULTS.has(c));
}

function fullCidr(dst: string): string {
  if (dst.includes("/")) return dst;
  return dst.includes(":") ? `${dst}/128` : `${dst}/32`;
}

/** How long route changes gather before one `ip -batch` run writes them. */
const COALESCE_MS = 25;

export class RouteSet {
  readonly #dev: string;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** cidr → wanted (true) or to be deleted (false), not yet written. */
  #pending = new Map<string, boolean>();
  #flushing: Promise<void> | null = null;
  #failures = 0;

  constructor(dev: string, readonly log: Logger, readonly runtimeDir: string) {
    this.#dev = checkLinuxInterface(dev, "interface");
  }

  /** Routes that failed to be written since start (for metrics). */
  get failures(): number {
    return this.#failures;
  }

  add(cidrs: readonly string[]): void {
    for (const c of routedCidrs(cidrs)) this.#pending.set(canonicalCidr(c, "cidr"), true);
    this.#later();
  }

  remove(cidrs: readonly string[]): void {
    for (const c of routedCidrs(cidrs)) this.#pending.set(canonicalCidr(c, "cidr"), false);
    this.#later();
  }

  #later(): void {
    if (this.#timer !== null || this.#pending.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#kick();
    }, COALESCE_MS);
  }

  /** Makes the device's routes exactly `wanted` (reads the live table first). */
  async sync(wanted: Iterable<string>): Promise<void> {
    const want = new Set<string>();
    for (const c of wanted) {
      for (const r of routedCidrs([c])) want.add(canonicalCidr(r, "cidr"));
    }
    const live = await this.#live();
    for (const c of live) if (!want.has(c)) this.#pending.set(c, false);
    for (const c of want) if (!live.has(c)) this.#pending.set(c, true);
    await this.flush();
  }

  /** Resolves once everything queued so far is written. */
  async flush(): Promise<void> {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    for (let i = 0; i < 1000 && (this.#pending.size > 0 || this.#flushing); i++) {
      if (this.#flushing) await this.#flushing;
      else this.#kick();
    }
  }

  async #live(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const fam of ["-4", "-6"]) {
      const r = await runCommand(["ip", "-j", fam, "route", "show", "dev", this.#dev]);
      if (r.code !== 0) continue; // the link is not there (yet): nothing is routed to it
      let rows: { dst?: string }[] = [];
      try {
        rows = JSON.parse(r.stdout || "[]");
      } catch { /* empty output */ }
      for (const row of rows) {
        if (!row.dst || row.dst === "default") continue;
        try {
          out.add(canonicalCidr(fullCidr(row.dst), "route"));
        } catch { /* multicast or other kernel routes we never add */ }
      }
    }
    return out;
  }

  #kick(): void {
    if (this.#flushing || this.#pending.size === 0) return;
    this.#flushing = this.#write().finally(() => {
      this.#flushing = null;
      if (this.#pending.size > 0) this.#later();
    });
  }

  async #write(): Promise<void> {
    const batch = [...this.#pending];
    this.#pending = new Map();
    const lines = batch.map(([cidr, want]) =>
      `route ${want ? "replace" : "del"} ${cidr} dev ${this.#dev}`
    );
    const file = `${this.runtimeDir}/routes-${this.#dev}.batch`;
    try {
      await Deno.mkdir(this.runtimeDir, { recursive: true, mode: 0o700 });
      await Deno.writeTextFile(file, lines.join("\n") + "\n", { mode: 0o600 });
      const r = await runCommand(["ip", "-force", "-batch", file]);
      if (r.code === 0) return;
      for (const m of r.stderr.matchAll(/Command failed -:(\d+)/g)) {
        const [cidr, want] = batch[Number(m[1]) - 1] ?? [];
        if (cidr === undefined || !want) continue; // a route already gone is fine
        this.#failures++;
        this.log.error("host route not installed", {
          code: "route-failed",
          interface: this.#dev,
          cidr,
          error: r.stderr.trim().slice(0, 300),
        });
      }
    } catch (e) {
      this.#failures++;
      this.log.error("host routes not written", { code: "route-failed", error: e });
    } finally {
      await Deno.remove(file).catch(() => {});
    }
  }

  /** Deletes every route to the device (used when the interface goes). */
  async clear(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#pending.clear();
    for (const c of await this.#live()) {
      await runCommand(["ip", "route", "del", c, "dev", this.#dev]);
    }
  }
}
