/**
 * How the relay reaches the controller. Each dial yields one byte stream on
 * which the relay runs TLS 1.3 and HTTP/2 to the controller's gRPC server:
 * an in-process pipe (embedded relay) or a substream of the reverse tunnel.
 */
import { Duplex } from "node:stream";

export interface BackendTransport {
  /** Opens a new byte stream to the controller's gRPC server. */
  dial(): Promise<Duplex>;
  /** Human-readable name for logs ("embedded", "tunnel"). */
  readonly name: string;
  /**
   * True when the relay speaks plain HTTP/2 on a new stream and the
   * controller trusts it by origin: the embedded pipe (both ends live in
   * this process), or a tunnel whose controller announced `plain_h2` (the
   * tunnel's mutual TLS authenticated both ends; may change per session).
   */
  readonly inProcess?: boolean;
  /** Registers a callback for when the path to the controller is replaced. */
  onChange?(fn: () => void): void;
  close?(): Promise<void>;
}

/** One end of an in-memory pipe: what it writes, its peer reads, with backpressure. */
class PipeEnd extends Duplex {
  peer!: PipeEnd;
  #resumeWriter?: () => void;

  override _write(chunk: Uint8Array, _enc: string, done: (e?: Error | null) => void): void {
    if (this.peer.push(chunk)) done();
    else this.peer.#resumeWriter = () => done();
  }

  override _read(): void {
    const resume = this.#resumeWriter;
    this.#resumeWriter = undefined;
    resume?.();
  }

  override _final(done: (e?: Error | null) => void): void {
    this.peer.push(null);
    done();
  }

  override _destroy(err: Error | null, done: (e?: Error | null) => void): void {
    // Like a dropped TCP connection: the other end closes too.
    if (!this.peer.destroyed) this.peer.destroy();
    done(err);
  }
}

/** Two connected in-memory duplex streams. */
export function duplexPair(): [Duplex, Duplex] {
  const a = new PipeEnd();
  const b = new PipeEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/**
 * The embedded transport: the controller passes a function that takes one
 * end of an in-memory pipe as an accepted connection of its gRPC server.
 */
export function embeddedTransport(accept: (conn: Duplex) => void): BackendTransport {
  return {
    name: "embedded",
    inProcess: true,
    dial() {
      const [relayEnd, controllerEnd] = duplexPair();
      accept(controllerEnd);
      return Promise.resolve(relayEnd);
    },
  };
}
