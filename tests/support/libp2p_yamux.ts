/**
 * Drives npm:@libp2p/yamux (v8) outside libp2p: a minimal MessageStream over
 * a Deno TCP connection (the members YamuxMuxer uses: log, direction, send,
 * abort and the message/drain/close events), and helpers to read and write
 * its streams. Test and benchmark use only.
 */
import { yamux } from "@libp2p/yamux";

type YamuxMuxer = ReturnType<ReturnType<ReturnType<typeof yamux>>["createStreamMuxer"]>;
export type LibYamuxStream = Awaited<ReturnType<YamuxMuxer["createStream"]>>;
export type LibYamuxMuxer = YamuxMuxer;

interface SilentLogger {
  (...args: unknown[]): void;
  enabled: boolean;
  error: (...args: unknown[]) => void;
  trace: (...args: unknown[]) => void;
  newScope: () => SilentLogger;
}

function silentLogger(): SilentLogger {
  const log: SilentLogger = Object.assign(() => {}, {
    enabled: false,
    error: () => {},
    trace: () => {},
    newScope: () => log,
  });
  return log;
}

/** Above this many unsent bytes `send()` asks the muxer to wait for "drain". */
const SEND_HIGH_WATER = 1024 * 1024;

class TcpMessageStream extends EventTarget {
  readonly log = silentLogger();
  status = "open";
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #unsent = 0;
  #needsDrain = false;

  constructor(readonly conn: Deno.Conn, readonly direction: "inbound" | "outbound") {
    super();
    this.#writer = conn.writable.getWriter();
    this.#pumpIn();
  }

  async #pumpIn(): Promise<void> {
    let error: unknown;
    try {
      for await (const chunk of this.conn.readable) {
        this.dispatchEvent(Object.assign(new Event("message"), { data: chunk }));
      }
    } catch (e) {
      error = e;
    }
    this.status = "closed";
    this.dispatchEvent(Object.assign(new Event("close"), { error, local: false }));
  }

  send(data: Uint8Array | { subarray(): Uint8Array }): boolean {
    const bytes = data instanceof Uint8Array ? data : data.subarray();
    this.#unsent += bytes.length;
    this.#writer.write(bytes).then(
      () => {
        this.#unsent -= bytes.length;
        if (this.#needsDrain && this.#unsent < SEND_HIGH_WATER / 2) {
          this.#needsDrain = false;
          this.dispatchEvent(new Event("drain"));
        }
      },
      () => {/* the read side reports the failure through "close" */},
    );
    if (this.#unsent > SEND_HIGH_WATER) this.#needsDrain = true;
    return !this.#needsDrain;
  }

  abort(_err: Error): void {
    this.status = "aborted";
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** A libp2p yamux muxer on `conn`; "outbound" makes it the yamux client. */
export function libp2pMuxer(
  conn: Deno.Conn,
  direction: "inbound" | "outbound",
  opts: { keepAlive?: boolean; maxStreams?: number } = {},
): YamuxMuxer {
  const factory = yamux({
    enableKeepAlive: opts.keepAlive ?? false,
    maxInboundStreams: opts.maxStreams,
    maxOutboundStreams: opts.maxStreams,
  })();
  const maConn = new TcpMessageStream(conn, direction);
  return factory.createStreamMuxer(
    maConn as unknown as Parameters<typeof factory.createStreamMuxer>[0],
  );
}

/** Resolves at the next of the given events on a libp2p stream. */
function nextEvent(
  stream: LibYamuxStream,
  names: Parameters<LibYamuxStream["removeEventListener"]>[0][],
): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      for (const n of names) stream.removeEventListener(n, done);
      resolve();
    };
    for (const n of names) stream.addEventListener(n, done);
  });
}

/** Above this many bytes in a libp2p stream's own write buffer, wait for it to empty. */
const STREAM_BUFFER_HIGH = 1024 * 1024;

/**
 * Writes `data` to a libp2p stream in `chunkSize` pieces with backpressure.
 * `send()` returning false means "wait for drain"; the stream's onDrain()
 * is not used because once resolved it stays resolved (v8 keeps the settled
 * promise), which turns the loop into a microtask spin that starves the
 * receiving side. The "drain" event itself is reliable. While a send is in
 * progress send() returns true and buffers without limit, so the stream's
 * write buffer is watched too ("idle" fires when it is empty).
 */
export async function libp2pWrite(
  stream: LibYamuxStream,
  data: Uint8Array,
  chunkSize = 64 * 1024,
): Promise<void> {
  for (let off = 0; off < data.length; off += chunkSize) {
    if (!stream.send(data.subarray(off, Math.min(data.length, off + chunkSize)))) {
      await nextEvent(stream, ["drain", "close"]);
    } else if (stream.writeBufferLength > STREAM_BUFFER_HIGH) {
      await nextEvent(stream, ["idle", "close"]);
    }
  }
}

/** Reads a libp2p stream to its end, calling `onChunk` for each piece. */
export async function libp2pReadAll(
  stream: LibYamuxStream,
  onChunk: (b: Uint8Array) => void,
): Promise<void> {
  for await (const chunk of stream) onChunk(chunk instanceof Uint8Array ? chunk : chunk.subarray());
}
