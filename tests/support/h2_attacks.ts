/**
 * Abuse patterns against the relay's client port, on the raw HTTP/2 client:
 * rapid reset of calls (held certificate-less claims, claims reset right
 * after sending, device calls answered once then reset) and a counter of
 * how the relay answered each stream. Every wait is bounded.
 */
import { CLAIM_METHOD } from "../../relay/stream_limits.ts";
import { ERR, FLAG, FRAME, grpcFrame, RawH2 } from "./h2_raw.ts";

export const BIDI = "/pharos.test.v1.Echo/Bidi";
export { CLAIM_METHOD };

/** EchoRequest {text = 1, count = 2, blob = 5} in protobuf wire form. */
export function echoRequest(text: string, count = 0, blob?: Uint8Array): Uint8Array {
  const t = new TextEncoder().encode(text);
  const out: number[] = [0x0a, t.length, ...t];
  if (count > 0) out.push(0x10, ...varint(count));
  if (blob) out.push(0x2a, ...varint(blob.length), ...blob);
  return new Uint8Array(out);
}

function varint(n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < 5 && n >= 0x80; i++) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A ClaimEnrollment request (ClaimRequest.token = 1). */
export function claimRequest(token = "tok"): Uint8Array {
  const t = new TextEncoder().encode(token);
  return grpcFrame(new Uint8Array([0x0a, t.length, ...t]));
}

export interface AttackTally {
  opened: number;
  /** Streams the relay refused with REFUSED_STREAM. */
  refused: number;
  /** Streams the relay reset with another code. */
  otherResets: number;
  /** Resets the attacker sent. */
  resetsSent: number;
}

export function tally(raw: RawH2, ids: number[]): AttackTally {
  let refused = 0;
  let otherResets = 0;
  for (const id of ids) {
    const rst = raw.streams.get(id)?.rst;
    if (rst === ERR.REFUSED_STREAM) refused++;
    else if (rst !== undefined) otherResets++;
  }
  return { opened: ids.length, refused, otherResets, resetsSent: 0 };
}

/**
 * Opens `total` certificate-less claims whose requests never finish, in
 * batches the advertised stream limit allows, each batch after the relay has
 * answered the previous one; returns all stream ids. Then nothing is reset:
 * the caller cancels them at once.
 */
export async function holdClaims(
  raw: RawH2,
  total: number,
  batch: number,
  maxOpen: number,
): Promise<number[]> {
  const ids: number[] = [];
  for (let sent = 0; sent < total && !raw.closed && !raw.goaway; sent += batch) {
    const frames: Uint8Array[] = [];
    const now: number[] = [];
    for (let i = 0; i < Math.min(batch, total - sent); i++) {
      const r = raw.requestFrames(CLAIM_METHOD);
      now.push(r.id);
      frames.push(...r.frames);
    }
    ids.push(...now);
    await raw.write(frames);
    await raw.waitFor(
      () =>
        raw.closed || ids.filter((id) => raw.streams.get(id)!.rst === undefined).length <= maxOpen,
      15_000,
      "the relay to refuse the excess claims",
    );
  }
  return ids;
}

/** Resets every stream of `ids` the relay has not closed, in one write. */
export async function resetAll(raw: RawH2, ids: number[]): Promise<number> {
  const open = ids.filter((id) => {
    const s = raw.streams.get(id)!;
    return s.rst === undefined && !s.ended;
  });
  await raw.write(open.map((id) => raw.rstFrame(id, ERR.CANCEL)));
  return open.length;
}

/**
 * Claims sent whole, `total` of them in batches; once the relay has read a
 * batch (PING round trip), every claim it did not refuse is reset at once.
 */
export async function claimAndReset(
  raw: RawH2,
  total: number,
  batch: number,
): Promise<AttackTally> {
  const ids: number[] = [];
  let resetsSent = 0;
  for (let sent = 0; sent < total && !raw.closed && !raw.goaway; sent += batch) {
    const frames: Uint8Array[] = [];
    const now: number[] = [];
    for (let i = 0; i < Math.min(batch, total - sent); i++) {
      const r = raw.requestFrames(CLAIM_METHOD, { body: claimRequest(), endStream: true });
      now.push(r.id);
      frames.push(...r.frames);
    }
    ids.push(...now);
    await raw.write(frames);
    await pingRoundTrip(raw);
    resetsSent += await resetAll(raw, now);
  }
  await pingRoundTrip(raw);
  return { ...tally(raw, ids), resetsSent };
}

let pingSeq = 0;
/** Sends a PING and waits (bounded) for its ACK: the server has read everything before it. */
export async function pingRoundTrip(raw: RawH2, timeoutMs = 15_000): Promise<void> {
  const payload = new Uint8Array(8);
  new DataView(payload.buffer).setUint32(4, ++pingSeq);
  const want = pingSeq;
  const before = raw.pingAcks.length;
  await raw.write([raw.frame(FRAME.PING, 0, 0, payload)]);
  await raw.waitFor(
    () => raw.closed || raw.pingAcks.slice(before).includes(want),
    timeoutMs,
    "a PING acknowledgement",
  );
}

/**
 * A device resetting calls in bulk: each round opens `perRound` bidi calls
 * with one message, waits until each is answered (or refused), then resets
 * all answered ones in one write.
 */
export async function deviceResetRounds(
  raw: RawH2,
  rounds: number,
  perRound: number,
): Promise<AttackTally> {
  const all: number[] = [];
  let resetsSent = 0;
  for (let k = 0; k < rounds && !raw.closed && !raw.goaway; k++) {
    const frames: Uint8Array[] = [];
    const ids: number[] = [];
    for (let i = 0; i < perRound; i++) {
      const r = raw.requestFrames(BIDI, { body: grpcFrame(echoRequest(`a${k}.${i}`)) });
      ids.push(r.id);
      frames.push(...r.frames);
    }
    all.push(...ids);
    await raw.write(frames);
    await raw.waitFor(
      () =>
        raw.closed || ids.every((id) => {
          const s = raw.streams.get(id)!;
          return s.dataBytes > 0 || s.rst !== undefined || s.ended;
        }),
      15_000,
      "every attack call to be answered or refused",
    );
    resetsSent += await resetAll(raw, ids);
  }
  return { ...tally(raw, all), resetsSent };
}

/** Half-closes a stream (empty DATA with END_STREAM). */
export function endStreamFrame(raw: RawH2, id: number): Uint8Array {
  return raw.frame(FRAME.DATA, FLAG.END_STREAM, id);
}
