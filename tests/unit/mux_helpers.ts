/**
 * Test helpers for core/mux: a "raw peer" that speaks frames by hand (to play
 * a hostile or silent peer), and small stream utilities.
 */
import { concat } from "../../core/encoding.ts";
import {
  type Duplex,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type FrameHeader,
  memoryDuplexPair,
  type MuxOptions,
  MuxSession,
} from "../../core/mux/mod.ts";

/** The other end of a session, driven frame by frame. */
export class RawPeer {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new FrameDecoder(16 * 1024 * 1024);
  #frames: Frame[] = [];

  constructor(conn: Duplex) {
    this.#writer = conn.writable.getWriter();
    this.#reader = conn.readable.getReader();
  }

  /** Sends one frame. Data frames take their length from `body`. */
  send(
    h: Omit<FrameHeader, "version" | "length"> & { length?: number },
    body?: Uint8Array,
  ): Promise<void> {
    return this.sendBytes(encodeFrame(h, body));
  }

  sendBytes(bytes: Uint8Array): Promise<void> {
    return this.#writer.write(bytes);
  }

  /** Next frame from the session, or null at end of input or after `timeoutMs`. */
  async next(timeoutMs = 2000): Promise<Frame | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    try {
      while (this.#frames.length === 0) {
        const r = await Promise.race([this.#reader.read(), timeout]);
        if (r === null || r.done) return null;
        this.#frames.push(...this.#decoder.push(r.value));
      }
      return this.#frames.shift()!;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Skips frames until one matches; throws if none comes. */
  async expect(what: string, match: (f: Frame) => boolean, timeoutMs = 2000): Promise<Frame> {
    const deadline = performance.now() + timeoutMs;
    for (let i = 0; i < 10_000; i++) {
      const f = await this.next(Math.max(1, deadline - performance.now()));
      if (f === null) throw new Error(`raw peer: no ${what} frame arrived`);
      if (match(f)) return f;
    }
    throw new Error(`raw peer: no ${what} frame among 10000`);
  }

  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    await this.#reader.cancel().catch(() => {});
  }
}

/** A session under test on one end of a memory pipe, and the other end as is. */
export function sessionWithRawConn(
  options: MuxOptions,
  pipeBytes?: number,
): { session: MuxSession; conn: Duplex } {
  const [a, b] = memoryDuplexPair(pipeBytes);
  return { session: new MuxSession(a, { keepAliveIntervalMs: 0, ...options }), conn: b };
}

/** A session under test plus a raw peer on the other end of a memory pipe. */
export function sessionWithRawPeer(options: MuxOptions): { session: MuxSession; peer: RawPeer } {
  const { session, conn } = sessionWithRawConn(options);
  return { session, peer: new RawPeer(conn) };
}

/** Two sessions talking to each other over a memory pipe. */
export function sessionPair(
  opts: Partial<MuxOptions> = {},
  pipeBytes?: number,
): { client: MuxSession; server: MuxSession } {
  const [a, b] = memoryDuplexPair(pipeBytes);
  return {
    client: new MuxSession(a, { keepAliveIntervalMs: 0, ...opts, role: "client" }),
    server: new MuxSession(b, { keepAliveIntervalMs: 0, ...opts, role: "server" }),
  };
}

/** Reads a stream to its end and returns all bytes. */
export async function readAll(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of readable) parts.push(c);
  return concat(...parts);
}

/** Pseudo-random bytes from a seed (xorshift32), for content checks. */
export function seededBytes(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
