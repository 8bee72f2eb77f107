/**
 * A yamux session (hashicorp/yamux wire format, CONTRACTS.md §3.4) over any
 * byte duplex. The client opens odd stream ids, the server even ones. Any
 * frame that breaks the protocol ends the session with a typed MuxError after
 * telling the peer (go-away, protocol-error code).
 *
 * Peer stream ids need not arrive in increasing order (see ids.ts): a SYN for
 * any id of the peer's parity that was never used opens a stream; a SYN for an
 * id in use is a protocol error ("duplicate-stream"); a SYN for an id used
 * before (closed, refused, or older than the remembered gaps) is refused with
 * RST and the session goes on.
 */
import { MuxError, PROTOCOL_ERROR_CODES } from "./errors.ts";
import {
  FLAG_ACK,
  FLAG_FIN,
  FLAG_RST,
  FLAG_SYN,
  type FrameHeader,
  GO_AWAY_INTERNAL_ERROR,
  GO_AWAY_NORMAL,
  GO_AWAY_PROTOCOL_ERROR,
  HEADER_LENGTH,
  INITIAL_WINDOW,
  MAX_UINT32,
  TYPE_DATA,
  TYPE_GO_AWAY,
  TYPE_PING,
  TYPE_WINDOW_UPDATE,
  validateHeader,
  writeHeader,
} from "./frame.ts";
import { PeerIds } from "./ids.ts";
import { FrameInput } from "./input.ts";
import type { Duplex } from "./pipe.ts";
import { type MuxStream, StreamCore, type StreamHost } from "./stream.ts";

export interface MuxOptions {
  /** "client" opens odd stream ids, "server" even ones. */
  role: "client" | "server";
  /** Receive window per stream; at least 256 KiB (the yamux initial window). */
  windowSize?: number;
  /**
   * Largest send window the peer may grant a stream (default 2^31 - 1). This
   * is the peer's memory, not ours: hashicorp/yamux peers may configure a
   * large MaxStreamWindowSize. Our receive window is `windowSize`.
   */
  maxWindowSize?: number;
  /** Largest data frame accepted, checked at the header (default windowSize). */
  maxFrameLength?: number;
  /** Largest data frame sent (default 64 KiB). */
  maxSendFrame?: number;
  /** Open streams, both directions; extra SYNs are refused with RST (256). */
  maxStreams?: number;
  /** Inbound streams waiting for accept(); extra SYNs get RST (256). */
  acceptBacklog?: number;
  /** Keepalive ping period; 0 disables (default 20 s). */
  keepAliveIntervalMs?: number;
  /** How long ping() and keepalive wait for the answer (default 10 s). */
  pingTimeoutMs?: number;
  /** How long one transport write may stall before the session ends (10 s). */
  writeTimeoutMs?: number;
  /**
   * How long an opened stream may wait for the first frame from the peer for
   * it (ACK, data, window update, FIN); then it is reset. 0 = forever (75 s).
   */
  streamOpenTimeoutMs?: number;
  /**
   * Peer stream ids skipped by out-of-order SYNs that are remembered as still
   * unused (default 1024); beyond that the oldest count as used (ids.ts).
   */
  maxIdGaps?: number;
}

/** Default and usual upper bound of the send window a peer may grant. */
export const MAX_SEND_WINDOW = 0x7fff_ffff;

/** Unflushed control frames beyond which the reader waits for the transport. */
const CONTROL_HIGH_WATER = 64;
/**
 * Data bodies at least this long are handed to the transport as they are
 * (after their header); shorter ones are copied into one buffer with it.
 * Consecutive short frames are glued into one transport write.
 */
const COPY_LIMIT = 16 * 1024;
const BATCH_LIMIT = 64 * 1024;

/** What happens once a queued piece was written. */
type Done = { resolve: () => void; reject: (e: MuxError) => void } | "control" | null;

type Limits = Required<Omit<MuxOptions, "role">>;

function limitsFrom(o: MuxOptions): Limits {
  const windowSize = o.windowSize ?? INITIAL_WINDOW;
  const l: Limits = {
    windowSize,
    maxWindowSize: o.maxWindowSize ?? MAX_SEND_WINDOW,
    maxFrameLength: o.maxFrameLength ?? windowSize,
    maxSendFrame: o.maxSendFrame ?? 64 * 1024,
    maxStreams: o.maxStreams ?? 256,
    acceptBacklog: o.acceptBacklog ?? 256,
    keepAliveIntervalMs: o.keepAliveIntervalMs ?? 20_000,
    pingTimeoutMs: o.pingTimeoutMs ?? 10_000,
    writeTimeoutMs: o.writeTimeoutMs ?? 10_000,
    streamOpenTimeoutMs: o.streamOpenTimeoutMs ?? 75_000,
    maxIdGaps: o.maxIdGaps ?? 1024,
  };
  const bad = (msg: string) => new MuxError("bad-options", `multiplexer options: ${msg}`);
  if (o.role !== "client" && o.role !== "server") throw bad(`role must be "client" or "server"`);
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || v < 0) throw bad(`${k} must be a non-negative integer`);
  }
  if (l.windowSize < INITIAL_WINDOW || l.windowSize > MAX_UINT32) {
    throw bad(`windowSize must be in ${INITIAL_WINDOW}..${MAX_UINT32}`);
  }
  if (l.maxWindowSize < INITIAL_WINDOW || l.maxWindowSize > MAX_UINT32) {
    throw bad(`maxWindowSize must be in ${INITIAL_WINDOW}..${MAX_UINT32}`);
  }
  if (l.maxFrameLength < 1 || l.maxSendFrame < 1) throw bad("frame lengths must be positive");
  if (l.maxStreams < 1 || l.pingTimeoutMs < 1 || l.writeTimeoutMs < 1) {
    throw bad("maxStreams, pingTimeoutMs and writeTimeoutMs must be positive");
  }
  return l;
}

interface PendingPing {
  start: number;
  resolve: (rttMs: number) => void;
  reject: (e: MuxError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * A multiplexer session. Streams come from `open()` and `accept()` (or
 * `for await (const s of session)`). `closed` resolves once the transport is
 * released: with null after a local `close()`, otherwise with the MuxError
 * that ended the session (code "remote-closed" when the peer simply hung up).
 *
 * Over TCP, turn Nagle's algorithm off on the connection (in Deno
 * `conn.setNoDelay(true)`; Go does so by default): large data frames are
 * written as header + body without copying, and with Nagle on the body's
 * last segment can wait for the peer's ACK.
 */
export class MuxSession implements AsyncIterable<MuxStream> {
  readonly closed: Promise<MuxError | null>;
  /** Resolves when the peer sends a normal go-away (it takes no new stream from then on). */
  readonly peerGoAway: Promise<void>;
  #resolvePeerGoAway!: () => void;
  readonly #limits: Limits;
  readonly #client: boolean;
  readonly #input: FrameInput;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #host: StreamHost;
  readonly #streams = new Map<number, StreamCore>();
  #acceptQueue: StreamCore[] = [];
  #acceptWaiters: ((s: MuxStream | null) => void)[] = [];
  #nextId: number;
  readonly #peerIds: PeerIds;
  #pings = new Map<number, PendingPing>();
  #nextPingId = 0;
  #localGoAway = false;
  #remoteGoAway = false;
  /** undefined while open; null after a local close; else the cause. */
  #end: MuxError | null | undefined = undefined;
  #resolveClosed!: (e: MuxError | null) => void;
  #readLoop: Promise<void>;
  #keepAliveTimer: ReturnType<typeof setTimeout> | null = null;
  #watchdog: ReturnType<typeof setTimeout> | null = null;
  /** Frames waiting for the transport, and what to do once each is written. */
  #out: Uint8Array[] = [];
  #outDone: Done[] = [];
  /** Settlers of the write in flight (empty when none). */
  #writing: Done[] = [];
  #flushing: Promise<void> | null = null;
  #lastWriteProgress = 0;
  #pendingControl = 0;
  #controlDrained: (() => void) | null = null;

  constructor(conn: Duplex, options: MuxOptions) {
    this.#limits = limitsFrom(options);
    this.#client = options.role === "client";
    this.#nextId = this.#client ? 1 : 2;
    this.#peerIds = new PeerIds(this.#client ? 2 : 1, this.#limits.maxIdGaps);
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.peerGoAway = new Promise((resolve) => this.#resolvePeerGoAway = resolve);
    try {
      this.#input = new FrameInput(conn.readable);
      this.#writer = conn.writable.getWriter();
    } catch (e) {
      throw new MuxError(
        "bad-transport",
        `the transport's streams cannot be used (locked?): ${e}`,
        {
          cause: e,
        },
      );
    }
    const l = this.#limits;
    this.#host = {
      windowSize: l.windowSize,
      maxWindowSize: l.maxWindowSize,
      maxSendFrame: l.maxSendFrame,
      sendWindowUpdate: (id, flags, delta) =>
        this.#sendControl(TYPE_WINDOW_UPDATE, flags, id, delta),
      sendData: (id, body) => this.#sendData(id, body),
      streamDone: (core) => this.#streamDone(core),
    };
    this.#readLoop = this.#runReadLoop();
    this.#scheduleKeepAlive();
  }

  /** True once the session has ended (locally or not). */
  get isClosed(): boolean {
    return this.#end !== undefined;
  }

  /** Streams currently open (including inbound ones not yet accepted). */
  get streamCount(): number {
    return this.#streams.size;
  }

  /**
   * Opens a stream (sends SYN). Rejects with MuxError "session-closed",
   * "go-away", "too-many-streams" or "stream-ids-exhausted".
   */
  open(): Promise<MuxStream> {
    try {
      this.#checkOpen();
      if (this.#localGoAway || this.#remoteGoAway) {
        throw new MuxError(
          "go-away",
          "no new streams: a go-away was sent or received on this session",
        );
      }
      if (this.#streams.size >= this.#limits.maxStreams) {
        throw new MuxError(
          "too-many-streams",
          `already ${this.#streams.size} streams open (maxStreams)`,
        );
      }
      const id = this.#nextId;
      if (id > MAX_UINT32) {
        throw new MuxError(
          "stream-ids-exhausted",
          "every stream id of this session was used; open a new session",
        );
      }
      this.#nextId += 2;
      const core = new StreamCore(id, this.#host);
      this.#streams.set(id, core);
      this.#sendControl(TYPE_WINDOW_UPDATE, FLAG_SYN, id, this.#limits.windowSize - INITIAL_WINDOW);
      core.recvWindow = this.#limits.windowSize;
      core.armOpenTimer(this.#limits.streamOpenTimeoutMs);
      return Promise.resolve(core.stream);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The next stream the peer opened (sends ACK), or null once the session ended. */
  accept(): Promise<MuxStream | null> {
    const core = this.#acceptQueue.shift();
    if (core !== undefined) return Promise.resolve(this.#acknowledge(core));
    if (this.#end !== undefined) return Promise.resolve(null);
    return new Promise((resolve) => this.#acceptWaiters.push(resolve));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<MuxStream> {
    for (;;) {
      const s = await this.accept();
      if (s === null) return;
      yield s;
    }
  }

  /** Round-trip time in ms; rejects with "ping-timeout" or "session-closed". */
  ping(): Promise<number> {
    try {
      this.#checkOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    this.#nextPingId = (this.#nextPingId + 1) >>> 0;
    const id = this.#nextPingId;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pings.delete(id);
        reject(
          new MuxError("ping-timeout", `no answer to ping within ${this.#limits.pingTimeoutMs} ms`),
        );
      }, this.#limits.pingTimeoutMs);
      this.#pings.set(id, { start: performance.now(), resolve, reject, timer });
      this.#sendControl(TYPE_PING, FLAG_SYN, 0, id);
    });
  }

  /**
   * Sends go-away: the peer's new streams are refused (RST) from now on and
   * this side opens none either; existing streams go on.
   */
  goAway(): void {
    if (this.#end !== undefined || this.#localGoAway) return;
    this.#localGoAway = true;
    this.#sendControl(TYPE_GO_AWAY, 0, 0, GO_AWAY_NORMAL);
  }

  /** Sends go-away, ends every stream and releases the transport. */
  async close(): Promise<void> {
    if (this.#end === undefined) {
      this.goAway();
      this.#shutdown(null);
    }
    await this.closed;
  }

  #checkOpen(): void {
    if (this.#end !== undefined) {
      throw this.#end ?? new MuxError("session-closed", "the multiplexer session was closed");
    }
  }

  #acknowledge(core: StreamCore): MuxStream {
    this.#sendControl(
      TYPE_WINDOW_UPDATE,
      FLAG_ACK,
      core.id,
      this.#limits.windowSize - INITIAL_WINDOW,
    );
    core.recvWindow += this.#limits.windowSize - INITIAL_WINDOW;
    return core.stream;
  }

  #streamDone(core: StreamCore): void {
    if (this.#streams.get(core.id) === core) this.#streams.delete(core.id);
    const i = this.#acceptQueue.indexOf(core);
    if (i >= 0) this.#acceptQueue.splice(i, 1);
  }

  // ---- writing ----

  #enqueue(bytes: Uint8Array, done: Done): void {
    this.#out.push(bytes);
    this.#outDone.push(done);
    if (this.#flushing === null) this.#flushing = this.#flush();
  }

  /** Writes queued pieces one transport write at a time, gluing short ones. */
  async #flush(): Promise<void> {
    while (this.#out.length > 0) {
      let n = 1;
      let batch = this.#out[0];
      if (batch.length < COPY_LIMIT) {
        let total = batch.length;
        while (
          n < this.#out.length && this.#out[n].length < COPY_LIMIT &&
          total + this.#out[n].length <= BATCH_LIMIT
        ) {
          total += this.#out[n++].length;
        }
        if (n > 1) {
          batch = new Uint8Array(total);
          let off = 0;
          for (let i = 0; i < n; i++) {
            batch.set(this.#out[i], off);
            off += this.#out[i].length;
          }
        }
      }
      this.#out.splice(0, n);
      this.#writing = this.#outDone.splice(0, n);
      this.#lastWriteProgress = performance.now();
      if (this.#watchdog === null && this.#end === undefined) {
        this.#armWatchdog(this.#limits.writeTimeoutMs);
      }
      try {
        await this.#writer.write(batch);
      } catch (e) {
        this.#fail(
          new MuxError("connection-error", `writing to the transport failed: ${e}`, { cause: e }),
        );
        break;
      }
      const written = this.#writing;
      this.#writing = [];
      this.#lastWriteProgress = performance.now();
      for (const d of written) {
        if (d === "control") this.#controlWritten();
        else if (d !== null) d.resolve();
      }
    }
    this.#flushing = null;
  }

  #controlWritten(): void {
    this.#pendingControl--;
    if (this.#pendingControl <= CONTROL_HIGH_WATER / 2 && this.#controlDrained !== null) {
      const wake = this.#controlDrained;
      this.#controlDrained = null;
      wake();
    }
  }

  #armWatchdog(ms: number): void {
    this.#watchdog = setTimeout(() => {
      this.#watchdog = null;
      if (this.#writing.length === 0 || this.#end !== undefined) return;
      const stalled = performance.now() - this.#lastWriteProgress;
      if (stalled >= this.#limits.writeTimeoutMs) {
        this.#fail(
          new MuxError(
            "write-timeout",
            `the transport accepted no data for ${this.#limits.writeTimeoutMs} ms`,
          ),
        );
      } else {
        this.#armWatchdog(Math.max(1, Math.ceil(this.#limits.writeTimeoutMs - stalled)));
      }
    }, ms);
  }

  #sendControl(type: number, flags: number, streamId: number, length: number): void {
    if (this.#end !== undefined) return;
    const frame = new Uint8Array(HEADER_LENGTH);
    writeHeader(frame, 0, type, flags, streamId, length);
    this.#pendingControl++;
    this.#enqueue(frame, "control");
  }

  /** Queues a data frame; resolves once the transport took all of it. */
  #sendData(streamId: number, body: Uint8Array): Promise<void> {
    if (this.#end !== undefined) {
      return Promise.reject(
        this.#end ?? new MuxError("session-closed", "the multiplexer session was closed"),
      );
    }
    return new Promise<void>((resolve, reject) => {
      if (body.length < COPY_LIMIT) {
        const frame = new Uint8Array(HEADER_LENGTH + body.length);
        writeHeader(frame, 0, TYPE_DATA, 0, streamId, body.length);
        frame.set(body, HEADER_LENGTH);
        this.#enqueue(frame, { resolve, reject });
      } else {
        // No copy of a large body: the caller keeps it untouched until resolved.
        const header = new Uint8Array(HEADER_LENGTH);
        writeHeader(header, 0, TYPE_DATA, 0, streamId, body.length);
        this.#enqueue(header, null);
        this.#enqueue(body, { resolve, reject });
      }
    });
  }

  // ---- reading ----

  async #runReadLoop(): Promise<void> {
    try {
      for (;;) {
        const h = await this.#input.header();
        if (this.#end !== undefined) return;
        if (h === null) {
          this.#fail(new MuxError("remote-closed", "the peer closed the connection"));
          return;
        }
        validateHeader(h, this.#limits.maxFrameLength);
        if (h.type === TYPE_DATA || h.type === TYPE_WINDOW_UPDATE) {
          await this.#onStreamFrame(h);
        } else if (h.type === TYPE_PING) {
          this.#onPing(h);
        } else {
          this.#onGoAway(h);
        }
        if (this.#end !== undefined) return;
        if (this.#pendingControl > CONTROL_HIGH_WATER) {
          await new Promise<void>((resolve) => {
            this.#controlDrained = resolve;
          });
        }
      }
    } catch (e) {
      this.#fail(
        e instanceof MuxError
          ? e
          : new MuxError("internal", `multiplexer failure while handling a frame: ${e}`, {
            cause: e,
          }),
      );
    }
  }

  #isPeerId(id: number): boolean {
    return (id % 2 === 1) !== this.#client;
  }

  async #onStreamFrame(h: FrameHeader): Promise<void> {
    const id = h.streamId;
    let core = this.#streams.get(id);
    if ((h.flags & FLAG_SYN) !== 0) {
      if (!this.#isPeerId(id)) {
        throw new MuxError(
          "wrong-parity",
          `the peer opened stream ${id}, but ${
            this.#client ? "odd" : "even"
          } ids belong to this side`,
        );
      }
      if (core !== undefined) {
        throw new MuxError(
          "duplicate-stream",
          `the peer opened stream ${id} again while it is open`,
        );
      }
      if (
        !this.#peerIds.claim(id) ||
        this.#localGoAway || this.#streams.size >= this.#limits.maxStreams ||
        this.#acceptQueue.length >= this.#limits.acceptBacklog
      ) {
        this.#sendControl(TYPE_WINDOW_UPDATE, FLAG_RST, id, 0);
        return this.#discard(h);
      }
      core = new StreamCore(id, this.#host);
      this.#streams.set(id, core);
      const waiter = this.#acceptWaiters.shift();
      if (waiter !== undefined) waiter(this.#acknowledge(core));
      else this.#acceptQueue.push(core);
    } else if (core === undefined) {
      const neverOpened = this.#isPeerId(id) ? this.#peerIds.neverOpened(id) : id >= this.#nextId;
      if (neverOpened) {
        throw new MuxError("unknown-stream", `frame for stream ${id}, which was never opened`);
      }
      return this.#discard(h); // late frame for a stream that already ended
    }
    // Any frame for the stream shows the peer knows it: a peer that saw our
    // FIN before accepting never sends an ACK (hashicorp/yamux).
    core.onPeerFrame();
    if (h.type === TYPE_WINDOW_UPDATE) {
      core.onWindowUpdate(h.length);
    } else if (h.length > 0) {
      if (core.remoteFin) {
        throw new MuxError("data-after-fin", `data on stream ${id} after the peer closed it (FIN)`);
      }
      if (h.length > core.recvWindow) {
        throw new MuxError(
          "window-exceeded",
          `data frame of ${h.length} bytes on stream ${id} exceeds the receive window ${core.recvWindow}`,
        );
      }
      core.expectData(h.length);
      let left = h.length;
      while (left > 0) {
        const piece = await this.#input.piece(left);
        left -= piece.length;
        core.onData(piece);
      }
    }
    if ((h.flags & FLAG_FIN) !== 0) core.onRemoteFin();
    if ((h.flags & FLAG_RST) !== 0) core.onRemoteReset();
  }

  async #discard(h: FrameHeader): Promise<void> {
    if (h.type !== TYPE_DATA) return;
    let left = h.length;
    while (left > 0) left -= (await this.#input.piece(left)).length;
  }

  #onPing(h: FrameHeader): void {
    if (h.flags === FLAG_SYN) {
      this.#sendControl(TYPE_PING, FLAG_ACK, 0, h.length);
    } else if (h.flags === FLAG_ACK) {
      const p = this.#pings.get(h.length);
      if (p === undefined) return; // answer to a ping that already timed out
      this.#pings.delete(h.length);
      clearTimeout(p.timer);
      p.resolve(performance.now() - p.start);
    } else {
      throw new MuxError(
        "bad-flags",
        `ping frame with flags 0x${h.flags.toString(16)} (must be SYN or ACK)`,
      );
    }
  }

  #onGoAway(h: FrameHeader): void {
    switch (h.length) {
      case GO_AWAY_NORMAL:
        this.#remoteGoAway = true;
        this.#resolvePeerGoAway();
        return;
      case GO_AWAY_PROTOCOL_ERROR:
        throw new MuxError(
          "remote-go-away-protocol-error",
          "the peer ended the session: it saw a protocol error",
        );
      case GO_AWAY_INTERNAL_ERROR:
        throw new MuxError(
          "remote-go-away-internal-error",
          "the peer ended the session after an internal error",
        );
      default:
        throw new MuxError("bad-go-away-code", `go-away with unknown code ${h.length}`);
    }
  }

  // ---- keepalive and shutdown ----

  #scheduleKeepAlive(): void {
    const every = this.#limits.keepAliveIntervalMs;
    if (every <= 0 || this.#end !== undefined) return;
    this.#keepAliveTimer = setTimeout(() => {
      this.#keepAliveTimer = null;
      this.ping().then(
        () => this.#scheduleKeepAlive(),
        (e: MuxError) => {
          if (e.code !== "ping-timeout") return;
          this.#fail(
            new MuxError(
              "keepalive-timeout",
              `keepalive: the peer did not answer a ping within ${this.#limits.pingTimeoutMs} ms`,
            ),
          );
        },
      );
    }, every);
  }

  #fail(error: MuxError): void {
    if (this.#end !== undefined) return;
    if (PROTOCOL_ERROR_CODES.has(error.code)) {
      this.#sendControl(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR);
    } else if (error.code === "internal") {
      this.#sendControl(TYPE_GO_AWAY, 0, 0, GO_AWAY_INTERNAL_ERROR);
    }
    this.#shutdown(error);
  }

  #shutdown(error: MuxError | null): void {
    this.#end = error;
    if (this.#keepAliveTimer !== null) clearTimeout(this.#keepAliveTimer);
    this.#keepAliveTimer = null;
    const streamError = error ??
      new MuxError("session-closed", "the multiplexer session was closed");
    for (const p of this.#pings.values()) {
      clearTimeout(p.timer);
      p.reject(streamError);
    }
    this.#pings.clear();
    // Data that was not written yet is dropped; control frames (RST,
    // go-away) still go out while the transport is being released.
    for (const d of [...this.#writing, ...this.#outDone]) {
      if (d !== null && d !== "control") d.reject(streamError);
    }
    // A data header already on its way needs its body after it.
    const headerInFlight = this.#writing.length > 0 && this.#writing.at(-1) === null;
    const keep = this.#outDone.map((d, i) => d === "control" || (i === 0 && headerInFlight));
    this.#out = this.#out.filter((_, i) => keep[i]);
    this.#outDone = this.#outDone.filter((_, i) => keep[i]);
    for (const core of this.#streams.values()) core.sessionEnded(streamError);
    this.#streams.clear();
    this.#acceptQueue = [];
    for (const w of this.#acceptWaiters) w(null);
    this.#acceptWaiters = [];
    if (this.#controlDrained !== null) this.#controlDrained();
    this.#controlDrained = null;
    this.#releaseTransport(error).then(() => this.#resolveClosed(error));
  }

  /** Flushes what was queued (bounded by the write timeout), then lets go. */
  async #releaseTransport(error: MuxError | null): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), this.#limits.writeTimeoutMs);
    });
    const flushed = (async () => {
      await this.#flushing;
      await this.#writer.close();
    })().then(() => false, () => false);
    if (await Promise.race([flushed, timedOut])) {
      // Not awaited: an abort waits for the stuck write in flight to finish.
      this.#writer.abort(error ?? undefined).catch(() => {});
    }
    clearTimeout(timer);
    if (this.#watchdog !== null) clearTimeout(this.#watchdog);
    this.#watchdog = null;
    await this.#input.cancel(error ?? undefined);
    await this.#readLoop;
  }
}
