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
 *
 * Certificate renewal (renewed()): an up tunnel to our relay is cycled
 * make-before-break. A second session is dialled with the new controller
 * certificate while the old one serves; once the relay answers on it, it
 * becomes the live session (policy pushed as on any dial) and the old one is
 * retired: a go-away (no new substream), its calls finish, and the relay
 * closes it after its drain (relay/tunnel.ts), or this side does after
 * RETIRE_MS. The status stays "up" throughout. While a cycle runs, the end
 * of the old session is not the end of the tunnel (the relay closes an idle
 * replaced session at once). If the new session fails after the relay may
 * have taken it, and the relay sent the old one a go-away (then or later),
 * the relay has no usable tunnel: the old one is retired and the client
 * redials at once. A go-away otherwise means another controller session
 * replaced this one: it finishes its calls, and no immediate redial follows
 * (two controllers would swap the relay back and forth).
 *
 * An original Go relay is not cycled: it takes one controller connection at
 * a time (CONTRACTS.md §3.4, a second one waits until the first closes), so
 * a cycle there could only cut the live session; it checked the certificate
 * at the handshake only, and the next dial presents the renewed one.
 */
import type { Duplex } from "node:stream";
import type { Logger } from "../../core/log.ts";
import { MuxSession } from "../../core/mux/mod.ts";
import {
  parseCertificates,
  type RevocationList,
  serialOf,
  type VerifiedCertificate,
} from "../../core/pki/mod.ts";
import { formatPolicyAnswer, type PolicyDocument } from "../../core/relay_policy.ts";
import { nodeToWeb, webToNode } from "../../relay/host/web_node.ts";
import { TUNNEL_DRAIN_GRACE_MS, TUNNEL_STREAM_WINDOW } from "../../relay/tunnel.ts";
import { type ControllerTlsIdentity, type DialledRelay, dialRelay } from "./dial.ts";
import { POLICY_ACK_TIMEOUT_MS, pushPolicy } from "./policy_push.ts";

/** "P" of the HTTP/2 connection preface; a TLS ClientHello starts with 0x16. */
const H2_PREFACE_FIRST_BYTE = 0x50;

/**
 * Longest a retired session is kept after a cycle: the relay's drain grace
 * plus a margin, so normally the relay ends it (it knows when its calls are done).
 */
export const RETIRE_MS = TUNNEL_DRAIN_GRACE_MS + 15_000;

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
  /** How long a ping (a cycle's check of its new session, keepalive) waits for the answer (default 10 s). */
  pingTimeoutMs?: number;
  /** Deadline of one policy push (default 5 s). */
  policyTimeoutMs?: number;
  /** Longest a session retired by a cycle is kept (default RETIRE_MS). */
  retireMs?: number;
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
  /** Sessions replaced by a new one after a certificate renewal, without going down. */
  cycles: number;
  /** True while a cycle is under way (dialling, or waiting to retry a failed dial); the old session serves. */
  cycling: boolean;
  /** Serial of the controller certificate presented on the live (or last) session. */
  controllerSerial: string | null;
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
  /** The certificate (chain PEM) the live session was dialled with, and its serial. */
  #dialledCert: string | null = null;
  #dialledSerial: string | null = null;
  /** Ends the redial loop's wait for the live session (set per dial). */
  #sessionEnded: ((reason: Error | null) => void) | null = null;
  /** Sessions retired by a cycle, still finishing their calls. */
  #retired = new Set<MuxSession>();
  #cycling = false;
  #cycleAgain = false;
  /** The live session a cycle is replacing: its end is the cycle's to handle, not the redial loop's. */
  #cycleFrom: MuxSession | null = null;
  /** A cycle's connection not adopted yet (stop() closes it). */
  #pending: { socket: DialledRelay["socket"]; session: MuxSession | null } | null = null;
  /** Sessions on which the relay sent a go-away (it opens no new substream there). */
  #goneAway = new WeakSet<MuxSession>();
  /**
   * A failed cycle reached the relay, which may have switched to that (now
   * dead) session: a go-away on the live session then means the relay has none.
   */
  #ghost = false;
  /** The next redial goes at once (the relay moved off the live session). */
  #redialNow = false;
  /** Aborted by stop(): ends a cycle's dial or its wait before a retry. */
  #stopAbort = new AbortController();
  /** Sessions established so far (observability and tests). */
  sessions = 0;
  /** Cycles completed (renewed(): new session up, old one retired). */
  cycles = 0;

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
      cycles: this.cycles,
      cycling: this.#cycling,
      controllerSerial: this.#dialledSerial,
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
    const outcome = await this.#sendPolicy(s);
    // A cycle replaced the session meanwhile (the relay refuses streams on a
    // replaced one): the new session must hold this policy too.
    const now = this.#session;
    if (outcome === "failed" && now && now !== s && !now.isClosed) {
      return await this.#sendPolicy(now);
    }
    return outcome;
  }

  /**
   * The controller's client certificate (identity) was renewed: an up
   * session that presented another one is cycled (see the top). Returns at
   * once; the cycle logs `tunnel-cycled`, or `tunnel-cycle-failed` and
   * retries with backoff while the old session serves.
   */
  renewed(): void {
    void this.#cycle();
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
    this.#stopAbort.abort(stoppedError());
    for (const w of this.#upWaiters.splice(0)) w.reject(stoppedError());
    const pending = this.#pending;
    pending?.socket.destroy();
    await pending?.session?.close();
    await Promise.all([...this.#retired].map((s) => s.close()));
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
    for (const s of this.#retired) void s.close();
    void this.#session.close();
  }

  /** Runs cycles one at a time until the live session presents the current certificate. */
  async #cycle(): Promise<void> {
    if (this.#cycling) {
      this.#cycleAgain = true;
      return;
    }
    this.#cycling = true;
    const b = this.#backoff();
    let delay = b.initialMs;
    try {
      for (;;) {
        this.#cycleAgain = false;
        const outcome = await this.#cycleOnce();
        // "ended": the redial loop took over (it presents the current certificate).
        if (this.#stopped || outcome === "ended") return;
        if (outcome === "failed") {
          await sleep(delay, this.#stopAbort.signal);
          delay = Math.min(delay * 2, b.maxMs);
        } else if (!this.#cycleAgain) return;
      }
    } finally {
      this.#cycling = false;
    }
  }

  /**
   * One make-before-break cycle of the live session. While it runs, the end
   * of the old session is not the end of the tunnel: the relay closes an idle
   * replaced session soon after it took the new one, possibly before this
   * side has read the new session's answer.
   */
  async #cycleOnce(): Promise<"done" | "skipped" | "failed" | "ended"> {
    const old = this.#session;
    const certPem = this.opts.identity.certPem;
    // Down or dialling: the next session presents the new certificate anyway.
    if (!old || old.isClosed || this.#state !== "up" || certPem === this.#dialledCert) {
      return "skipped";
    }
    const log = this.opts.log;
    const relay = this.#where();
    if (this.#kind === "original") {
      log.info("tunnel not cycled: the renewed certificate is used from the next dial", {
        code: "tunnel-cycle-skipped",
        relay,
        note: ORIGINAL_RELAY_NOTE,
      });
      return "skipped";
    }
    this.#cycleFrom = old;
    let dialled: DialledRelay | null = null;
    let session: MuxSession | null = null;
    try {
      dialled = await dialRelay(
        this.opts.target,
        this.opts.identity,
        undefined,
        this.#stopAbort.signal,
      );
      if (this.#stopped) {
        dialled.socket.destroy();
        return "skipped";
      }
      this.#pending = { socket: dialled.socket, session: null };
      session = newSession(dialled, this.opts);
      this.#pending.session = session;
      // Answered: the relay holds it as its tunnel (it switches at attach),
      // so no call goes to the old one from now on, even if the old one ended.
      await session.ping();
    } catch (e) {
      void session?.close();
      dialled?.socket.destroy();
      if (this.#stopped) return "skipped";
      // The relay switches at attach: once it took the dead session it sent
      // the old one a go-away (or closed it), and has no usable tunnel.
      if (old.isClosed || this.#goneAway.has(old)) {
        log.warn(
          "tunnel cycle failed and the relay had moved off the old session: redialling at once",
          {
            code: "tunnel-cycle-failed",
            relay,
            error: e,
            old_session: old.isClosed ? "closed" : "go-away",
          },
        );
        this.#abandon(old);
        return "ended";
      }
      // The relay may still take it (a dial refused by this side after the
      // handshake counts too): a go-away arriving later means the same.
      this.#ghost = true;
      log.warn("tunnel cycle failed: the old session serves on (the relay sent it no go-away)", {
        code: "tunnel-cycle-failed",
        relay,
        error: e,
      });
      return "failed";
    } finally {
      this.#cycleFrom = null;
      this.#pending = null;
    }
    if (this.#stopped) {
      void session.close();
      return "skipped";
    }
    const oldSerial = this.#dialledSerial;
    this.#adopt(session, dialled, certPem);
    const newSerial = this.#dialledSerial;
    this.#ghost = false;
    if (!old.isClosed) this.#retire(old);
    this.cycles++;
    this.#checkRevoked();
    const policy = await this.#sendPolicy(session);
    log.info("relay tunnel cycled onto the renewed certificate", {
      code: "tunnel-cycled",
      relay,
      old_serial: oldSerial,
      new_serial: newSerial,
      relay_serial: dialled.relay.serial,
      policy,
    });
    return "done";
  }

  /**
   * The relay no longer uses the live session `s`: its calls may finish
   * (retired unless closed), and the redial loop dials again at once.
   */
  #abandon(s: MuxSession): void {
    if (this.#session !== s) return;
    this.#redialNow = true;
    if (s.isClosed) {
      void s.closed.then((reason) => this.#sessionEnded?.(reason));
      return;
    }
    this.#retire(s);
    this.#sessionEnded?.(new Error("the relay moved off this session (go-away)"));
  }

  /** A go-away from the relay on `s`; on the live session outside a cycle, see #ghost. */
  #onGoAway(s: MuxSession): void {
    this.#goneAway.add(s);
    if (s !== this.#session || this.#cycleFrom === s || this.#stopped) return;
    if (this.#ghost) {
      this.#ghost = false;
      this.opts.log.warn(
        "the relay moved off the live tunnel after a failed cycle: redialling at once",
        { code: "tunnel-replaced", relay: this.#where() },
      );
      this.#abandon(s);
      return;
    }
    // Another controller session (e.g. a second controller holding a valid
    // certificate) is the relay's newest, or the relay is closing: this one
    // finishes its calls until the relay closes it (then the usual backoff);
    // redialling at once would swap two controllers in a loop.
    this.opts.log.warn(
      "the relay sent a go-away on the live tunnel (another controller session replaced it, or the relay is closing): it finishes its calls",
      { code: "tunnel-replaced", relay: this.#where() },
    );
  }

  /** A retired session takes no new substream; its calls finish; it is closed at the latest after retireMs. */
  #retire(old: MuxSession): void {
    this.#retired.add(old);
    old.goAway();
    const timer = setTimeout(() => void old.close(), this.opts.retireMs ?? RETIRE_MS);
    void old.closed.then(() => {
      clearTimeout(timer);
      this.#retired.delete(old);
    });
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

  #backoff(): { initialMs: number; maxMs: number; stableMs: number } {
    return this.opts.backoff ?? { initialMs: 1000, maxMs: 60_000, stableMs: 5000 };
  }

  /** Makes `session` (on `dialled`, which presented `certPem`) the live one and serves it. */
  #adopt(session: MuxSession, dialled: DialledRelay, certPem: string): void {
    this.#session = session;
    this.#peer = dialled.relay;
    this.#kind = dialled.policyChannel ? "pharos" : "original";
    this.#dialledCert = certPem;
    this.#dialledSerial = serialOf(parseCertificates(certPem)[0]);
    this.#lastError = null;
    this.sessions++;
    void session.peerGoAway.then(() => this.#onGoAway(session));
    void this.#serve(session);
  }

  /** Hands each substream to the gRPC server; the end of the live session ends the wait in #run. */
  async #serve(session: MuxSession): Promise<void> {
    for await (const stream of session) this.#route(webToNode(stream));
    const reason = await session.closed;
    // A cycle replacing it decides what the end means (#cycleOnce).
    if (this.#session === session && this.#cycleFrom !== session) this.#sessionEnded?.(reason);
  }

  async #run(): Promise<void> {
    const b = this.#backoff();
    const where = this.#where();
    let delay = b.initialMs;
    while (!this.#stopped) {
      this.#state = "connecting";
      let started = 0;
      const abort = new AbortController();
      this.#dialAbort = abort;
      try {
        // dialRelay reads the certificate at once: this is the one presented.
        const certPem = this.opts.identity.certPem;
        const dialled = await dialRelay(
          this.opts.target,
          this.opts.identity,
          undefined,
          abort.signal,
        );
        this.#dialAbort = null;
        // stop() came between the dial's end and here: nobody will close this one.
        if (this.#stopped) {
          dialled.socket.destroy();
          break;
        }
        const ended = new Promise<Error | null>((resolve) => this.#sessionEnded = resolve);
        const session = newSession(dialled, this.opts);
        this.#adopt(session, dialled, certPem);
        started = Date.now();
        this.#state = "up";
        if (dialled.policyChannel) {
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
        // Renewed while this dial was on its way: cycle onto the new certificate.
        if (this.opts.identity.certPem !== certPem) this.renewed();
        // The live session may be replaced by cycles meanwhile; this waits for the last one.
        const reason = await ended;
        this.#sessionEnded = null;
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
      const wait = this.#redialNow ? 0 : revoked ? b.maxMs : delay;
      this.#redialNow = false;
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

/** The multiplexer session on a dialled relay connection (the relay is the yamux client). */
function newSession(
  dialled: DialledRelay,
  o: { keepAliveIntervalMs?: number; pingTimeoutMs?: number },
): MuxSession {
  return new MuxSession(nodeToWeb(dialled.socket), {
    role: "server",
    windowSize: TUNNEL_STREAM_WINDOW,
    keepAliveIntervalMs: o.keepAliveIntervalMs ?? 20_000,
    pingTimeoutMs: o.pingTimeoutMs ?? 10_000,
  });
}

/** Waits `ms`, or less when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

function stoppedError(): Error {
  return new Error("the tunnel client was stopped");
}
