/**
 * The relay's leg to the controller's gRPC server: long-lived HTTP/2
 * sessions over TLS 1.3 inside the transport, opened lazily and reopened
 * after they close. There is one session per lane: calls of devices (with a
 * certificate) and certificate-less claims never share one, so nothing an
 * anonymous client does to its session can touch a device's calls. Each
 * session has its own reset pacer (stream_limits.ts) that keeps the relay
 * under the controller's HTTP/2 rapid-reset budget. The relay presents its
 * relay certificate and accepts only a controller-role server certificate
 * named `coxswain-grpc` that the relay policy does not revoke; a policy that
 * revokes the certificate of a live session drops that session.
 *
 * When the path to the controller is replaced (a new tunnel session), new
 * calls go to new sessions on the new path at once; the old sessions are
 * retired gracefully: they take no new stream (HTTP/2 close: a GOAWAY to
 * the controller), the calls in flight finish, and each closes after its
 * last call (or when the tunnel slot closes the old path at the end of its
 * drain grace).
 */
import http2 from "node:http2";
import "./http2_order_fix.ts";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import type { Logger } from "../core/log.ts";
import type { RevocationList, TrustStore } from "../core/pki/mod.ts";
import { watchRevocations } from "../core/relay_policy.ts";
import { ResetPacer } from "./stream_limits.ts";
import type { BackendTransport } from "./transport.ts";

export const CONTROLLER_SERVER_NAME = "coxswain-grpc";
const CONNECT_TIMEOUT_MS = 10_000;
/** HTTP/2 per-stream receive window of the client listener (the default is 64 KiB). */
export const STREAM_WINDOW = 1024 * 1024;
/**
 * Per-stream receive window on the leg to the controller. It is also the
 * most the relay holds for one call whose client stopped reading (Deno's
 * node:http2 returns stream window only as the relay reads, and the relay
 * stops reading while the client's stream is full), so it bounds that
 * buffering. 256 KiB is the yamux stream window of the tunnel that carries
 * this leg, so a larger value would not speed a remote relay up.
 */
export const BACKEND_STREAM_WINDOW = 128 * 1024;

/** Which session a call travels on. */
export type Lane = "device" | "certless";
/** Claims are a few KiB each way: their lane needs no large window. */
const LANE_WINDOW: Record<Lane, number> = {
  device: BACKEND_STREAM_WINDOW,
  certless: 64 * 1024,
};

interface LaneState {
  session?: Promise<http2.ClientHttp2Session>;
  current?: http2.ClientHttp2Session;
  /** Serial of the controller certificate of the live TLS session. */
  peerSerial?: string;
}

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
  #lanes: Record<Lane, LaneState> = { device: {}, certless: {} };
  #pacers = new WeakMap<http2.ClientHttp2Session, ResetPacer>();
  /** The transport stream under each session (see #destroy). */
  #raw = new WeakMap<http2.ClientHttp2Session, Duplex>();
  /** Retired sessions finishing their calls, with their controller's serial. */
  #retired = new Map<http2.ClientHttp2Session, string | undefined>();
  #unwatch?: () => void;

  constructor(
    private readonly transport: BackendTransport,
    private readonly id: RelayIdentity,
    private readonly log: Logger,
  ) {
    const revoked = id.revoked;
    if (revoked) {
      this.#unwatch = watchRevocations(revoked, () => {
        for (const lane of Object.keys(this.#lanes) as Lane[]) {
          const serial = this.#lanes[lane].peerSerial;
          if (serial === undefined || !revoked.has(serial)) continue;
          this.log.warn("controller certificate revoked: backend session closed", {
            code: "controller-revoked",
            serial,
            lane,
          });
          this.#resetLane(lane);
        }
        for (const [session, serial] of this.#retired) {
          if (serial === undefined || !revoked.has(serial)) continue;
          this.log.warn("controller certificate revoked: retired backend session closed", {
            code: "controller-revoked",
            serial,
          });
          this.#destroy(session);
        }
      });
    }
  }

  /** The current session of `lane` to the controller, connecting if needed. */
  session(lane: Lane = "device"): Promise<http2.ClientHttp2Session> {
    const st = this.#lanes[lane];
    // A session whose connection just died may not have emitted "close" yet.
    if (st.current && (st.current.closed || st.current.destroyed)) this.#resetLane(lane);
    if (!st.session) {
      const forget = () => {
        if (st.session === p) {
          st.session = undefined;
          st.current = undefined;
        }
      };
      const p: Promise<http2.ClientHttp2Session> = this.#connect(lane, st).then((s) => {
        s.once("close", forget);
        s.once("goaway", forget);
        st.current = s;
        return s;
      });
      st.session = p;
      p.catch(forget);
    }
    return st.session;
  }

  /** The reset pacer of a session this backend opened. */
  pacer(session: http2.ClientHttp2Session): ResetPacer {
    let p = this.#pacers.get(session);
    if (!p) {
      p = new ResetPacer();
      this.#pacers.set(session, p);
      session.once("close", () => p!.clear());
    }
    return p;
  }

  /**
   * The path to the controller was replaced (a new tunnel): new calls open
   * new sessions, and the current ones retire gracefully (see the top).
   */
  reset(): void {
    for (const lane of Object.keys(this.#lanes) as Lane[]) this.#retireLane(lane);
  }

  #retireLane(lane: Lane): void {
    const st = this.#lanes[lane];
    const s = st.session;
    const serial = st.peerSerial;
    st.session = undefined;
    st.current = undefined;
    st.peerSerial = undefined;
    // Callers already waiting for this session were queued on it before this
    // callback: their calls are opened before it stops taking new ones.
    s?.then((x) => {
      if (x.closed || x.destroyed) return;
      this.#retired.set(x, serial);
      x.once("close", () => {
        this.#retired.delete(x);
        this.#raw.get(x)?.destroy();
      });
      x.close();
    }, () => {});
  }

  #resetLane(lane: Lane): void {
    const st = this.#lanes[lane];
    const s = st.session;
    st.session = undefined;
    st.current = undefined;
    st.peerSerial = undefined;
    s?.then((x) => this.#destroy(x), () => {});
  }

  #destroy(session: http2.ClientHttp2Session): void {
    this.#retired.delete(session);
    // The stream under it first: a session whose transport is already gone
    // ends without a GOAWAY exchange, the path where Deno's nghttp2 was
    // seen to abort the process at shutdown (denoland/deno#36788).
    this.#raw.get(session)?.destroy();
    session.destroy();
  }

  /** Drops every session, retired ones included, and stops watching the revocation list. */
  close(): void {
    this.#unwatch?.();
    this.#unwatch = undefined;
    this.#resetLane("device");
    this.#resetLane("certless");
    for (const session of [...this.#retired.keys()]) this.#destroy(session);
  }

  async #connect(lane: Lane, st: LaneState): Promise<http2.ClientHttp2Session> {
    const raw = await this.transport.dial();
    // An in-process pipe never leaves this program: no TLS inside it.
    let serial: string | undefined;
    const conn = this.transport.inProcess ? raw : await this.#secure(raw, (s) => serial = s);
    const scheme = this.transport.inProcess ? "http" : "https";
    const session = http2.connect(`${scheme}://${CONTROLLER_SERVER_NAME}`, {
      createConnection: () => conn,
      // Bigger than the 64 KiB default so a distant controller is not
      // throughput-bound by round trips (window / RTT), small enough to bound
      // what a call whose client stopped reading can make the relay hold.
      settings: { initialWindowSize: LANE_WINDOW[lane] },
    });
    // The transport may die under TLS (a cut tunnel, a dropped pipe) without
    // the TLS socket noticing: tie the session's life to the raw stream.
    raw.once("close", () => session.destroy());
    this.#raw.set(session, raw);
    session.on("error", (e) => this.log.warn("controller session error", { error: e }));
    st.peerSerial = serial;
    this.log.info("connected to controller", { transport: this.transport.name, lane });
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
