import assert from "node:assert/strict";
import {
  decodeFrameHeader,
  encodeFrame,
  encodeFrameHeader,
  FrameDecoder,
  HEADER_LENGTH,
  INITIAL_WINDOW,
  MuxError,
  TYPE_DATA,
  TYPE_GO_AWAY,
  TYPE_PING,
  TYPE_WINDOW_UPDATE,
} from "../../core/mux/mod.ts";
import { fromHex, toHex } from "../../core/encoding.ts";

interface ValidVector {
  name: string;
  hex: string;
  type: number;
  flags: number;
  streamId: number;
  length: number;
  bodyHex?: string;
}
interface InvalidVector {
  name: string;
  hex: string;
  code: string;
}
const vectors: { valid: ValidVector[]; invalid: InvalidVector[] } = JSON.parse(
  await Deno.readTextFile(new URL("../vectors/mux_frames.json", import.meta.url)),
);

Deno.test("mux frame: hand-encoded vectors decode to their fields and re-encode byte for byte", () => {
  for (const v of vectors.valid) {
    const bytes = fromHex(v.hex);
    const h = decodeFrameHeader(bytes);
    assert.deepEqual(
      { type: h.type, flags: h.flags, streamId: h.streamId, length: h.length, version: h.version },
      { type: v.type, flags: v.flags, streamId: v.streamId, length: v.length, version: 0 },
      v.name,
    );
    const body = v.bodyHex === undefined ? undefined : fromHex(v.bodyHex);
    assert.equal(toHex(encodeFrame({ ...h }, body)), v.hex, v.name);
    const decoded = new FrameDecoder().push(bytes);
    assert.equal(decoded.length, 1, v.name);
    assert.equal(toHex(decoded[0].body), v.bodyHex ?? "", v.name);
  }
});

Deno.test("mux frame: invalid vectors are refused with the named MuxError code", () => {
  for (const v of vectors.invalid) {
    assert.throws(
      () => decodeFrameHeader(fromHex(v.hex), INITIAL_WINDOW),
      (e) => e instanceof MuxError && e.code === v.code,
      v.name,
    );
    if (v.code !== "truncated-frame") {
      assert.throws(
        () => new FrameDecoder().push(fromHex(v.hex)),
        (e) => e instanceof MuxError && e.code === v.code,
        `${v.name} (decoder)`,
      );
    }
  }
});

Deno.test("mux frame: random headers round-trip through encode/decode", () => {
  const types = [TYPE_DATA, TYPE_WINDOW_UPDATE, TYPE_PING, TYPE_GO_AWAY];
  const rnd = new Uint32Array(4);
  for (let i = 0; i < 5000; i++) {
    crypto.getRandomValues(rnd);
    const type = types[rnd[0] % 4];
    const streamId = type === TYPE_PING || type === TYPE_GO_AWAY ? 0 : (rnd[1] || 1);
    const h = {
      type,
      flags: rnd[2] & 0xf,
      streamId,
      length: type === TYPE_DATA ? rnd[3] % 1000 : rnd[3],
    };
    const bytes = encodeFrameHeader(h);
    assert.equal(bytes.length, HEADER_LENGTH);
    assert.deepEqual(decodeFrameHeader(bytes, 1000), { version: 0, ...h });
  }
});

Deno.test("mux frame: out-of-range fields are refused when encoding", () => {
  const bad = [
    { type: 256, flags: 0, streamId: 1, length: 0 },
    { type: 0, flags: 0x10000, streamId: 1, length: 0 },
    { type: 0, flags: 0, streamId: 2 ** 32, length: 0 },
    { type: 1, flags: 0, streamId: 1, length: -1 },
    { type: 1, flags: 0, streamId: 1.5, length: 0 },
  ];
  for (const h of bad) {
    assert.throws(
      () => encodeFrameHeader(h),
      (e) => e instanceof MuxError && e.code === "bad-frame-field",
    );
  }
  assert.throws(
    () => encodeFrame({ type: TYPE_PING, flags: 1, streamId: 0 }, new Uint8Array(1)),
    (e) => e instanceof MuxError && e.code === "bad-frame-field",
  );
});

Deno.test("mux frame: the decoder reassembles frames split at every byte boundary", () => {
  const frames = [
    encodeFrame({ type: TYPE_WINDOW_UPDATE, flags: 1, streamId: 1, length: 0 }),
    encodeFrame(
      { type: TYPE_DATA, flags: 0, streamId: 1 },
      crypto.getRandomValues(new Uint8Array(300)),
    ),
    encodeFrame({ type: TYPE_PING, flags: 1, streamId: 0, length: 42 }),
    encodeFrame({ type: TYPE_DATA, flags: 4, streamId: 1 }),
  ];
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let off = 0;
  for (const f of frames) {
    all.set(f, off);
    off += f.length;
  }
  for (let cut = 0; cut <= all.length; cut++) {
    const d = new FrameDecoder();
    const out = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
    d.end();
    assert.equal(out.length, frames.length);
    assert.deepEqual(out.map((f) => encodeFrame(f.header, f.body)), frames);
  }
  // One byte at a time.
  const d = new FrameDecoder();
  const out = [];
  for (const b of all) out.push(...d.push(new Uint8Array([b])));
  assert.equal(out.length, frames.length);
  assert.equal(d.bufferedBytes, 0);
});

Deno.test("mux frame: an oversized data length is refused at the header, before the body", () => {
  const d = new FrameDecoder(1024);
  const header = encodeFrameHeader({ type: TYPE_DATA, flags: 0, streamId: 1, length: 1025 });
  assert.throws(() => d.push(header), (e) => e instanceof MuxError && e.code === "frame-too-large");
  assert.ok(d.bufferedBytes <= HEADER_LENGTH, "no body was buffered");
  const partial = new FrameDecoder();
  partial.push(header.subarray(0, 5));
  assert.throws(() => partial.end(), (e) => e instanceof MuxError && e.code === "truncated-frame");
});
