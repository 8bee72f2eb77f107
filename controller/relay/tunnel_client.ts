/**
 * The controller end of a reverse tunnel: it dials the remote relay (the
 * controller never listens), becomes the yamux server, and hands every
 * substream the relay opens to its own gRPC server as an accepted
 * connection. On loss it redials with backoff: 1 s, doubling to 60 s, back
 * to 1 s after a session that lived at least 5 s.
 *
 * Policy: on each new session, and on demand, the controller sends the relay
 * its policy (revoked serials, egress allow-list) on a stream it opens, each
 * push bounded by a short deadline. Only a relay that negotiated the ALPN
 * CONTROL_ALPN gets one: an original Go relay (no ALPN) never accepts a
 * stream, so none is opened there; the status and the log say "original
 * relay: revocation enforced by the controller only" (the controller's gRPC
 * server checks every device itself, see grpc/device_guard.ts).
 *
 * Inner TLS: with `acceptPlain` the policy also says `plain_h2`, and our
 * relay then speaks plain HTTP/2 on new substreams (the tunnel's mutual TLS
 * authenticated both ends already); each substream goes to accept or
 * acceptPlain by its first byte, so an original relay's TLS still works.
 *
 * Revocation: when the relay's own certificate is revoked, the live session
 * is closed at once. The client keeps dialling only at the maximum backoff
 * (60 s) and refuses the relay right after each handshake until it presents
 * a new, unrevoked relay certificate, which is then taken back without a
 * restart.
 */
import type { Duplex } from "node:stream";
import type { Logger } from "../../core/log.ts";
import { MuxSession } from "../../core/mux/mod.ts";
import type { RevocationList, VerifiedCertificate } from "../../core/pki/mod.ts";
import { formatPolicyAnswer, type PolicyDocument } from "../../core/relay_policy.ts";
import { nodeToWeb, webToNode } from "../../relay/host/web_node.ts";
import { TUNNEL_STREAM_WINDOW } from "../../relay/tunnel.ts";
import { type ControllerTlsIdentity, dialRelay } from "./dial.ts";
import { POLICY_ACK_TIMEOUT_MS, pushPolicy } from "./policy_push.ts";

/** "P" of the HTTP/2 connection preface; a TLS ClientHello starts with 0x16. */
const H2_PREFACE_FIRST_BYTE = 0x50;

export const ORIGINAL_RELAY_NOTE = "original relay: revocation enforced by the controller only";

/** Where the controller announces new revocations (controller/revocation.ts fits). */
export interface RevocationFeed {
  readonly list: RevocationList;
  subscribe(fn: () => void): () => void;
}

export interface TunnelClientOptions {
  target: { host: string; port: number; serverName?: string };
  identity: ControllerTlsIdentity;
  /** Takes one substream as an accepted connection of the gRPC server. */
  accept(conn: Duplex): void;
  /**
   * Takes a substream on which the relay speaks plain HTTP/2 (no inner TLS):
   * the tunnel's mutual TLS already authenticated both ends. When given, the
   * policy announces `plain_h2` to our relays; a substream is routed here
   * only if it starts with the HTTP/2 preface, so a relay that keeps the
   * inner TLS (an original one, or ours before the policy) still works.
   */
  acceptPlain?(conn: Duplex): void;
  /** The policy to send on every new session (a fresh revision each call). */
  policy(): PolicyDocument;
  /**
   * The relay answered "stale: N": move the revision counter past N (if
   * plausible). The push is then retried once with a fresh document.
   */
  catchUp?(relayRevision: number): boolean;
  /** New revocations; a session whose relay certificate is revoked is closed. */
  revocations?: RevocationFeed;
  log: Logger;
  backoff?: { initialMs: number; maxMs: number; stableMs: number };
  keepAliveIntervalMs?: number;
  /** Deadline of one policy push (default 5 s). */
  policyTimeoutMs?: number;
}

export type TunnelState = "connecting" | "up" | "backoff" | "stopped";
/** `pharos`: negotiated CONTROL_ALPN, takes policy; `original`: an original Go relay. */
export type RelayKind = "pharos" | "original";
/** What a push came to: the relay's answer, or why there was none. */
export type PushOutcome = "ok" | "stale" | "error" | "failed" | "unsupported" | "no-session";

export interface TunnelStatus {
  state: TunnelState;
  /** Kind of the relay on the live (or last) session; null before the first. */
  relay: RelayKind | null;
  /** ORIGINAL_RELAY_NOTE for an original relay, else null. */
  note: string | null;
  /** Serial of the relay certificate on the live (or last) session. */
  relaySerial: string | null;
  sessions: number;
  policy: {
    /** Pushes attempted (streams opened). */
    sent: number;
    /** Pushes not attempted because the relay has no policy channel. */
    skipped: number;
    lastRevision: number | null;
    lastAnswer: string | null;
  };
  /** Why the last session ended or the last dial failed. */
  lastError: { code: string; message: string } | null;
}

export class TunnelClient {
  #state: TunnelState = "connecting";
  #session: MuxSession | null = null;
  #peer: VerifiedCertificate | null = null;
  #kind: RelayKind | null = null;
  #stopped = false;
  #wake: (() => void) | null = null;
  /** Aborts the dial in progress (stop() must not wait for it, nor let it come up). */
  #dialAbort: AbortController | null = null;
  #loop: Promise<void> | null = null;
  #upWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  #unsubscribe: (() => void) | null = null;
  #policy = {
    sent: 0,
    skipped: 0,
    lastRevision: null as number | null,
    lastAnswer: null as string | null,
  };
  #lastError: { code: string; message: string } | null = null;
  /** Sessions established so far (observability and tests). */
  sessions = 0;

  constructor(private readonly opts: TunnelClientOptions) {}

  get state(): TunnelState {
    return this.#state;
  }

  get status(): TunnelStatus {
    return {
      state: this.#state,
      relay: this.#kind,
      note: this.#kind === "original" ? ORIGINAL_RELAY_NOTE : null,
      relaySerial: this.#peer?.serial ?? null,
      sessions: this.sessions,
      policy: { ...this.#policy },
      lastError: this.#lastError,
    };
  }

  start(): void {
    this.#unsubscribe ??= this.opts.revocations?.subscribe(() => this.#checkRevoked()) ?? null;
    this.#loop ??= this.#run();
  }

  /** Resolves when a session is up (immediately if it is); rejects once stopped. */
  whenUp(): Promise<void> {
    if (this.#state === "up") return Promise.resolve();
    if (this.#stopped) return Promise.reject(stoppedError());
    return new Promise((resolve, reject) => this.#upWaiters.push({ resolve, reject }));
  }

  /** Sends the current policy on the live session, if any and if the relay takes it. */
  async pushPolicy(): Promise<PushOutcome> {
    const s = this.#session;
    if (!s || s.isClosed) return "no-session";
    return await this.#sendPolicy(s);
  }

  /**
   * Ends the live session and the redial loop. A dial in progress is
   * abandoned: it can neither come up afterwards nor hold stop() up.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#state = "stopped";
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#wake?.();
    this.#dialAbort?.abort(stoppedError());
    for (const w of this.#upWaiters.splice(0)) w.reject(stoppedError());
    await this.#session?.close();
    await this.#loop;
  }

  #checkRevoked(): void {
    const peer = this.#peer;
    const list = this.opts.revocations?.list;
    if (!peer || !list || !list.has(peer.serial) || !this.#session) return;
    this.#lastError = {
      code: "relay-revoked",
      message: `relay certificate serial ${peer.serial} has been revoked`,
    };
    this.opts.log.warn("relay certificate revoked: tunnel closed", {
      code: "relay-revoked",
      relay: this.#where(),
      serial: peer.serial,
    });
    void this.#session.close();
  }

  async #sendPolicy(session: MuxSession): Promise<PushOutcome> {
    const log = this.opts.log;
    if (this.#kind !== "pharos") {
      this.#policy.skipped++;
      log.debug("policy not sent", { code: "original-relay", note: ORIGINAL_RELAY_NOTE });
      return "unsupported";
    }
    const timeout = this.opts.policyTimeoutMs ?? POLICY_ACK_TIMEOUT_MS;
    try {
      let doc = this.#document();
      this.#policy.sent++;
      let answer = await pushPolicy(session, doc, timeout);
      if (answer.kind === "stale") {
        const moved = this.opts.catchUp?.(answer.relayRevision) ?? false;
        log.info("the relay holds a newer policy revision; sending a fresh one", {
          code: "policy-stale",
          sent: doc.revision,
          relay_holds: answer.relayRevision,
          caught_up: moved,
        });
        doc = this.#document();
        this.#policy.sent++;
        answer = await pushPolicy(session, doc, timeout);
      }
      this.#policy.lastRevision = doc.revision;
      this.#policy.lastAnswer = formatPolicyAnswer(answer).trim();
      if (answer.kind === "ok") {
        log.debug("policy applied by the relay", { revision: doc.revision });
      } else {
        log.warn("relay refused the policy", {
          code: answer.kind === "stale" ? "policy-stale" : "policy-refused",
          revision: doc.revision,
          answer: this.#policy.lastAnswer,
        });
      }
      return answer.kind;
    } catch (e) {
      this.#policy.lastAnswer = null;
      log.warn("could not send the policy to the relay", {
        code: (e as { code?: string }).code ?? "policy-failed",
        error: e,
      });
      return "failed";
    }
  }

  /** Hands a substream to accept or acceptPlain by its first byte (TLS record or `PRI`). */
  #route(conn: Duplex): void {
    const plain = this.opts.acceptPlain;
    if (!plain) return this.opts.accept(conn);
    const sniff = () => {
      const first = conn.read(1) as Uint8Array | null;
      if (first === null) return;
      conn.off("readable", sniff);
      conn.off("end", ended);
      conn.off("error", ended);
      conn.unshift(first);
      if (first[0] === H2_PREFACE_FIRST_BYTE) plain(conn);
      else this.opts.accept(conn);
    };
    const ended = () => {
      conn.off("readable", sniff);
      conn.off("end", ended);
      conn.off("error", ended);
      conn.destroy();
    };
    conn.on("readable", sniff);
    conn.once("end", ended);
    // A substream reset before its first byte must not be an unhandled "error".
    conn.once("error", ended);
  }

  /** The policy to push; it announces plain HTTP/2 when this side takes it. */
  #document(): PolicyDocument {
    const doc = this.opts.policy();
    return this.opts.acceptPlain ? { ...doc, plain_h2: true } : doc;
  }

  #where(): string {
    return `${this.opts.target.host}:${this.opts.target.port}`;
  }

  async #run(): Promise<void> {
    const b = this.opts.backoff ?? { initialMs: 1000, maxMs: 60_000, stableMs: 5000 };
    const where = this.#where();
    let delay = b.initialMs;
    while (!this.#stopped) {
      this.#state = "connecting";
      let started = 0;
      const abort = new AbortController();
      this.#dialAbort = abort;
      try {
        const { socket, relay, policyChannel } = await dialRelay(
          this.opts.target,
          this.opts.identity,
          undefined,
          abort.signal,
        );
        this.#dialAbort = null;
        // stop() came between the dial's end and here: nobody will close this one.
        if (this.#stopped) {
          socket.destroy();
          break;
        }
        const session = new MuxSession(nodeToWeb(socket), {
          role: "server",
          windowSize: TUNNEL_STREAM_WINDOW,
          keepAliveIntervalMs: this.opts.keepAliveIntervalMs ?? 20_000,
        });
        this.#session = session;
        this.#peer = relay;
        this.#kind = policyChannel ? "pharos" : "original";
        this.#lastError = null;
        started = Date.now();
        this.sessions++;
        this.#state = "up";
        if (policyChannel) {
          this.opts.log.info("relay tunnel up", { relay: where });
        } else {
          this.opts.log.warn("relay tunnel up: " + ORIGINAL_RELAY_NOTE, {
            code: "original-relay",
            relay: where,
            note: ORIGINAL_RELAY_NOTE,
          });
        }
        for (const w of this.#upWaiters.splice(0)) w.resolve();
        // Revoked between the handshake and now: do not keep it.
        this.#checkRevoked();
        void this.#sendPolicy(session);
        for await (const stream of session) this.#route(webToNode(stream));
        const reason = await session.closed;
        this.opts.log.warn("relay tunnel down", {
          relay: where,
          reason: reason?.message ?? "closed",
        });
      } catch (e) {
        this.#dialAbort = null;
        if (this.#stopped) break;
        const code = (e as { code?: string }).code ?? "dial-failed";
        this.#lastError = { code, message: (e as Error).message };
        this.opts.log.warn("relay tunnel dial failed", { code, relay: where, error: e });
      }
      this.#session = null;
      if (this.#stopped) break;
      if (started && Date.now() - started >= b.stableMs) delay = b.initialMs;
      // A revoked relay is only retried at the slowest pace.
      const revoked = this.#lastError?.code === "revoked" ||
        this.#lastError?.code === "relay-revoked";
      const wait = revoked ? b.maxMs : delay;
      this.#state = "backoff";
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = null;
      delay = Math.min(delay * 2, b.maxMs);
    }
    this.#session = null;
    this.#state = "stopped";
  }
}

function stoppedError(): Error {
  return new Error("the tunnel client was stopped");
}
