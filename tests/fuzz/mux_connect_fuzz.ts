/**
 * Bounded fuzzing of core/mux (frame decoder and whole sessions) and
 * core/connect (CONNECT lines): random and mutated-valid input must only ever
 * produce typed errors, never hang (each session case has a deadline), and
 * never hold more memory than the configured limits. Deterministic per seed.
 * Used by tests/unit/mux_fuzz_test.ts (small counts) and tests/fuzz/main.ts.
 */
import {
  encodeFrame,
  FLAG_ACK,
  FLAG_FIN,
  FLAG_RST,
  FLAG_SYN,
  FrameDecoder,
  HEADER_LENGTH,
  INITIAL_WINDOW,
  MuxError,
  type MuxStream,
  TYPE_DATA,
  TYPE_GO_AWAY,
  TYPE_PING,
  TYPE_WINDOW_UPDATE,
} from "../../core/mux/mod.ts";
import {
  ConnectError,
  formatConnectTarget,
  parseConnectTarget,
  readConnectLine,
} from "../../core/connect/mod.ts";
import { concat } from "../../core/encoding.ts";
import { sessionWithRawConn } from "../unit/mux_helpers.ts";

/** mulberry32: small deterministic PRNG. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

export interface FuzzReport {
  cases: number;
  /** Outcome name → count ("ok", or the error code). */
  outcomes: Map<string, number>;
  ms: number;
}

function count(report: FuzzReport, outcome: string): void {
  report.outcomes.set(outcome, (report.outcomes.get(outcome) ?? 0) + 1);
}

/** A plausible frame sequence from a peer of the given role. */
function validFrames(rng: Rng, peerIsClient: boolean): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const ids: number[] = [];
  let nextId = peerIsClient ? 1 : 2;
  const n = 1 + rng.int(12);
  for (let i = 0; i < n; i++) {
    const roll = rng.int(10);
    if (roll < 3 || ids.length === 0) {
      const id = nextId;
      nextId += 2;
      ids.push(id);
      frames.push(
        rng.int(2) === 0
          ? encodeFrame({
            type: TYPE_WINDOW_UPDATE,
            flags: FLAG_SYN,
            streamId: id,
            length: rng.int(3) * 1024,
          })
          : encodeFrame({ type: TYPE_DATA, flags: FLAG_SYN, streamId: id }, rng.bytes(rng.int(64))),
      );
    } else if (roll < 6) {
      const flags = rng.pick([0, 0, 0, FLAG_FIN, FLAG_ACK]);
      // Now and then a body larger than the initial window (zeros: cheap).
      const body = rng.int(40) === 0
        ? new Uint8Array(INITIAL_WINDOW + rng.int(2))
        : rng.bytes(rng.int(200));
      frames.push(encodeFrame({ type: TYPE_DATA, flags, streamId: rng.pick(ids) }, body));
    } else if (roll < 7) {
      const flags = rng.pick([0, FLAG_ACK, FLAG_FIN, FLAG_RST]);
      frames.push(
        encodeFrame({
          type: TYPE_WINDOW_UPDATE,
          flags,
          streamId: rng.pick(ids),
          length: rng.int(70_000),
        }),
      );
    } else if (roll < 9) {
      frames.push(
        encodeFrame({
          type: TYPE_PING,
          flags: rng.pick([FLAG_SYN, FLAG_ACK]),
          streamId: 0,
          length: rng.int(2 ** 32),
        }),
      );
    } else {
      frames.push(
        encodeFrame({
          type: TYPE_GO_AWAY,
          flags: 0,
          streamId: 0,
          length: rng.pick([0, 0, 0, 1, 2]),
        }),
      );
    }
  }
  return frames;
}

/** Byte-level mutations: flips, overwrites, insertions, deletions, truncation. */
function mutate(rng: Rng, input: Uint8Array): Uint8Array {
  let bytes: Uint8Array = input.slice();
  const rounds = rng.int(4);
  for (let r = 0; r < rounds && bytes.length > 0; r++) {
    const at = rng.int(bytes.length);
    switch (rng.int(6)) {
      case 0:
        bytes[at] ^= 1 << rng.int(8);
        break;
      case 1:
        bytes[at] = rng.pick([0, 1, 2, 3, 4, 0x7f, 0x80, 0xff]);
        break;
      case 2:
        bytes = concat(bytes.subarray(0, at), rng.bytes(1 + rng.int(8)), bytes.subarray(at));
        break;
      case 3:
        bytes = concat(
          bytes.subarray(0, at),
          bytes.subarray(Math.min(bytes.length, at + 1 + rng.int(8))),
        );
        break;
      case 4:
        bytes = bytes.slice(0, at);
        break;
      default: {
        const start = rng.int(bytes.length);
        bytes = concat(
          bytes,
          bytes.subarray(start, Math.min(bytes.length, start + HEADER_LENGTH + rng.int(20))),
        );
      }
    }
  }
  return bytes;
}

/** One input for the decoder or a session. */
export function muxInput(rng: Rng, peerIsClient: boolean): Uint8Array {
  switch (rng.int(4)) {
    case 0:
      return rng.bytes(rng.int(200));
    case 1:
      return concat(...validFrames(rng, peerIsClient));
    default:
      return mutate(rng, concat(...validFrames(rng, peerIsClient)));
  }
}

function splitRandomly(rng: Rng, bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let off = 0; off < bytes.length;) {
    const n = 1 + rng.int(Math.max(1, bytes.length));
    out.push(bytes.subarray(off, off + n));
    off += n;
  }
  return out;
}

/** Feeds inputs to FrameDecoder in random pieces; only MuxError may escape. */
export function fuzzFrameDecoder(seed: number, cases: number): FuzzReport {
  const rng = new Rng(seed);
  const report: FuzzReport = { cases: 0, outcomes: new Map(), ms: 0 };
  const started = performance.now();
  const maxData = 4096;
  for (let i = 0; i < cases; i++) {
    const d = new FrameDecoder(maxData);
    let outcome = "ok";
    try {
      for (const piece of splitRandomly(rng, muxInput(rng, rng.int(2) === 0))) {
        for (const f of d.push(piece)) {
          if (f.header.type === TYPE_DATA && f.body.length !== f.header.length) {
            throw new Error("body length mismatch");
          }
        }
        if (d.bufferedBytes > maxData + HEADER_LENGTH + piece.length) {
          throw new Error("decoder buffered too much");
        }
      }
      d.end();
    } catch (e) {
      if (!(e instanceof MuxError)) {
        throw new Error(`decoder case ${i} (seed ${seed}): untyped error ${e}`);
      }
      outcome = e.code;
    }
    count(report, outcome);
    report.cases++;
  }
  report.ms = performance.now() - started;
  return report;
}

async function consumeStream(rng: Rng, s: MuxStream, typed: (e: unknown) => void): Promise<void> {
  const action = rng.int(4);
  try {
    if (action === 0) {
      s.reset();
      return;
    }
    if (action === 1) {
      const w = s.writable.getWriter();
      try {
        await w.write(rng.bytes(rng.int(100)));
        await w.close();
      } catch {
        // close() on an already errored WritableStream rejects with a
        // TypeError by the WHATWG spec; the stream's own reason is typed.
        await w.closed.then(
          () => typed(new Error("write failed on a stream that closed cleanly")),
          typed,
        );
      }
    }
    const r = s.readable.getReader();
    for (let i = 0; i < 10_000; i++) {
      const { done } = await r.read();
      if (done) break;
    }
  } catch (e) {
    typed(e);
  }
}

/**
 * One session case: a session of a random role reads `input` from a raw peer,
 * which then hangs up. The session must end with null or a MuxError before
 * `deadlineMs`; every stream error must be a MuxError.
 */
async function sessionCase(rng: Rng, deadlineMs: number): Promise<string> {
  const role = rng.int(2) === 0 ? "server" : "client";
  const input = muxInput(rng, role === "server");
  const { session, conn: raw } = sessionWithRawConn({
    role,
    maxStreams: 1 + rng.int(8),
    acceptBacklog: 1 + rng.int(8),
    writeTimeoutMs: deadlineMs,
    streamOpenTimeoutMs: 0,
  }, 4096);
  const untyped: unknown[] = [];
  const typed = (e: unknown) => {
    if (!(e instanceof MuxError)) untyped.push(e);
  };
  const streamWork: Promise<void>[] = [];
  const acceptor = (async () => {
    for await (const s of session) streamWork.push(consumeStream(rng, s, typed));
  })();
  if (rng.int(4) === 0) {
    streamWork.push(session.open().then((s) => consumeStream(rng, s, typed), typed));
  }
  if (rng.int(8) === 0) streamWork.push(session.ping().then(() => {}, typed));
  // The raw peer drains whatever the session sends, and sends the input.
  const drained = raw.readable.pipeTo(new WritableStream()).catch(() => {});
  const writer = raw.writable.getWriter();
  const sending = (async () => {
    for (const piece of splitRandomly(rng, input)) await writer.write(piece);
    await writer.close();
  })().catch(() => {});

  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"hang">((resolve) => {
    timer = setTimeout(() => resolve("hang"), deadlineMs);
  });
  const end = await Promise.race([session.closed, deadline]);
  clearTimeout(timer);
  if (end === "hang") {
    await session.close();
    throw new Error(`session did not end within ${deadlineMs} ms after its input ended`);
  }
  await Promise.all([acceptor, sending, drained]);
  await Promise.all(streamWork);
  if (untyped.length > 0) throw new Error(`untyped stream error: ${untyped[0]}`);
  if (end !== null && !(end instanceof MuxError)) throw new Error(`session ended with ${end}`);
  return end === null ? "closed" : end.code;
}

/** Runs `cases` session cases, `parallel` at a time. */
export async function fuzzSessions(
  seed: number,
  cases: number,
  opts: { parallel?: number; deadlineMs?: number } = {},
): Promise<FuzzReport> {
  const report: FuzzReport = { cases: 0, outcomes: new Map(), ms: 0 };
  const started = performance.now();
  const parallel = opts.parallel ?? 16;
  let next = 0;
  const lanes = Array.from({ length: parallel }, async () => {
    while (next < cases) {
      const index = next++;
      const rng = new Rng(seed * 1_000_003 + index);
      try {
        count(report, await sessionCase(rng, opts.deadlineMs ?? 2000));
      } catch (e) {
        throw new Error(`session fuzz case ${index} (seed ${seed}): ${(e as Error).message}`);
      }
      report.cases++;
    }
  });
  await Promise.all(lanes);
  report.ms = performance.now() - started;
  return report;
}

const LINE_ALPHABET = "0123456789abcdefABCDEF:[].-_+ xyz%\t\r\n\u0000\u007f\u00e9/";
const VALID_LINES = [
  "10.0.0.5:22",
  "node-1.example.com:7443",
  "[::1]:22",
  "[2001:db8::42]:51820",
  "[::ffff:192.0.2.1]:443",
  "localhost:65535",
];

/** A random or mutated-valid CONNECT line (may contain a newline or not). */
export function connectInput(rng: Rng): string {
  if (rng.int(3) === 0) {
    let s = "";
    const n = rng.int(40);
    for (let i = 0; i < n; i++) s += LINE_ALPHABET[rng.int(LINE_ALPHABET.length)];
    return s;
  }
  let s = rng.pick(VALID_LINES);
  const rounds = rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(s.length + 1);
    const ch = LINE_ALPHABET[rng.int(LINE_ALPHABET.length)];
    switch (rng.int(4)) {
      case 0:
        s = s.slice(0, at) + ch + s.slice(at + 1);
        break;
      case 1:
        s = s.slice(0, at) + ch + s.slice(at);
        break;
      case 2:
        s = s.slice(0, at) + s.slice(at + 1);
        break;
      default:
        s = s.slice(0, at) + "a".repeat(rng.int(300)) + s.slice(at);
    }
  }
  return s;
}

/**
 * Parses random and mutated CONNECT lines with both the string parser and the
 * byte reader (random chunking, payload after the newline). Only
 * ConnectError may escape; accepted lines must format back to themselves and
 * the payload after the newline must come back intact.
 */
export async function fuzzConnect(seed: number, cases: number): Promise<FuzzReport> {
  const rng = new Rng(seed);
  const report: FuzzReport = { cases: 0, outcomes: new Map(), ms: 0 };
  const started = performance.now();
  const enc = new TextEncoder();
  for (let i = 0; i < cases; i++) {
    const line = connectInput(rng);
    const where = `connect case ${i} (seed ${seed}) ${JSON.stringify(line)}`;
    let outcome = "ok";
    try {
      const t = parseConnectTarget(line);
      if (formatConnectTarget(t.host, t.port) !== line) {
        throw new Error(`${where}: does not format back`);
      }
    } catch (e) {
      if (!(e instanceof ConnectError)) throw new Error(`${where}: untyped error ${e}`);
      outcome = e.code;
    }
    const payload = rng.bytes(rng.int(8));
    const bytes = concat(
      enc.encode(line),
      rng.int(4) === 0 ? new Uint8Array(0) : new Uint8Array([10]),
      payload,
    );
    const pieces = splitRandomly(rng, bytes);
    let k = 0;
    const reader = new ReadableStream<Uint8Array>({
      pull(c) {
        if (k < pieces.length) c.enqueue(pieces[k++].slice());
        else c.close();
      },
    }).getReader();
    try {
      const { rest } = await readConnectLine(reader);
      const after: number[] = [...rest];
      for (let j = 0; j < 1000; j++) {
        const r = await reader.read();
        if (r.done) break;
        after.push(...r.value);
      }
      const newline = bytes.indexOf(10);
      const expected = bytes.subarray(newline + 1);
      if (after.length !== expected.length || after.some((b, j) => b !== expected[j])) {
        throw new Error(`${where}: payload after the newline changed`);
      }
    } catch (e) {
      if (!(e instanceof ConnectError)) throw new Error(`${where}: reader gave untyped error ${e}`);
    }
    count(report, outcome);
    report.cases++;
  }
  report.ms = performance.now() - started;
  return report;
}
