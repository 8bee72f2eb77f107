/**
 * core/mux against what hashicorp/yamux peers do: SYNs out of id order,
 * large send windows, and streams that get data or FIN but never an ACK.
 */
import assert from "node:assert/strict";
import {
  FLAG_ACK,
  FLAG_FIN,
  FLAG_RST,
  FLAG_SYN,
  type Frame,
  GO_AWAY_PROTOCOL_ERROR,
  INITIAL_WINDOW,
  MAX_SEND_WINDOW,
  memoryDuplexPair,
  MuxError,
  MuxSession,
  PeerIds,
  TYPE_DATA,
  TYPE_GO_AWAY,
  TYPE_PING,
  TYPE_WINDOW_UPDATE,
} from "../../core/mux/mod.ts";
import { RawPeer, readAll, sessionWithRawPeer } from "./mux_helpers.ts";

const isCode = (code: string) => (e: unknown) => e instanceof MuxError && e.code === code;

const syn = (peer: RawPeer, id: number, delta = 0) =>
  peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: id, length: delta });

/** The raw peer pings and waits for the answer: everything sent before was handled. */
async function sync(peer: RawPeer, mark: number): Promise<void> {
  await peer.send({ type: TYPE_PING, flags: FLAG_SYN, streamId: 0, length: mark });
  await peer.expect(
    `pong ${mark}`,
    (f) => f.header.type === TYPE_PING && f.header.flags === FLAG_ACK && f.header.length === mark,
  );
}

/** Frames with RST from the session, collected while `peer.expect` skips them. */
function rstIds(frames: Frame[]): number[] {
  return frames.filter((f) => (f.header.flags & FLAG_RST) !== 0).map((f) => f.header.streamId);
}

/** Like peer.expect, but also returns every frame skipped on the way. */
async function expectCollecting(
  peer: RawPeer,
  what: string,
  match: (f: Frame) => boolean,
): Promise<{ frame: Frame; skipped: Frame[] }> {
  const skipped: Frame[] = [];
  const frame = await peer.expect(what, (f) => {
    if (match(f)) return true;
    skipped.push(f);
    return false;
  }, 10_000);
  return { frame, skipped };
}

async function closeBoth(session: MuxSession, peer: RawPeer): Promise<void> {
  await session.close();
  await peer.close();
}

Deno.test("mux ids: PeerIds accepts ids out of order, once each, in bounded memory", () => {
  const ids = new PeerIds(1, 4);
  assert.ok(ids.neverOpened(1));
  assert.ok(ids.claim(3), "3 before 1");
  assert.equal(ids.gapCount, 1);
  assert.ok(ids.neverOpened(1), "1 was skipped, not used");
  assert.ok(!ids.neverOpened(3));
  assert.ok(ids.claim(1));
  assert.ok(!ids.claim(1), "1 again");
  assert.ok(!ids.claim(3), "3 again");
  assert.equal(ids.gapCount, 0);
  assert.ok(ids.claim(13), "gaps 5, 7, 9, 11");
  assert.equal(ids.gapCount, 4);
  assert.ok(ids.claim(15));
  assert.ok(ids.claim(17), "no new gaps");
  assert.ok(ids.claim(21), "gap 19 makes 5 gaps: 5 is forgotten");
  assert.equal(ids.gapCount, 4);
  assert.ok(!ids.neverOpened(5), "a forgotten gap counts as used");
  assert.ok(!ids.claim(5));
  for (const id of [7, 9, 11, 19]) assert.ok(ids.neverOpened(id), `gap ${id} kept`);
  assert.ok(ids.claim(9));
  assert.ok(!ids.claim(9));
  assert.ok(ids.neverOpened(23));

  // A jump across most of the id space costs maxGaps entries, not 2^31.
  const far = new PeerIds(2, 1024);
  assert.ok(far.claim(2));
  assert.ok(far.claim(0xffff_fffe));
  assert.equal(far.gapCount, 1024);
  assert.ok(far.neverOpened(0xffff_fffc));
  assert.ok(far.neverOpened(0xffff_fffe - 2 * 1024));
  assert.ok(!far.neverOpened(0xffff_fffe - 2 * 1025), "older than the kept gaps: used");
  assert.ok(!far.claim(4));

  const [a] = memoryDuplexPair();
  for (const maxIdGaps of [-1, 1.5]) {
    assert.throws(
      () => new MuxSession(a, { role: "server", maxIdGaps }),
      isCode("bad-options"),
      `maxIdGaps ${maxIdGaps}`,
    );
  }

  const none = new PeerIds(2, 0);
  assert.ok(none.claim(6));
  assert.equal(none.gapCount, 0);
  assert.ok(!none.claim(4), "with no gaps kept, a late id is refused");
});

Deno.test("mux ids: SYNs out of id order open streams; the session stays up", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "server" });
  const order = [1, 5, 3, 11, 7, 9];
  for (const id of order) await syn(peer, id);
  await sync(peer, 1);
  const accepted: number[] = [];
  for (const _ of order) accepted.push((await session.accept())!.id);
  assert.deepEqual(accepted, order, "accepted in arrival order");
  for (const id of order) {
    await peer.expect(`ACK ${id}`, (f) => f.header.flags === FLAG_ACK && f.header.streamId === id);
  }
  assert.equal(session.streamCount, order.length);
  assert.equal(session.isClosed, false);
  await closeBoth(session, peer);

  // The same from a server peer (even ids) to a client session.
  const c = sessionWithRawPeer({ role: "client" });
  for (const id of [4, 2, 8, 6]) await syn(c.peer, id);
  await sync(c.peer, 2);
  assert.equal(c.session.streamCount, 4);
  await closeBoth(c.session, c.peer);
});

Deno.test("mux ids: a SYN reusing a closed id is refused with RST; a SYN for an open id is a protocol error", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "server" });
  await syn(peer, 3);
  await syn(peer, 1);
  const first = (await session.accept())!;
  assert.equal(first.id, 3);
  first.reset();
  await peer.expect("RST 3", (f) => f.header.flags === FLAG_RST && f.header.streamId === 3);
  await syn(peer, 3); // reuse of a closed id
  const refused = await peer.expect("RST", (f) => (f.header.flags & FLAG_RST) !== 0);
  assert.equal(refused.header.streamId, 3);
  // Its late data is dropped, not a protocol error.
  await peer.send({ type: TYPE_DATA, flags: 0, streamId: 3 }, new Uint8Array(10));
  await sync(peer, 3);
  assert.equal(session.isClosed, false);
  assert.equal(session.streamCount, 1, "only stream 1 is open");
  const second = (await session.accept())!;
  assert.equal(second.id, 1);

  await syn(peer, 1); // stream 1 is open
  const err = await session.closed;
  assert.ok(isCode("duplicate-stream")(err), `closed with ${err}`);
  const ga = await peer.expect("go-away", (f) => f.header.type === TYPE_GO_AWAY);
  assert.equal(ga.header.length, GO_AWAY_PROTOCOL_ERROR);
  await peer.close();
});

Deno.test("mux ids: a frame for an id never opened (above or in a gap) is a protocol error", async () => {
  for (const unopened of [9, 3]) {
    const { session, peer } = sessionWithRawPeer({ role: "server" });
    await syn(peer, 1);
    await syn(peer, 5);
    await peer.send({ type: TYPE_DATA, flags: 0, streamId: unopened }, new Uint8Array(4));
    const err = await session.closed;
    assert.ok(isCode("unknown-stream")(err), `stream ${unopened}: closed with ${err}`);
    const ga = await peer.expect("go-away", (f) => f.header.type === TYPE_GO_AWAY);
    assert.equal(ga.header.length, GO_AWAY_PROTOCOL_ERROR);
    await peer.close();
  }
});

Deno.test("mux ids: beyond maxIdGaps the oldest gaps count as used", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "server", maxIdGaps: 2 });
  await syn(peer, 11); // skips 1, 3, 5, 7, 9: only 7 and 9 are remembered
  await syn(peer, 3);
  const refused = await peer.expect("RST", (f) => (f.header.flags & FLAG_RST) !== 0);
  assert.equal(refused.header.streamId, 3, "a forgotten gap is refused like a used id");
  // A non-SYN frame for a forgotten gap is dropped like a late frame.
  await peer.send({ type: TYPE_DATA, flags: 0, streamId: 5 }, new Uint8Array(8));
  await syn(peer, 9);
  await sync(peer, 4);
  assert.equal(session.isClosed, false);
  assert.equal(session.streamCount, 2, "streams 11 and 9");
  // 7 is still a remembered gap: a frame for it without SYN is a protocol error.
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: 0, streamId: 7, length: 1 });
  assert.ok(isCode("unknown-stream")(await session.closed));
  await peer.close();
});

Deno.test("mux ids: the peer may grant send windows up to 2^31-1", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "client" });
  const s = await session.open();
  const big = 32 * 1024 * 1024; // a hashicorp/yamux MaxStreamWindowSize
  await peer.send({
    type: TYPE_WINDOW_UPDATE,
    flags: FLAG_ACK,
    streamId: s.id,
    length: big - INITIAL_WINDOW,
  });
  await sync(peer, 5);
  assert.equal(s.sendWindow, big);
  await peer.send({
    type: TYPE_WINDOW_UPDATE,
    flags: 0,
    streamId: s.id,
    length: MAX_SEND_WINDOW - big,
  });
  await sync(peer, 6);
  assert.equal(s.sendWindow, MAX_SEND_WINDOW);
  assert.equal(session.isClosed, false);
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: 0, streamId: s.id, length: 1 });
  assert.ok(isCode("window-overflow")(await session.closed), "one more byte is too much");
  await peer.close();

  // A peer's SYN may carry the large window too.
  const srv = sessionWithRawPeer({ role: "server" });
  await syn(srv.peer, 1, big - INITIAL_WINDOW);
  const accepted = (await srv.session.accept())!;
  assert.equal(accepted.sendWindow, big);
  const w = accepted.writable.getWriter();
  // More than the default window, without any window update from the peer.
  const writing = w.write(new Uint8Array(4 * INITIAL_WINDOW));
  let got = 0;
  for (let i = 0; i < 1000 && got < 4 * INITIAL_WINDOW; i++) {
    const f = await srv.peer.expect("data", (x) => x.header.type === TYPE_DATA);
    got += f.header.length;
  }
  assert.equal(got, 4 * INITIAL_WINDOW);
  await writing;
  w.releaseLock();
  await closeBoth(srv.session, srv.peer);
});

Deno.test("mux ids: the open timeout ends at any frame for the stream, not only an ACK", async () => {
  const timeout = 1000;
  const { session, peer } = sessionWithRawPeer({ role: "client", streamOpenTimeoutMs: timeout });
  // Four streams, each answered by one frame without ACK.
  const answered = await Promise.all([0, 1, 2, 3].map(() => session.open()));
  const [byData, byWindow, byFin, byEmptyData] = answered;
  await peer.send({ type: TYPE_DATA, flags: 0, streamId: byData.id }, new Uint8Array([1, 2]));
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: 0, streamId: byWindow.id, length: 100 });
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_FIN, streamId: byFin.id, length: 0 });
  await peer.send({ type: TYPE_DATA, flags: 0, streamId: byEmptyData.id }, new Uint8Array(0));
  await sync(peer, 7);
  // A stream opened after them that the peer ignores: its timeout fires after
  // theirs would have (same duration, armed later).
  const ignored = await session.open();
  await assert.rejects(readAll(ignored.readable), isCode("stream-open-timeout"));
  const { skipped } = await expectCollecting(
    peer,
    "RST of the ignored stream",
    (f) => (f.header.flags & FLAG_RST) !== 0 && f.header.streamId === ignored.id,
  );
  assert.deepEqual(rstIds(skipped), [], "no answered stream was reset");
  assert.equal(session.streamCount, 4);

  // All four still work both ways.
  for (const s of answered) {
    const w = s.writable.getWriter();
    await w.write(new Uint8Array([s.id]));
    await w.close();
    const f = await peer.expect(
      `data on ${s.id}`,
      (x) => x.header.type === TYPE_DATA && x.header.streamId === s.id,
    );
    assert.deepEqual(f.body, new Uint8Array([s.id]));
    if (s !== byFin) {
      await peer.send({ type: TYPE_DATA, flags: FLAG_FIN, streamId: s.id }, new Uint8Array([9]));
    }
  }
  assert.deepEqual(await readAll(byData.readable), new Uint8Array([1, 2, 9]));
  assert.deepEqual(await readAll(byWindow.readable), new Uint8Array([9]));
  assert.deepEqual(await readAll(byFin.readable), new Uint8Array(0));
  assert.deepEqual(await readAll(byEmptyData.readable), new Uint8Array([9]));
  assert.equal(session.streamCount, 0, "all four finished cleanly");
  await closeBoth(session, peer);
});
