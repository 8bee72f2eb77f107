/**
 * What the controller tells a relay at run time: the revoked certificate
 * serials and the egress allow-list. It arrives on a control stream the
 * controller opens on its (authenticated) tunnel or egress session: the
 * CONNECT-shaped line `pharos-policy.invalid:1` (a name that can never
 * resolve, RFC 2606) followed by one JSON document. The relay keeps it in
 * memory only; the controller sends it again on every new session.
 * Shared by the relay (which applies it) and the controller (which sends it).
 *
 * The relay answers one line: `ok`, `stale: <revision it holds>` (an older
 * or equal revision, nothing changed) or `error: <why>`. Only relays that
 * advertise CONTROL_ALPN on their controller-only ports accept control
 * streams; an original Go relay (no ALPN) never does, and the controller
 * must not open one there.
 */
import { PharosError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { RevocationList } from "./pki/mod.ts";
import { formatConnectTarget, parseConnectTarget } from "./connect/mod.ts";

export const POLICY_HOST = "pharos-policy.invalid";
export const POLICY_PORT = 1;
export const MAX_POLICY_BYTES = 1024 * 1024;
/**
 * ALPN protocol our relay's tunnel and egress listeners advertise and the
 * controller offers when it dials them: negotiated means "a Pharos relay that
 * takes policy streams". The original relay sets no ALPN (Go's TLS server then
 * ignores the offer) and the original controller offers none, so both sides
 * must keep working without it.
 */
export const CONTROL_ALPN = "pharos-tunnel/1";

export class PolicyError extends PharosError {}

export interface PolicyDocument {
  v: 1;
  /** Monotonic; an older document than the one applied is ignored. */
  revision: number;
  revoked_serials: string[];
  /** `host:port` entries (IPv6 in brackets) the controller may reach through egress. */
  egress_allow: string[];
  /**
   * Sent on the tunnel by our controller: it takes plain HTTP/2 on tunnel
   * substreams (it tells them from TLS by the first byte), so the relay may
   * skip the inner TLS there; the tunnel's mutual TLS already authenticated
   * both ends. Absent (original controller, egress pushes): inner TLS.
   */
  plain_h2?: boolean;
}

/** Canonical `host:port` key for allow-list comparisons. */
export function targetKey(host: string, port: number): string {
  return formatConnectTarget(host.toLowerCase(), port);
}

/** A relay's answer to a policy document, parsed. */
export type PolicyAnswer =
  | { kind: "ok" }
  | { kind: "stale"; relayRevision: number }
  | { kind: "error"; message: string };

export function formatPolicyAnswer(a: PolicyAnswer): string {
  switch (a.kind) {
    case "ok":
      return "ok\n";
    case "stale":
      return `stale: ${a.relayRevision}\n`;
    case "error":
      return `error: ${a.message.replaceAll("\n", " ")}\n`;
  }
}

/** Parses an answer line; anything unrecognised is an error answer. */
export function parsePolicyAnswer(line: string): PolicyAnswer {
  const text = line.trim();
  if (text === "ok") return { kind: "ok" };
  const stale = /^stale: ([0-9]{1,16})$/.exec(text);
  if (stale && Number.isSafeInteger(Number(stale[1]))) {
    return { kind: "stale", relayRevision: Number(stale[1]) };
  }
  if (text.startsWith("error: ")) return { kind: "error", message: text.slice(7) };
  return { kind: "error", message: `unexpected answer "${text.slice(0, 80)}"` };
}

/**
 * Observers of a RelayPolicy's revocation list, keyed by the list itself:
 * a verifier that was handed only `policy.revoked` (a listener, the backend
 * leg) can still learn that a new document changed it and drop the sessions
 * whose certificate it now names.
 */
const watchers = new WeakMap<RevocationList, Set<() => void>>();

/** Calls `fn` after every applied policy that owns `list`; returns the unsubscribe function. */
export function watchRevocations(list: RevocationList, fn: () => void): () => void {
  let set = watchers.get(list);
  if (!set) watchers.set(list, set = new Set());
  set.add(fn);
  return () => set.delete(fn);
}

export class RelayPolicy {
  readonly revoked = new RevocationList();
  #allow = new Set<string>();
  #static = new Set<string>();
  #revision = 0;
  #plainH2 = false;

  /** `staticAllow`: entries from the relay's own configuration (legacy controllers). */
  constructor(staticAllow: string[] = []) {
    for (const e of staticAllow) this.#static.add(canonicalEntry(e, "--egress-allow"));
  }

  get revision(): number {
    return this.#revision;
  }

  /** `plain_h2` of the last applied document. */
  get plainH2(): boolean {
    return this.#plainH2;
  }

  /** True when the controller may reach host:port through egress. */
  allows(host: string, port: number): boolean {
    const key = targetKey(host, port);
    return this.#allow.has(key) || this.#static.has(key);
  }

  /** Parses, validates and applies a policy document. Returns false if it was stale. */
  apply(json: string, log?: Logger): boolean {
    if (json.length > MAX_POLICY_BYTES) {
      throw new PolicyError("too-large", `relay policy is larger than ${MAX_POLICY_BYTES} bytes`);
    }
    let doc: PolicyDocument;
    try {
      doc = JSON.parse(json);
    } catch (e) {
      throw new PolicyError("malformed", `relay policy is not JSON: ${(e as Error).message}`);
    }
    if (typeof doc !== "object" || doc === null || doc.v !== 1) {
      throw new PolicyError("malformed", "relay policy must be an object with v = 1");
    }
    if (!Number.isSafeInteger(doc.revision) || doc.revision < 1) {
      throw new PolicyError("malformed", "relay policy revision must be a positive integer");
    }
    for (const f of ["revoked_serials", "egress_allow"] as const) {
      if (!Array.isArray(doc[f]) || doc[f].some((x) => typeof x !== "string")) {
        throw new PolicyError("malformed", `relay policy ${f} must be an array of strings`);
      }
    }
    if (doc.plain_h2 !== undefined && typeof doc.plain_h2 !== "boolean") {
      throw new PolicyError("malformed", "relay policy plain_h2 must be a boolean");
    }
    for (const s of doc.revoked_serials) {
      if (!/^[0-9a-fA-F:]{1,64}$/.test(s)) {
        throw new PolicyError("malformed", `bad serial "${s.slice(0, 70)}"`);
      }
    }
    const allow = new Set(doc.egress_allow.map((e) => canonicalEntry(e, "egress_allow")));
    if (doc.revision <= this.#revision) return false;
    this.revoked.replace(doc.revoked_serials);
    this.#allow = allow;
    this.#revision = doc.revision;
    this.#plainH2 = doc.plain_h2 === true;
    log?.info("policy applied", {
      revision: doc.revision,
      plain_h2: this.#plainH2,
      revoked: this.revoked.size,
      egress_allow: allow.size,
    });
    for (const fn of [...(watchers.get(this.revoked) ?? [])]) {
      try {
        fn();
      } catch (e) {
        log?.error("revocation watcher failed", { error: e });
      }
    }
    return true;
  }
}

function canonicalEntry(entry: string, where: string): string {
  try {
    const t = parseConnectTarget(entry);
    return targetKey(t.host, t.port);
  } catch (e) {
    throw new PolicyError(
      "malformed",
      `${where}: "${entry.slice(0, 80)}" is not host:port (${(e as Error).message})`,
    );
  }
}
