/**
 * The yamux frame (hashicorp/yamux wire format, CONTRACTS.md §3.4): a 12-byte
 * header — version 0, type, flags (uint16 BE), stream id (uint32 BE), length
 * (uint32 BE) — followed, for data frames only, by `length` payload bytes.
 */
import { MuxError } from "./errors.ts";

export const PROTOCOL_VERSION = 0;
export const HEADER_LENGTH = 12;

/** Frame types. */
export const TYPE_DATA = 0;
export const TYPE_WINDOW_UPDATE = 1;
export const TYPE_PING = 2;
export const TYPE_GO_AWAY = 3;

/** Flag bits. */
export const FLAG_SYN = 1;
export const FLAG_ACK = 2;
export const FLAG_FIN = 4;
export const FLAG_RST = 8;
const KNOWN_FLAGS = FLAG_SYN | FLAG_ACK | FLAG_FIN | FLAG_RST;

/** Go-away codes carried in the length field. */
export const GO_AWAY_NORMAL = 0;
export const GO_AWAY_PROTOCOL_ERROR = 1;
export const GO_AWAY_INTERNAL_ERROR = 2;

/** Window every stream starts with on both sides, before any update. */
export const INITIAL_WINDOW = 256 * 1024;
export const MAX_UINT32 = 0xffff_ffff;

export interface FrameHeader {
  version: number;
  type: number;
  flags: number;
  streamId: number;
  /** Data: payload length; window update: delta; ping: opaque; go-away: code. */
  length: number;
}

export interface Frame {
  header: FrameHeader;
  /** Payload of a data frame; empty for the other types. */
  body: Uint8Array;
}

function checkUint(value: number, max: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new MuxError(
      "bad-frame-field",
      `yamux frame ${field} ${value} is not an integer in 0..${max}`,
    );
  }
}

/** Writes a header into `out` at `offset` (no validation; callers check). */
export function writeHeader(
  out: Uint8Array,
  offset: number,
  type: number,
  flags: number,
  streamId: number,
  length: number,
): void {
  out[offset] = PROTOCOL_VERSION;
  out[offset + 1] = type;
  out[offset + 2] = flags >>> 8;
  out[offset + 3] = flags & 0xff;
  out[offset + 4] = streamId >>> 24;
  out[offset + 5] = (streamId >>> 16) & 0xff;
  out[offset + 6] = (streamId >>> 8) & 0xff;
  out[offset + 7] = streamId & 0xff;
  out[offset + 8] = length >>> 24;
  out[offset + 9] = (length >>> 16) & 0xff;
  out[offset + 10] = (length >>> 8) & 0xff;
  out[offset + 11] = length & 0xff;
}

/**
 * Encodes a 12-byte header. Throws MuxError "bad-frame-field" when a field is
 * out of range (the version is always written as 0).
 */
export function encodeFrameHeader(h: Omit<FrameHeader, "version">): Uint8Array {
  checkUint(h.type, 0xff, "type");
  checkUint(h.flags, 0xffff, "flags");
  checkUint(h.streamId, MAX_UINT32, "stream id");
  checkUint(h.length, MAX_UINT32, "length");
  const out = new Uint8Array(HEADER_LENGTH);
  writeHeader(out, 0, h.type, h.flags, h.streamId, h.length);
  return out;
}

/**
 * Encodes a whole frame. For a data frame `length` is taken from `body`; other
 * types carry no body and keep their own `length` value.
 */
export function encodeFrame(
  h: Omit<FrameHeader, "version" | "length"> & { length?: number },
  body?: Uint8Array,
): Uint8Array {
  if (h.type === TYPE_DATA) {
    const payload = body ?? new Uint8Array(0);
    const out = new Uint8Array(HEADER_LENGTH + payload.length);
    out.set(encodeFrameHeader({ ...h, length: payload.length }), 0);
    out.set(payload, HEADER_LENGTH);
    return out;
  }
  if (body !== undefined && body.length > 0) {
    throw new MuxError("bad-frame-field", `yamux frame type ${h.type} carries no body`);
  }
  return encodeFrameHeader({ ...h, length: h.length ?? 0 });
}

/** Reads the fields of a header at `offset` without validating them. */
export function readHeader(bytes: Uint8Array, offset = 0): FrameHeader {
  return {
    version: bytes[offset],
    type: bytes[offset + 1],
    flags: (bytes[offset + 2] << 8) | bytes[offset + 3],
    streamId: ((bytes[offset + 4] << 24) | (bytes[offset + 5] << 16) | (bytes[offset + 6] << 8) |
      bytes[offset + 7]) >>> 0,
    length: ((bytes[offset + 8] << 24) | (bytes[offset + 9] << 16) | (bytes[offset + 10] << 8) |
      bytes[offset + 11]) >>> 0,
  };
}

/**
 * Checks what a header alone can tell: version, type, flag bits, the stream id
 * that goes with the type (0 for ping and go-away, non-zero for data and
 * window update), and for data frames `length <= maxDataLength`. Throws a
 * MuxError with a protocol-error code naming the fault.
 */
export function validateHeader(h: FrameHeader, maxDataLength: number = MAX_UINT32): void {
  if (h.version !== PROTOCOL_VERSION) {
    throw new MuxError(
      "bad-version",
      `yamux frame has version ${h.version}; only version 0 exists`,
    );
  }
  if (h.type > TYPE_GO_AWAY) {
    throw new MuxError("bad-type", `yamux frame has unknown type ${h.type}`);
  }
  if ((h.flags & ~KNOWN_FLAGS) !== 0) {
    throw new MuxError("bad-flags", `yamux frame has unknown flag bits 0x${h.flags.toString(16)}`);
  }
  if (h.type === TYPE_PING || h.type === TYPE_GO_AWAY) {
    if (h.streamId !== 0) {
      throw new MuxError(
        "bad-stream-id",
        `yamux ${
          h.type === TYPE_PING ? "ping" : "go-away"
        } frame names stream ${h.streamId}; it must be 0`,
      );
    }
  } else if (h.streamId === 0) {
    throw new MuxError("bad-stream-id", "yamux data or window-update frame for stream 0");
  }
  if (h.type === TYPE_DATA && h.length > maxDataLength) {
    throw new MuxError(
      "frame-too-large",
      `yamux data frame of ${h.length} bytes exceeds the limit of ${maxDataLength}`,
    );
  }
}

/** Reads and validates a header (see validateHeader). */
export function decodeFrameHeader(bytes: Uint8Array, maxDataLength?: number): FrameHeader {
  if (bytes.length < HEADER_LENGTH) {
    throw new MuxError(
      "truncated-frame",
      `yamux header needs ${HEADER_LENGTH} bytes, got ${bytes.length}`,
    );
  }
  const h = readHeader(bytes, 0);
  validateHeader(h, maxDataLength);
  return h;
}

/**
 * Incremental frame decoder: feed bytes with `push`, get whole frames back.
 * The data length is checked against `maxDataLength` as soon as the header is
 * complete, so an oversized frame is refused before its body is buffered.
 * Memory held is at most one header plus `maxDataLength`.
 */
export class FrameDecoder {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #header: FrameHeader | null = null;

  constructor(readonly maxDataLength: number = INITIAL_WINDOW) {}

  /** Bytes received but not yet returned as a frame. */
  get bufferedBytes(): number {
    return this.#pendingBytes;
  }

  /** Appends bytes and returns every frame they complete. */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    if (chunk.length > 0) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
    }
    for (;;) {
      if (this.#header === null) {
        if (this.#pendingBytes < HEADER_LENGTH) return frames;
        this.#header = decodeFrameHeader(this.#take(HEADER_LENGTH), this.maxDataLength);
      }
      const bodyLength = this.#header.type === TYPE_DATA ? this.#header.length : 0;
      if (this.#pendingBytes < bodyLength) return frames;
      frames.push({ header: this.#header, body: this.#take(bodyLength) });
      this.#header = null;
    }
  }

  /** Throws "truncated-frame" if input ended inside a frame. */
  end(): void {
    if (this.#header !== null || this.#pendingBytes > 0) {
      throw new MuxError("truncated-frame", "yamux input ended inside a frame");
    }
  }

  #take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const head = this.#pending[0];
      const want = n - filled;
      if (head.length <= want) {
        out.set(head, filled);
        filled += head.length;
        this.#pending.shift();
      } else {
        out.set(head.subarray(0, want), filled);
        this.#pending[0] = head.subarray(want);
        filled += want;
      }
    }
    this.#pendingBytes -= n;
    return out;
  }
}
