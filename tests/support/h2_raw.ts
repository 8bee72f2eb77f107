/**
 * A raw HTTP/2 client for abuse tests: it writes frames itself, so it can do
 * what well-behaved libraries refuse to (exceed the peer's stream limit,
 * reset streams in bulk, never grant flow-control window) and reports every
 * frame the server sends (RST_STREAM codes, GOAWAY, DATA, trailers).
 * TLS with ALPN h2 and an optional client certificate; loopback only.
 */
import { HUFFMAN_CODES, HUFFMAN_LENGTHS, STATIC_TABLE } from "./hpack_tables.ts";

export const FRAME = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 };
export const ERR = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  ENHANCE_YOUR_CALM: 11,
} as const;
export const SETTING = { INITIAL_WINDOW_SIZE: 4, MAX_CONCURRENT_STREAMS: 3 } as const;

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export interface RawStream {
  id: number;
  /** Header blocks received (response headers, then trailers). */
  headers: Map<string, string>[];
  dataBytes: number;
  /** The RST_STREAM code the server sent, if any. */
  rst?: number;
  /** END_STREAM seen from the server. */
  ended: boolean;
}

// --- HPACK (RFC 7541): literal encoding, full decoding ---

function encodeInt(out: number[], value: number, prefixBits: number, first: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  for (let i = 0; i < 6 && value >= 128; i++) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

/** Header block with every field a literal without indexing (no Huffman). */
export function encodeHeaders(fields: [string, string][]): Uint8Array {
  const out: number[] = [];
  const enc = new TextEncoder();
  for (const [name, value] of fields) {
    out.push(0x00);
    const n = enc.encode(name);
    encodeInt(out, n.length, 7, 0);
    out.push(...n);
    const v = enc.encode(value);
    encodeInt(out, v.length, 7, 0);
    out.push(...v);
  }
  return new Uint8Array(out);
}

interface HuffNode {
  sym?: number;
  kids: (HuffNode | undefined)[];
}
let huffRoot: HuffNode | undefined;
function huffTree(): HuffNode {
  if (huffRoot) return huffRoot;
  const root: HuffNode = { kids: [] };
  for (let sym = 0; sym < 256; sym++) {
    let node = root;
    const code = HUFFMAN_CODES[sym];
    const len = HUFFMAN_LENGTHS[sym];
    for (let b = len - 1; b >= 0; b--) {
      const bit = (code >>> b) & 1;
      node = node.kids[bit] ??= { kids: [] };
    }
    node.sym = sym;
  }
  return huffRoot = root;
}

function huffDecode(bytes: Uint8Array): Uint8Array {
  const root = huffTree();
  const out: number[] = [];
  let node = root;
  for (const byte of bytes) {
    for (let b = 7; b >= 0; b--) {
      const next = node.kids[(byte >> b) & 1];
      if (!next) return new Uint8Array(out); // padding (EOS prefix)
      node = next;
      if (node.sym !== undefined) {
        out.push(node.sym);
        node = root;
      }
    }
  }
  return new Uint8Array(out);
}

export class HpackDecoder {
  #dynamic: [string, string][] = [];
  #size = 0;
  #max = 4096;

  decode(block: Uint8Array): Map<string, string> {
    const out = new Map<string, string>();
    let i = 0;
    const int = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let v = block[i++] & max;
      if (v < max) return v;
      let m = 1;
      for (let k = 0; k < 6; k++) {
        const b = block[i++];
        v += (b & 0x7f) * m;
        m *= 128;
        if ((b & 0x80) === 0) break;
      }
      return v;
    };
    const str = (): string => {
      const huff = (block[i] & 0x80) !== 0;
      const len = int(7);
      const raw = block.subarray(i, i + len);
      i += len;
      return new TextDecoder().decode(huff ? huffDecode(raw) : raw);
    };
    const entry = (idx: number): [string, string] => {
      if (idx >= 1 && idx <= STATIC_TABLE.length) return STATIC_TABLE[idx - 1] as [string, string];
      const d = this.#dynamic[idx - STATIC_TABLE.length - 1];
      if (!d) throw new Error(`hpack: bad index ${idx}`);
      return d;
    };
    for (let guard = 0; i < block.length && guard < 10_000; guard++) {
      const b = block[i];
      if (b & 0x80) {
        const [n, v] = entry(int(7));
        out.set(n, v);
      } else if (b & 0x40) {
        const idx = int(6);
        const name = idx === 0 ? str() : entry(idx)[0];
        const value = str();
        this.#add(name, value);
        out.set(name, value);
      } else if (b & 0x20) {
        this.#max = int(5);
        this.#evict();
      } else {
        const idx = int(4);
        const name = idx === 0 ? str() : entry(idx)[0];
        out.set(name, str());
      }
    }
    return out;
  }

  #add(name: string, value: string): void {
    this.#dynamic.unshift([name, value]);
    this.#size += name.length + value.length + 32;
    this.#evict();
  }

  #evict(): void {
    while (this.#size > this.#max && this.#dynamic.length > 0) {
      const [n, v] = this.#dynamic.pop()!;
      this.#size -= n.length + v.length + 32;
    }
  }
}

// --- the connection ---

export interface RawConnectOptions {
  port: number;
  caPem: string;
  certPem?: string;
  keyPem?: string;
  /** SETTINGS sent with the preface (id → value). */
  settings?: [number, number][];
  /** Grant flow-control window back for every DATA frame (default true). */
  autoWindow?: boolean;
}

export class RawH2 {
  readonly streams = new Map<number, RawStream>();
  goaway?: { lastStreamId: number; code: number };
  /** Set when the connection is gone (EOF or error). */
  closed = false;
  /** Low 32 bits of each PING ACK payload received. */
  readonly pingAcks: number[] = [];
  /** Peer SETTINGS received (id → value). */
  readonly peerSettings = new Map<number, number>();
  #nextId = 1;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #decoder = new HpackDecoder();
  #waiters = new Set<() => void>();
  #pendingHeaders?: { id: number; parts: Uint8Array[]; end: boolean };
  #reading: Promise<void>;

  private constructor(private readonly conn: Deno.TlsConn, private readonly autoWindow: boolean) {
    this.#writer = conn.writable.getWriter();
    this.#reading = this.#read();
  }

  static async connect(opts: RawConnectOptions): Promise<RawH2> {
    const conn = await Deno.connectTls({
      hostname: "localhost",
      port: opts.port,
      caCerts: [opts.caPem],
      alpnProtocols: ["h2"],
      ...(opts.certPem && opts.keyPem ? { cert: opts.certPem, key: opts.keyPem } : {}),
    });
    const h2 = new RawH2(conn, opts.autoWindow ?? true);
    await h2.write([PREFACE, h2.settingsFrame(opts.settings ?? [])]);
    return h2;
  }

  /** Resolves when `cond` holds after some frame; throws after `timeoutMs`. */
  waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!cond()) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`raw h2: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  frame(type: number, flags: number, id: number, payload: Uint8Array = new Uint8Array(0)) {
    const f = new Uint8Array(9 + payload.length);
    const dv = new DataView(f.buffer);
    dv.setUint32(0, payload.length << 8);
    f[3] = type;
    f[4] = flags;
    dv.setUint32(5, id & 0x7fffffff);
    f.set(payload, 9);
    return f;
  }

  settingsFrame(entries: [number, number][]): Uint8Array {
    const p = new Uint8Array(entries.length * 6);
    const dv = new DataView(p.buffer);
    entries.forEach(([k, v], i) => {
      dv.setUint16(i * 6, k);
      dv.setUint32(i * 6 + 2, v);
    });
    return this.frame(FRAME.SETTINGS, 0, 0, p);
  }

  async write(frames: Uint8Array[]): Promise<void> {
    const total = frames.reduce((n, f) => n + f.length, 0);
    const all = new Uint8Array(total);
    let off = 0;
    for (const f of frames) {
      all.set(f, off);
      off += f.length;
    }
    if (this.closed) return;
    try {
      await this.#writer.write(all);
    } catch {
      this.closed = true; // the server closed the connection
      this.#notify();
    }
  }

  /** Request HEADERS for a gRPC call on `path` (not sent: pass to write()). */
  requestFrames(
    path: string,
    opts: { body?: Uint8Array; endStream?: boolean; extra?: [string, string][] } = {},
  ): { id: number; frames: Uint8Array[] } {
    const id = this.#nextId;
    this.#nextId += 2;
    this.streams.set(id, { id, headers: [], dataBytes: 0, ended: false });
    const block = encodeHeaders([
      [":method", "POST"],
      [":scheme", "https"],
      [":path", path],
      [":authority", "localhost"],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ...(opts.extra ?? []),
    ]);
    const endOnHeaders = opts.endStream && !opts.body;
    const frames = [
      this.frame(FRAME.HEADERS, FLAG.END_HEADERS | (endOnHeaders ? FLAG.END_STREAM : 0), id, block),
    ];
    if (opts.body) {
      // DATA frames within the default SETTINGS_MAX_FRAME_SIZE (16 KiB).
      const body = opts.body;
      for (let off = 0; off < body.length || off === 0; off += 16384) {
        const last = off + 16384 >= body.length;
        const flags = last && opts.endStream ? FLAG.END_STREAM : 0;
        frames.push(this.frame(FRAME.DATA, flags, id, body.subarray(off, off + 16384)));
        if (last) break;
      }
    }
    return { id, frames };
  }

  /** Opens one call; returns its stream id. */
  async request(
    path: string,
    opts: { body?: Uint8Array; endStream?: boolean; extra?: [string, string][] } = {},
  ): Promise<number> {
    const { id, frames } = this.requestFrames(path, opts);
    await this.write(frames);
    return id;
  }

  rstFrame(id: number, code: number): Uint8Array {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, code);
    return this.frame(FRAME.RST_STREAM, 0, id, p);
  }

  dataFrame(id: number, body: Uint8Array, endStream = false): Uint8Array {
    return this.frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, id, body);
  }

  windowFrame(id: number, increment: number): Uint8Array {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, increment);
    return this.frame(FRAME.WINDOW_UPDATE, 0, id, p);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  /** Waits for the reader to stop (after close() or the server's EOF). */
  async done(): Promise<void> {
    await this.#reading;
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  async #read(): Promise<void> {
    let buf = new Uint8Array(0);
    const reader = this.conn.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const merged = new Uint8Array(buf.length + value.length);
        merged.set(buf);
        merged.set(value, buf.length);
        buf = merged;
        let off = 0;
        const replies: Uint8Array[] = [];
        while (buf.length - off >= 9) {
          const dv = new DataView(buf.buffer, buf.byteOffset + off);
          const len = dv.getUint32(0) >>> 8;
          if (buf.length - off < 9 + len) break;
          const type = buf[off + 3];
          const flags = buf[off + 4];
          const id = dv.getUint32(5) & 0x7fffffff;
          const payload = buf.slice(off + 9, off + 9 + len);
          off += 9 + len;
          this.#onFrame(type, flags, id, payload, replies);
        }
        buf = buf.slice(off);
        if (replies.length > 0 && !this.closed) await this.write(replies).catch(() => {});
        this.#notify();
      }
    } catch {
      // connection reset: treated as closed
    } finally {
      this.closed = true;
      this.#notify();
    }
  }

  #onFrame(type: number, flags: number, id: number, p: Uint8Array, replies: Uint8Array[]): void {
    const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const s = this.streams.get(id);
    switch (type) {
      case FRAME.SETTINGS:
        if (!(flags & FLAG.ACK)) {
          for (let i = 0; i + 6 <= p.length; i += 6) {
            this.peerSettings.set(dv.getUint16(i), dv.getUint32(i + 2));
          }
          replies.push(this.frame(FRAME.SETTINGS, FLAG.ACK, 0));
        }
        break;
      case FRAME.PING:
        if (!(flags & FLAG.ACK)) replies.push(this.frame(FRAME.PING, FLAG.ACK, 0, p));
        else if (p.length === 8) this.pingAcks.push(dv.getUint32(4));
        break;
      case FRAME.GOAWAY:
        this.goaway ??= { lastStreamId: dv.getUint32(0) & 0x7fffffff, code: dv.getUint32(4) };
        break;
      case FRAME.RST_STREAM:
        if (s) s.rst = dv.getUint32(0);
        break;
      case FRAME.DATA: {
        let len = p.length;
        if (flags & FLAG.PADDED) len -= 1 + p[0];
        if (s) {
          s.dataBytes += len;
          if (flags & FLAG.END_STREAM) s.ended = true;
        }
        if (this.autoWindow && p.length > 0) {
          replies.push(this.windowFrame(0, p.length));
          if (!(flags & FLAG.END_STREAM)) replies.push(this.windowFrame(id, p.length));
        }
        break;
      }
      case FRAME.HEADERS: {
        let start = 0;
        let end = p.length;
        if (flags & FLAG.PADDED) {
          start = 1;
          end -= p[0];
        }
        if (flags & FLAG.PRIORITY) start += 5;
        this.#pendingHeaders = {
          id,
          parts: [p.subarray(start, end)],
          end: (flags & FLAG.END_STREAM) !== 0,
        };
        if (flags & FLAG.END_HEADERS) this.#finishHeaders();
        break;
      }
      case FRAME.CONTINUATION:
        if (this.#pendingHeaders?.id === id) {
          this.#pendingHeaders.parts.push(p);
          if (flags & FLAG.END_HEADERS) this.#finishHeaders();
        }
        break;
    }
  }

  #finishHeaders(): void {
    const h = this.#pendingHeaders!;
    this.#pendingHeaders = undefined;
    const total = h.parts.reduce((n, x) => n + x.length, 0);
    const block = new Uint8Array(total);
    let off = 0;
    for (const x of h.parts) {
      block.set(x, off);
      off += x.length;
    }
    const fields = this.#decoder.decode(block);
    const s = this.streams.get(h.id);
    if (!s) return;
    s.headers.push(fields);
    if (h.end) s.ended = true;
  }
}

/** One gRPC message: flag byte, 4-byte length, body. */
export function grpcFrame(body: Uint8Array, declaredLength = body.length): Uint8Array {
  const f = new Uint8Array(5 + body.length);
  new DataView(f.buffer).setUint32(1, declaredLength);
  f.set(body, 5);
  return f;
}

/** The grpc-status a finished raw stream carries (trailers or trailers-only), if any. */
export function grpcStatus(s: RawStream): string | undefined {
  for (let i = s.headers.length - 1; i >= 0; i--) {
    const v = s.headers[i].get("grpc-status");
    if (v !== undefined) return v;
  }
  return undefined;
}
