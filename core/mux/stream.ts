/**
 * One multiplexed stream: WHATWG readable/writable ends with yamux flow
 * control. The receive side never holds more than the window it granted; a
 * window update is sent only when the application has read at least half a
 * window, so a slow reader stalls the sender instead of growing memory.
 */
import { MuxError } from "./errors.ts";
import { FLAG_FIN, FLAG_RST, INITIAL_WINDOW } from "./frame.ts";

/** Pieces shorter than this are copied and merged rather than queued as views. */
const SMALL_PIECE = 8 * 1024;
const TAIL_BUFFER = 16 * 1024;

/** What a stream needs from its session. */
export interface StreamHost {
  /** Receive window granted per stream. */
  readonly windowSize: number;
  /** Largest send window the peer may grant. */
  readonly maxWindowSize: number;
  /** Largest data frame this side sends. */
  readonly maxSendFrame: number;
  /** Queues a window-update frame (fire and forget). */
  sendWindowUpdate(streamId: number, flags: number, delta: number): void;
  /** Sends one data frame; resolves when the transport took it. */
  sendData(streamId: number, body: Uint8Array): Promise<void>;
  /** The stream is finished (both sides closed, or reset): forget it. */
  streamDone(core: StreamCore): void;
}

/**
 * A multiplexed stream as the application sees it. Closing `writable` sends
 * FIN (half-close; `readable` keeps working); aborting it, or `reset()`,
 * sends RST. Cancelling `readable` discards further incoming data.
 */
export class MuxStream {
  readonly #core: StreamCore;
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;

  /** Created by the session; applications get streams from open()/accept(). */
  constructor(
    core: StreamCore,
    readable: ReadableStream<Uint8Array>,
    writable: WritableStream<Uint8Array>,
  ) {
    this.#core = core;
    this.readable = readable;
    this.writable = writable;
  }

  /** The yamux stream id (odd: opened by the client, even: by the server). */
  get id(): number {
    return this.#core.id;
  }

  /** Received bytes not yet read by the application (at most one window). */
  get bufferedBytes(): number {
    return this.#core.bufferedBytes;
  }

  /** Bytes this side may still send before the peer grants more. */
  get sendWindow(): number {
    return this.#core.sendWindow;
  }

  /** Aborts the stream both ways and tells the peer (RST). Idempotent. */
  reset(): void {
    this.#core.reset(
      new MuxError("stream-reset-local", `stream ${this.#core.id} was reset locally`),
    );
  }
}

/** Session-side state of a stream; not exported from core/mux/mod.ts. */
export class StreamCore {
  readonly stream: MuxStream;
  /** Credit the peer gave us. */
  sendWindow = INITIAL_WINDOW;
  /** Credit we gave the peer and it has not used yet. */
  recvWindow = INITIAL_WINDOW;
  remoteFin = false;
  #localFin = false;
  #done = false;
  #queue: Uint8Array[] = [];
  #queued = 0;
  /** Buffer that small pieces are copied into (see #queueSmall). */
  #tail: Uint8Array<ArrayBuffer> | null = null;
  #tailUsed = 0;
  /** Bytes of the data frame currently being read for this stream. */
  #inFlight = 0;
  #readDone = false;
  #readCancelled = false;
  /** Error to surface once buffered data has been read. */
  #readError: MuxError | null = null;
  #writeError: MuxError | null = null;
  #pullWaiter: (() => void) | null = null;
  #windowWaiter: { resolve: () => void; reject: (e: MuxError) => void } | null = null;
  #readController!: ReadableStreamDefaultController<Uint8Array>;
  #writeController!: WritableStreamDefaultController;
  #openTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly id: number, readonly host: StreamHost) {
    const readable = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.#readController = c;
        },
        pull: (c) => this.#pull(c),
        cancel: () => this.#cancelRead(),
      },
      { highWaterMark: 0 },
    );
    const writable = new WritableStream<Uint8Array>({
      start: (c) => {
        this.#writeController = c;
      },
      write: (chunk) => this.#write(chunk),
      close: () => this.#closeWrite(),
      abort: () =>
        this.reset(new MuxError("stream-reset-local", `stream ${id} was aborted locally`)),
    });
    this.stream = new MuxStream(this, readable, writable);
  }

  get bufferedBytes(): number {
    return this.#queued;
  }

  /**
   * Arms the stream-open timeout of an outbound stream: it ends at the first
   * frame from the peer for the stream, whatever its kind (see onPeerFrame).
   */
  armOpenTimer(ms: number): void {
    if (ms <= 0) return;
    this.#openTimer = setTimeout(() => {
      this.#openTimer = null;
      this.reset(
        new MuxError(
          "stream-open-timeout",
          `stream ${this.id}: no frame from the peer for it within ${ms} ms`,
        ),
      );
    }, ms);
  }

  /** The peer sent a frame for this stream (ACK, data, window update, FIN, RST). */
  onPeerFrame(): void {
    this.#clearOpenTimer();
  }

  /** A data frame of `length` bytes for this stream starts. */
  expectData(length: number): void {
    this.recvWindow -= length;
    this.#inFlight += length;
  }

  /** A piece of the current data frame's body. */
  onData(piece: Uint8Array): void {
    this.#inFlight -= piece.length;
    if (this.#readDone) {
      // Reader gone: drop the bytes but hand the credit back.
      this.#grantCredit();
      return;
    }
    this.#queued += piece.length;
    if (piece.length >= SMALL_PIECE && piece.length * 2 >= piece.buffer.byteLength) {
      this.#queue.push(piece);
    } else {
      this.#queueSmall(piece);
    }
    this.#wakeReader();
  }

  /**
   * Small pieces (or small views that would pin a large transport buffer)
   * are copied into a shared buffer and merged with the previous undelivered
   * small piece, so a peer sending one-byte frames cannot make the queue hold
   * one object per byte.
   */
  #queueSmall(piece: Uint8Array): void {
    const tail = this.#tail;
    // (The application may have transferred a chunk it read, detaching the buffer.)
    if (tail !== null && !tail.buffer.detached && this.#tailUsed + piece.length <= tail.length) {
      tail.set(piece, this.#tailUsed);
      const last = this.#queue.length - 1;
      const prev = this.#queue[last];
      if (
        last >= 0 && prev.buffer === tail.buffer &&
        prev.byteOffset + prev.length === tail.byteOffset + this.#tailUsed
      ) {
        this.#queue[last] = tail.subarray(
          prev.byteOffset - tail.byteOffset,
          this.#tailUsed + piece.length,
        );
      } else {
        this.#queue.push(tail.subarray(this.#tailUsed, this.#tailUsed + piece.length));
      }
      this.#tailUsed += piece.length;
      return;
    }
    const fresh = new Uint8Array(Math.max(TAIL_BUFFER, piece.length));
    fresh.set(piece, 0);
    this.#tail = fresh;
    this.#tailUsed = piece.length;
    this.#queue.push(fresh.subarray(0, piece.length));
  }

  onWindowUpdate(delta: number): void {
    const next = this.sendWindow + delta;
    if (next > this.host.maxWindowSize) {
      throw new MuxError(
        "window-overflow",
        `peer raised the send window of stream ${this.id} to ${next}, above the limit ${this.host.maxWindowSize}`,
      );
    }
    this.sendWindow = next;
    if (next > 0 && this.#windowWaiter !== null) {
      const w = this.#windowWaiter;
      this.#windowWaiter = null;
      w.resolve();
    }
  }

  onRemoteFin(): void {
    if (this.remoteFin) return;
    this.remoteFin = true;
    this.#wakeReader();
    if (this.#localFin) this.#finish();
  }

  onRemoteReset(): void {
    this.#abort(new MuxError("stream-reset", `the peer reset stream ${this.id}`), false);
  }

  /** Local reset: sends RST and errors both ends. */
  reset(error: MuxError): void {
    this.#abort(error, true);
  }

  /**
   * The session ended. Data already received stays readable; after it the
   * reader sees `error` unless the peer had finished the stream cleanly.
   */
  sessionEnded(error: MuxError): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearOpenTimer();
    this.#failWrite(error);
    if (!this.remoteFin && !this.#readDone) {
      this.#readError = error;
      if (this.#queued === 0) this.#errorReadable(error);
    }
    this.#wakeReader();
  }

  #abort(error: MuxError, sendRst: boolean): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearOpenTimer();
    if (sendRst) this.host.sendWindowUpdate(this.id, FLAG_RST, 0);
    this.#queue = [];
    this.#queued = 0;
    this.#tail = null;
    this.#readError = error;
    this.#errorReadable(error);
    this.#wakeReader();
    this.#failWrite(error);
    this.host.streamDone(this);
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearOpenTimer();
    this.host.streamDone(this);
  }

  #clearOpenTimer(): void {
    if (this.#openTimer !== null) {
      clearTimeout(this.#openTimer);
      this.#openTimer = null;
    }
  }

  #errorReadable(error: MuxError): void {
    if (this.#readDone) return;
    this.#readDone = true;
    this.#readController.error(error);
  }

  #failWrite(error: MuxError): void {
    if (this.#writeError === null) this.#writeError = error;
    this.#writeController.error(error);
    if (this.#windowWaiter !== null) {
      const w = this.#windowWaiter;
      this.#windowWaiter = null;
      w.reject(error);
    }
  }

  #wakeReader(): void {
    if (this.#pullWaiter !== null) {
      const wake = this.#pullWaiter;
      this.#pullWaiter = null;
      wake();
    }
  }

  #pull(c: ReadableStreamDefaultController<Uint8Array>): Promise<void> | void {
    if (this.#deliver(c)) return;
    return new Promise<void>((resolve) => {
      this.#pullWaiter = resolve;
    }).then(() => {
      this.#deliver(c);
    });
  }

  /** Hands one chunk (or the end) to a waiting reader; false if nothing to give. */
  #deliver(c: ReadableStreamDefaultController<Uint8Array>): boolean {
    if (this.#readDone) return true;
    const chunk = this.#queue.shift();
    if (chunk !== undefined) {
      this.#queued -= chunk.length;
      c.enqueue(chunk);
      this.#grantCredit();
      return true;
    }
    if (this.#readError !== null) {
      this.#errorReadable(this.#readError);
      return true;
    }
    if (this.remoteFin) {
      this.#readDone = true;
      c.close();
      return true;
    }
    return false;
  }

  /** Sends a window update once the reader has freed at least half a window. */
  #grantCredit(): void {
    if (this.remoteFin || this.#done) return;
    const credit = this.host.windowSize - this.#queued - this.#inFlight - this.recvWindow;
    if (credit * 2 < this.host.windowSize) return;
    this.recvWindow += credit;
    this.host.sendWindowUpdate(this.id, 0, credit);
  }

  #cancelRead(): void {
    if (this.#readDone) return;
    this.#readDone = true;
    this.#readCancelled = true;
    this.#queue = [];
    this.#queued = 0;
    this.#tail = null;
    if (this.#localFin || this.#writeError !== null) {
      if (!this.remoteFin) {
        this.reset(new MuxError("stream-cancelled", `stream ${this.id}: reading was cancelled`));
      }
      return;
    }
    this.#grantCredit();
  }

  async #write(chunk: Uint8Array): Promise<void> {
    if (!(chunk instanceof Uint8Array)) {
      throw new MuxError("bad-chunk", `stream ${this.id}: only Uint8Array chunks can be written`);
    }
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#writeError !== null) throw this.#writeError;
      if (this.sendWindow === 0) {
        await new Promise<void>((resolve, reject) => {
          this.#windowWaiter = { resolve, reject };
        });
        continue;
      }
      const n = Math.min(this.sendWindow, chunk.length - offset, this.host.maxSendFrame);
      this.sendWindow -= n;
      await this.host.sendData(this.id, chunk.subarray(offset, offset + n));
      offset += n;
    }
  }

  #closeWrite(): void {
    if (this.#writeError !== null) throw this.#writeError;
    this.#localFin = true;
    this.host.sendWindowUpdate(this.id, FLAG_FIN, 0);
    if (this.remoteFin) {
      this.#finish();
    } else if (this.#readCancelled) {
      this.reset(new MuxError("stream-cancelled", `stream ${this.id}: reading was cancelled`));
    }
  }
}
