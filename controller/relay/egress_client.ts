/**
 * The controller's side of control-plane egress: one TLS 1.3 session to a
 * relay's egress port (the controller is the yamux client), on which each
 * `dial(host, port)` opens a stream that the relay connects to the target.
 * The relay answers nothing: a refused or failed dial shows as a reset
 * stream.
 *
 * Like the tunnel: policy goes only to a relay that negotiated the ALPN
 * CONTROL_ALPN (an original relay would take the policy stream for a
 * CONNECT and try to dial it), each push is bounded by a short deadline, and
 * a session whose relay certificate is revoked is closed at once; the next
 * dial refuses that certificate.
 */
import type { Logger } from "../../core/log.ts";
import { encodeConnect } from "../../core/connect/mod.ts";
import { type Duplex as WebDuplex, MuxSession } from "../../core/mux/mod.ts";
import type { VerifiedCertificate } from "../../core/pki/mod.ts";
import { formatPolicyAnswer, type PolicyDocument } from "../../core/relay_policy.ts";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import { type ControllerTlsIdentity, dialRelay } from "./dial.ts";
import { POLICY_ACK_TIMEOUT_MS, pushPolicy } from "./policy_push.ts";
import { ORIGINAL_RELAY_NOTE, type RelayKind, type RevocationFeed } from "./tunnel_client.ts";

export interface EgressClientOptions {
  /** New revocations; a session whose relay certificate is revoked is closed. */
  revocations?: RevocationFeed;
  /** Deadline of one policy push (default 5 s). */
  policyTimeoutMs?: number;
}

interface Live {
  session: MuxSession;
  relay: VerifiedCertificate;
  kind: RelayKind;
}

export class EgressClient {
  #session: Promise<Live> | null = null;
  #live: Live | null = null;
  #unsubscribe: (() => void) | null;

  constructor(
    private readonly target: { host: string; port: number; serverName?: string },
    private readonly identity: ControllerTlsIdentity,
    private readonly log: Logger,
    private readonly opts: EgressClientOptions = {},
  ) {
    this.#unsubscribe = opts.revocations?.subscribe(() => this.#checkRevoked()) ?? null;
  }

  /** Kind of the relay on the live session (null without one). */
  get relayKind(): RelayKind | null {
    return this.#live && !this.#live.session.isClosed ? this.#live.kind : null;
  }

  /** The live session, dialled on first use and again after it ends. */
  session(): Promise<MuxSession> {
    return this.#connect().then((l) => l.session);
  }

  #connect(): Promise<Live> {
    if (!this.#session) {
      const p = dialRelay(this.target, this.identity).then(({ socket, relay, policyChannel }) => {
        const session = new MuxSession(nodeToWeb(socket), { role: "client" });
        const live: Live = { session, relay, kind: policyChannel ? "pharos" : "original" };
        this.#live = live;
        if (!policyChannel) {
          this.log.warn("egress session up: " + ORIGINAL_RELAY_NOTE, {
            code: "original-relay",
            note: ORIGINAL_RELAY_NOTE,
          });
        }
        session.closed.then((err) => {
          if (this.#session === p) this.#session = null;
          if (this.#live === live) this.#live = null;
          this.log.info("egress session ended", { reason: err?.message ?? "closed" });
        });
        return live;
      });
      this.#session = p;
      p.catch(() => {
        if (this.#session === p) this.#session = null;
      });
    }
    return this.#session;
  }

  /** A byte stream to host:port through the relay. */
  async dial(host: string, port: number): Promise<WebDuplex> {
    const stream = await (await this.session()).open();
    const w = stream.writable.getWriter();
    await w.write(encodeConnect(host, port));
    w.releaseLock();
    return stream;
  }

  /**
   * Sends the allow-list and revocations; returns the relay's answer line
   * ("ok", "stale: N", "error: …"), or "unsupported: …" for an original
   * relay, to which nothing is sent.
   */
  async pushPolicy(doc: PolicyDocument): Promise<string> {
    const live = await this.#connect();
    if (live.kind !== "pharos") return `unsupported: ${ORIGINAL_RELAY_NOTE}`;
    const answer = await pushPolicy(
      live.session,
      doc,
      this.opts.policyTimeoutMs ?? POLICY_ACK_TIMEOUT_MS,
    );
    return formatPolicyAnswer(answer).trim();
  }

  async close(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    const s = this.#session;
    this.#session = null;
    await s?.then((x) => x.session.close(), () => {});
  }

  #checkRevoked(): void {
    const live = this.#live;
    const list = this.opts.revocations?.list;
    if (!live || !list || !list.has(live.relay.serial)) return;
    this.log.warn("relay certificate revoked: egress session closed", {
      code: "relay-revoked",
      serial: live.relay.serial,
    });
    this.#live = null;
    this.#session = null;
    void live.session.close();
  }
}
