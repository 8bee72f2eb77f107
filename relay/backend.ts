/**
 * The relay's leg to the controller's gRPC server: one long-lived HTTP/2
 * session over TLS 1.3 inside the transport, opened lazily and reopened
 * after it closes. The relay presents its relay certificate and accepts
 * only a controller-role server certificate named `coxswain-grpc` that the
 * relay policy does not revoke; a policy that revokes the certificate of the
 * live session drops that session.
 */
import http2 from "node:http2";
import "./http2_order_fix.ts";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import type { Logger } from "../core/log.ts";
import type { RevocationList, TrustStore } from "../core/pki/mod.ts";
import { watchRevocations } from "../core/relay_policy.ts";
import type { BackendTransport } from "./transport.ts";

export const CONTROLLER_SERVER_NAME = "coxswain-grpc";
const CONNECT_TIMEOUT_MS = 10_000;
/** HTTP/2 per-stream receive window on the relay's legs (the default is 64 KiB). */
export const STREAM_WINDOW = 1024 * 1024;

export interface RelayIdentity {
  /** Relay leaf followed by the Fleet CA, PEM. */
  certPem: string;
  keyPem: string;
  /** PEM the TLS library trusts (root and Fleet CA). */
  caPem: string;
  trust: TrustStore;
  /** Original-controller certificates allowed without a role marker. */
  legacyControllerPins?: ReadonlySet<string>;
  /** Revoked serials (the relay policy's list): the controller's certificate must not be in it. */
  revoked?: RevocationList;
}

export class Backend {
  #session?: Promise<http2.ClientHttp2Session>;
  #current?: http2.ClientHttp2Session;
  /** Serial of the controller certificate of the live TLS session. */
  #peerSerial?: string;
  #unwatch?: () => void;

  constructor(
    private readonly transport: BackendTransport,
    private readonly id: RelayIdentity,
    private readonly log: Logger,
  ) {
    const revoked = id.revoked;
    if (revoked) {
      this.#unwatch = watchRevocations(revoked, () => {
        if (this.#peerSerial === undefined || !revoked.has(this.#peerSerial)) return;
        this.log.warn("controller certificate revoked: backend session closed", {
          code: "controller-revoked",
          serial: this.#peerSerial,
        });
        this.reset();
      });
    }
  }

  /** The current session to the controller, connecting if needed. */
  session(): Promise<http2.ClientHttp2Session> {
    // A session whose connection just died may not have emitted "close" yet.
    if (this.#current && (this.#current.closed || this.#current.destroyed)) this.reset();
    if (!this.#session) {
      const forget = () => {
        if (this.#session === p) this.#session = undefined;
      };
      const p: Promise<http2.ClientHttp2Session> = this.#connect().then((s) => {
        s.once("close", forget);
        s.once("goaway", forget);
        this.#current = s;
        return s;
      });
      this.#session = p;
      p.catch(forget);
    }
    return this.#session;
  }

  /** Drops the session (e.g. when a new tunnel replaces the old). */
  reset(): void {
    const s = this.#session;
    this.#session = undefined;
    this.#current = undefined;
    this.#peerSerial = undefined;
    s?.then((x) => x.destroy(), () => {});
  }

  /** Drops the session and stops watching the revocation list. */
  close(): void {
    this.#unwatch?.();
    this.#unwatch = undefined;
    this.reset();
  }

  async #connect(): Promise<http2.ClientHttp2Session> {
    const raw = await this.transport.dial();
    // An in-process pipe never leaves this program: no TLS inside it.
    let serial: string | undefined;
    const conn = this.transport.inProcess ? raw : await this.#secure(raw, (s) => serial = s);
    const scheme = this.transport.inProcess ? "http" : "https";
    const session = http2.connect(`${scheme}://${CONTROLLER_SERVER_NAME}`, {
      createConnection: () => conn,
      // Bigger than the 64 KiB default so a distant controller is not
      // throughput-bound by round trips (window / RTT).
      settings: { initialWindowSize: STREAM_WINDOW },
    });
    // The transport may die under TLS (a cut tunnel, a dropped pipe) without
    // the TLS socket noticing: tie the session's life to the raw stream.
    raw.once("close", () => session.destroy());
    session.on("error", (e) => this.log.warn("controller session error", { error: e }));
    this.#peerSerial = serial;
    this.log.info("connected to controller", { transport: this.transport.name });
    return session;
  }

  /** TLS 1.3 over the transport stream; the server must hold a controller certificate. */
  async #secure(raw: Duplex, peerSerial: (serial: string) => void): Promise<tls.TLSSocket> {
    const sock = tls.connect({
      socket: raw,
      servername: CONTROLLER_SERVER_NAME,
      ALPNProtocols: ["h2"],
      minVersion: "TLSv1.3",
      ca: this.id.caPem,
      cert: this.id.certPem,
      key: this.id.keyPem,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error("TLS handshake with the controller timed out")),
          CONNECT_TIMEOUT_MS,
        );
        sock.once("secureConnect", () => {
          clearTimeout(t);
          resolve();
        });
        sock.once("error", (e) => {
          clearTimeout(t);
          reject(e);
        });
      });
      const peer = sock.getPeerCertificate(true);
      const who = await this.id.trust.verify(new Uint8Array(peer.raw), {
        expect: "controller",
        usage: "serverAuth",
        revoked: this.id.revoked,
        legacyControllerPins: this.id.legacyControllerPins,
      });
      peerSerial(who.serial);
      return sock;
    } catch (e) {
      sock.destroy();
      raw.destroy();
      this.log.warn("controller connection refused", {
        code: (e as { code?: string }).code ?? "refused",
        transport: this.transport.name,
        error: e,
      });
      throw e;
    }
  }
}
