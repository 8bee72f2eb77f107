/**
 * The controller's side of control-plane egress: one TLS 1.3 session to a
 * relay's egress port (the controller is the yamux client), on which each
 * `dial(host, port)` opens a stream that the relay connects to the target.
 * The relay answers nothing: a refused or failed dial shows as a reset
 * stream.
 */
import type { Logger } from "../../core/log.ts";
import { encodeConnect } from "../../core/connect/mod.ts";
import { type Duplex as WebDuplex, MuxSession } from "../../core/mux/mod.ts";
import type { PolicyDocument } from "../../core/relay_policy.ts";
import { nodeToWeb } from "../../relay/web_node.ts";
import { type ControllerTlsIdentity, dialRelay } from "./dial.ts";
import { pushPolicy } from "./policy_push.ts";

export class EgressClient {
  #session: Promise<MuxSession> | null = null;

  constructor(
    private readonly target: { host: string; port: number; serverName?: string },
    private readonly identity: ControllerTlsIdentity,
    private readonly log: Logger,
  ) {}

  /** The live session, dialled on first use and again after it ends. */
  session(): Promise<MuxSession> {
    if (!this.#session) {
      const p = dialRelay(this.target, this.identity).then(({ socket }) => {
        const s = new MuxSession(nodeToWeb(socket), { role: "client" });
        s.closed.then((err) => {
          if (this.#session === p) this.#session = null;
          this.log.info("egress session ended", { reason: err?.message ?? "closed" });
        });
        return s;
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

  /** Sends the allow-list and revocations; returns the relay's answer ("ok"). */
  async pushPolicy(doc: PolicyDocument): Promise<string> {
    return await pushPolicy(await this.session(), doc);
  }

  async close(): Promise<void> {
    const s = this.#session;
    this.#session = null;
    await s?.then((x) => x.close(), () => {});
  }
}
