import assert from "node:assert/strict";
import {
  encodeFrame,
  FLAG_ACK,
  FLAG_FIN,
  FLAG_RST,
  FLAG_SYN,
  type Frame,
  GO_AWAY_PROTOCOL_ERROR,
  INITIAL_WINDOW,
  memoryDuplexPair,
  MuxError,
  MuxSession,
  type MuxStream,
  TYPE_DATA,
  TYPE_GO_AWAY,
  TYPE_PING,
  TYPE_WINDOW_UPDATE,
} from "../../core/mux/mod.ts";
import {
  RawPeer,
  readAll,
  seededBytes,
  sessionPair,
  sessionWithRawPeer,
  sleep,
} from "./mux_helpers.ts";

const isCode = (code: string) => (e: unknown) => e instanceof MuxError && e.code === code;

async function echoServer(server: MuxSession): Promise<void> {
  const pipes: Promise<void>[] = [];
  for await (const s of server) pipes.push(s.readable.pipeTo(s.writable).catch(() => {}));
  await Promise.all(pipes);
}

async function writeAllAndClose(
  stream: MuxStream,
  data: Uint8Array,
  chunk = 50_000,
): Promise<void> {
  const w = stream.writable.getWriter();
  for (let off = 0; off < data.length; off += chunk) await w.write(data.subarray(off, off + chunk));
  await w.close();
}

Deno.test("mux session: open/accept/echo of several streams over a memory pipe", async () => {
  const { client, server } = sessionPair();
  const served = echoServer(server);
  const payloads = [0, 1, 2, 3, 4].map((i) => seededBytes(i + 1, 300_000 + i * 12345));
  const streams = await Promise.all(payloads.map(() => client.open()));
  assert.deepEqual(streams.map((s) => s.id), [1, 3, 5, 7, 9]);
  const echoed = await Promise.all(streams.map(async (s, i) => {
    const [, back] = await Promise.all([writeAllAndClose(s, payloads[i]), readAll(s.readable)]);
    return back;
  }));
  echoed.forEach((b, i) => assert.deepEqual(b, payloads[i]));
  await client.close();
  assert.equal(await client.closed, null);
  assert.ok(isCode("remote-closed")(await server.closed));
  await served;
});

Deno.test("mux session: the server opens even ids and the client accepts them", async () => {
  const { client, server } = sessionPair();
  const served = echoServer(client);
  const s = await server.open();
  assert.equal(s.id, 2);
  assert.equal((await server.open()).id, 4);
  const data = seededBytes(9, 1000);
  const [, back] = await Promise.all([writeAllAndClose(s, data), readAll(s.readable)]);
  assert.deepEqual(back, data);
  await server.close();
  await client.closed;
  await served;
});

Deno.test("mux session: open/accept/echo over loopback TCP", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const dialed = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const serverConn = await accepted;
  listener.close();
  const client = new MuxSession(dialed, { role: "client" });
  const server = new MuxSession(serverConn, { role: "server" });
  const served = echoServer(server);
  const payloads = [1, 2, 3].map((i) => seededBytes(i, 1024 * 1024 + i));
  const streams = await Promise.all(payloads.map(() => client.open()));
  const echoed = await Promise.all(streams.map(async (s, i) => {
    const [, back] = await Promise.all([
      writeAllAndClose(s, payloads[i], 200_000),
      readAll(s.readable),
    ]);
    return back;
  }));
  echoed.forEach((b, i) => assert.deepEqual(b, payloads[i]));
  assert.ok((await client.ping()) >= 0);
  await client.close();
  await server.closed;
  await served;
});

Deno.test("mux session: half-close — the reader still works after the writer sent FIN", async () => {
  const { client, server } = sessionPair();
  const stream = await client.open();
  const request = seededBytes(5, 70_000);
  await writeAllAndClose(stream, request);
  const peer = (await server.accept())!;
  const got = await readAll(peer.readable); // ends because of the FIN
  assert.deepEqual(got, request);
  const reply = seededBytes(6, 90_000);
  await writeAllAndClose(peer, reply);
  assert.deepEqual(await readAll(stream.readable), reply);
  assert.equal(client.streamCount, 0, "stream forgotten after both FINs");
  await client.close();
  await server.closed;
});

Deno.test("mux session: reset() and writable.abort() reset the stream on both sides", async () => {
  const { client, server } = sessionPair();
  const a = await client.open();
  const w = a.writable.getWriter();
  await w.write(new Uint8Array([1, 2, 3]));
  const b = (await server.accept())!;
  const br = b.readable.getReader();
  assert.deepEqual((await br.read()).value, new Uint8Array([1, 2, 3]));
  a.reset();
  await assert.rejects(br.read(), isCode("stream-reset"));
  await assert.rejects(b.writable.getWriter().write(new Uint8Array(1)), isCode("stream-reset"));
  await assert.rejects(w.write(new Uint8Array(1)), isCode("stream-reset-local"));
  a.reset(); // idempotent

  const c = await client.open();
  const cw = c.writable.getWriter();
  await cw.write(new Uint8Array([9]));
  const d = (await server.accept())!;
  await cw.abort(new Error("client gave up"));
  await assert.rejects(readAll(d.readable), isCode("stream-reset"));
  assert.ok((await client.ping()) >= 0, "session survives stream resets");
  assert.equal(client.streamCount, 0);
  await client.close();
  await server.closed;
});

Deno.test("mux session: a reset of streams nobody awaits leaves no unhandled rejection", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: PromiseRejectionEvent) => {
    unhandled.push(e.reason);
    e.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  try {
    const { client, server } = sessionPair();
    // Untouched; writer and reader taken but idle; readable cancelled; a
    // write waiting for window (the caller's own promise is handled).
    const untouched = await client.open();
    const idle = await client.open();
    const idleWriter = idle.writable.getWriter();
    const idleReader = idle.readable.getReader();
    const cancelled = await client.open();
    await cancelled.readable.cancel();
    const blocked = await client.open();
    const big = blocked.writable.getWriter().write(new Uint8Array(2 * INITIAL_WINDOW));
    big.catch(() => {});
    const peers: MuxStream[] = [];
    for (let i = 0; i < 4; i++) peers.push((await server.accept())!);
    for (const p of peers) p.reset();
    await client.ping(); // every RST was handled before this answer
    assert.equal(client.streamCount, 0);
    // A local reset and a session end, also with nobody waiting.
    const local = await client.open();
    local.writable.getWriter();
    local.reset();
    await client.open();
    await client.close();
    await server.closed;
    // Unhandled rejections are reported after a macrotask turn.
    await sleep(0);
    await sleep(0);
    assert.deepEqual(unhandled, []);
    await assert.rejects(big, isCode("stream-reset"));
    await assert.rejects(idleWriter.closed, isCode("stream-reset"));
    await assert.rejects(idleReader.read(), isCode("stream-reset"));
    await assert.rejects(untouched.readable.getReader().read(), isCode("stream-reset"));
  } finally {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
});

Deno.test("mux session: go-away stops new streams, existing ones go on", async () => {
  const { client, server } = sessionPair();
  const served = echoServer(server);
  const before = await client.open();
  await client.ping(); // the server has seen the SYN before it goes away
  let told = false;
  void client.peerGoAway.then(() => (told = true));
  await client.ping();
  assert.equal(told, false, "peerGoAway waits for the peer's go-away");
  server.goAway();
  await client.ping(); // frames are in order: the go-away arrived before the pong
  await client.peerGoAway;
  await assert.rejects(client.open(), isCode("go-away"));
  await assert.rejects(
    server.open(),
    isCode("go-away"),
    "the sender of go-away may not open either",
  );
  const data = seededBytes(3, 100_000);
  const [, back] = await Promise.all([writeAllAndClose(before, data), readAll(before.readable)]);
  assert.deepEqual(back, data);
  await client.close();
  await server.closed;
  await served;
});

Deno.test("mux session: a SYN after our go-away is refused with RST", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "server" });
  session.goAway();
  await peer.expect("go-away", (f) => f.header.type === TYPE_GO_AWAY && f.header.length === 0);
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: 1, length: 0 });
  const rst = await peer.expect("RST", (f) => f.header.type === TYPE_WINDOW_UPDATE);
  assert.equal(rst.header.flags, FLAG_RST);
  assert.equal(rst.header.streamId, 1);
  assert.equal(session.streamCount, 0);
  await session.close();
  await peer.close();
});

Deno.test("mux session: stream limit — extra SYNs get RST, open() beyond the limit fails", async () => {
  const { client, server } = sessionPair({ maxStreams: 2 });
  const s1 = await client.open();
  const s2 = await client.open();
  await assert.rejects(client.open(), isCode("too-many-streams"));
  s1.reset();
  s2.reset();

  const { session, peer } = sessionWithRawPeer({ role: "server", maxStreams: 2 });
  for (const id of [1, 3, 5]) {
    await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: id, length: 0 });
  }
  const rst = await peer.expect("RST", (f) => (f.header.flags & FLAG_RST) !== 0);
  assert.equal(rst.header.streamId, 5);
  assert.equal(session.streamCount, 2);
  // Late data for the refused stream is dropped, not a protocol error.
  await peer.send({ type: TYPE_DATA, flags: 0, streamId: 5 }, new Uint8Array(10));
  await peer.send({ type: TYPE_PING, flags: FLAG_SYN, streamId: 0, length: 77 });
  const pong = await peer.expect("pong", (f) => f.header.type === TYPE_PING);
  assert.equal(pong.header.flags, FLAG_ACK);
  assert.equal(pong.header.length, 77);
  assert.equal(session.isClosed, false);
  await Promise.all([client.close(), server.closed, session.close(), peer.close()]);
});

Deno.test("mux session: accept backlog — SYNs beyond the backlog get RST", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "server", acceptBacklog: 2 });
  for (const id of [1, 3, 5]) {
    await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: id, length: 0 });
  }
  const rst = await peer.expect("RST", (f) => (f.header.flags & FLAG_RST) !== 0);
  assert.equal(rst.header.streamId, 5);
  const first = (await session.accept())!;
  assert.equal(first.id, 1);
  const ack = await peer.expect("ACK", (f) => f.header.flags === FLAG_ACK);
  assert.equal(ack.header.streamId, 1, "ACK is sent when the application accepts");
  await session.close();
  await peer.close();
});

/** Drives a raw peer into a protocol error and checks both ends. */
async function expectProtocolError(
  code: string,
  role: "client" | "server",
  script: (peer: RawPeer, session: MuxSession) => Promise<void>,
  opts: { goAwayCode?: number; maxFrameLength?: number } = {},
): Promise<void> {
  const { session, peer } = sessionWithRawPeer({ role, maxFrameLength: opts.maxFrameLength });
  await script(peer, session).catch(() => {/* the session may close the pipe first */});
  const err = await session.closed;
  assert.ok(err instanceof MuxError, `${code}: session closed with a MuxError`);
  assert.equal(err.code, code);
  if (opts.goAwayCode !== undefined) {
    const ga: Frame = await peer.expect("go-away", (f) => f.header.type === TYPE_GO_AWAY);
    assert.equal(ga.header.length, opts.goAwayCode, `${code}: go-away code`);
  }
  await peer.close();
}

Deno.test("mux session: malformed and out-of-protocol frames close the session with a typed error", async () => {
  const P = GO_AWAY_PROTOCOL_ERROR;
  const syn = (peer: RawPeer, id: number) =>
    peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: id, length: 0 });
  await expectProtocolError(
    "bad-version",
    "server",
    (p) => p.sendBytes(new Uint8Array([1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])),
    { goAwayCode: P },
  );
  await expectProtocolError(
    "bad-type",
    "server",
    (p) => p.sendBytes(new Uint8Array([0, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])),
    { goAwayCode: P },
  );
  await expectProtocolError(
    "bad-flags",
    "server",
    (p) => p.send({ type: TYPE_WINDOW_UPDATE, flags: 0x20, streamId: 1, length: 0 }),
    { goAwayCode: P },
  );
  await expectProtocolError(
    "bad-flags",
    "server",
    (p) => p.send({ type: TYPE_PING, flags: FLAG_FIN, streamId: 0, length: 0 }),
    { goAwayCode: P },
  );
  await expectProtocolError(
    "bad-stream-id",
    "server",
    (p) => p.send({ type: TYPE_PING, flags: FLAG_SYN, streamId: 3, length: 0 }),
    { goAwayCode: P },
  );
  await expectProtocolError(
    "bad-stream-id",
    "server",
    (p) => p.send({ type: TYPE_DATA, flags: 0, streamId: 0 }, new Uint8Array(1)),
    { goAwayCode: P },
  );
  await expectProtocolError(
    "unknown-stream",
    "server",
    (p) => p.send({ type: TYPE_DATA, flags: 0, streamId: 5 }, new Uint8Array(4)),
    { goAwayCode: P },
  );
  await expectProtocolError(
    "unknown-stream",
    "client",
    (p) => p.send({ type: TYPE_WINDOW_UPDATE, flags: 0, streamId: 7, length: 1 }),
    { goAwayCode: P },
  );
  await expectProtocolError("wrong-parity", "server", (p) => syn(p, 2), { goAwayCode: P });
  await expectProtocolError("wrong-parity", "client", (p) => syn(p, 1), { goAwayCode: P });
  await expectProtocolError("duplicate-stream", "server", async (p) => {
    await syn(p, 1);
    await syn(p, 1);
  }, { goAwayCode: P });
  await expectProtocolError("window-exceeded", "server", async (p) => {
    await syn(p, 1);
    await p.send({ type: TYPE_DATA, flags: 0, streamId: 1 }, new Uint8Array(INITIAL_WINDOW));
    await p.send({ type: TYPE_DATA, flags: 0, streamId: 1 }, new Uint8Array(1));
  }, { goAwayCode: P });
  await expectProtocolError("frame-too-large", "server", (p) =>
    // Only the header is sent: the length alone must trigger the error.
    p.sendBytes(new Uint8Array([0, 0, 0, FLAG_SYN, 0, 0, 0, 1, 0, 0, 0x10, 0])), {
    goAwayCode: P,
    maxFrameLength: 4000,
  });
  await expectProtocolError("window-overflow", "server", async (p) => {
    await syn(p, 1);
    await p.send({ type: TYPE_WINDOW_UPDATE, flags: 0, streamId: 1, length: 0xffff_0000 });
  }, { goAwayCode: P });
  await expectProtocolError("data-after-fin", "server", async (p) => {
    await p.send({ type: TYPE_DATA, flags: FLAG_SYN | FLAG_FIN, streamId: 1 }, new Uint8Array(3));
    await p.send({ type: TYPE_DATA, flags: 0, streamId: 1 }, new Uint8Array(3));
  }, { goAwayCode: P });
  await expectProtocolError(
    "bad-go-away-code",
    "server",
    (p) => p.send({ type: TYPE_GO_AWAY, flags: 0, streamId: 0, length: 7 }),
    { goAwayCode: P },
  );
  await expectProtocolError("truncated-frame", "server", async (p) => {
    await p.sendBytes(new Uint8Array([0, 0, 0, FLAG_SYN, 0, 0, 0, 1, 0, 0, 0, 100, 1, 2]));
    await p.close();
  });
  await expectProtocolError(
    "remote-go-away-protocol-error",
    "server",
    (p) => p.send({ type: TYPE_GO_AWAY, flags: 0, streamId: 0, length: 1 }),
  );
  await expectProtocolError(
    "remote-go-away-internal-error",
    "client",
    (p) => p.send({ type: TYPE_GO_AWAY, flags: 0, streamId: 0, length: 2 }),
  );
});

Deno.test("mux session: a protocol error errors open streams with the same typed error", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "server" });
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: 1, length: 0 });
  const s = (await session.accept())!;
  const reading = readAll(s.readable);
  await peer.sendBytes(new Uint8Array([7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  await assert.rejects(reading, isCode("bad-version"));
  await assert.rejects(session.open(), isCode("bad-version"));
  assert.equal(await session.accept(), null);
  await peer.close();
});

Deno.test("mux session: late frames for a stream that already ended are ignored", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "client" });
  const s = await session.open();
  await peer.expect("SYN", (f) => f.header.flags === FLAG_SYN && f.header.streamId === s.id);
  s.reset();
  await peer.expect("RST", (f) => f.header.flags === FLAG_RST);
  await peer.send({ type: TYPE_DATA, flags: FLAG_ACK, streamId: s.id }, new Uint8Array(100));
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: 0, streamId: s.id, length: 1000 });
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_RST, streamId: s.id, length: 0 });
  assert.ok((await pingThroughRawPeer(session, peer)) >= 0);
  assert.equal(session.isClosed, false);
  await session.close();
  await peer.close();
});

/** ping() against a raw peer that answers exactly one ping. */
async function pingThroughRawPeer(session: MuxSession, peer: RawPeer): Promise<number> {
  const rtt = session.ping();
  const p = await peer.expect(
    "ping",
    (f) => f.header.type === TYPE_PING && f.header.flags === FLAG_SYN,
  );
  await peer.send({ type: TYPE_PING, flags: FLAG_ACK, streamId: 0, length: p.header.length });
  return rtt;
}

Deno.test("mux session: keepalive closes the session when pings go unanswered", async () => {
  const [a, b] = memoryDuplexPair();
  const session = new MuxSession(a, { role: "client", keepAliveIntervalMs: 30, pingTimeoutMs: 60 });
  const peer = new RawPeer(b);
  const started = performance.now();
  const err = await session.closed;
  assert.ok(isCode("keepalive-timeout")(err), `closed with ${err}`);
  const took = performance.now() - started;
  assert.ok(took >= 80 && took < 2000, `keepalive fired after ${took} ms`);
  await peer.close();
});

Deno.test("mux session: keepalive keeps an answering session open", async () => {
  const { client, server } = sessionPair({ keepAliveIntervalMs: 20, pingTimeoutMs: 200 });
  await sleep(150);
  assert.equal(client.isClosed, false);
  assert.equal(server.isClosed, false);
  await client.close();
  await server.closed;
});

Deno.test("mux session: ping() times out on a silent peer without closing the session", async () => {
  const [a, b] = memoryDuplexPair();
  const session = new MuxSession(a, { role: "server", keepAliveIntervalMs: 0, pingTimeoutMs: 50 });
  const peer = new RawPeer(b);
  await assert.rejects(session.ping(), isCode("ping-timeout"));
  assert.equal(session.isClosed, false);
  // A late answer to the timed-out ping is ignored.
  const f = await peer.expect("ping", (x) => x.header.type === TYPE_PING);
  await peer.send({ type: TYPE_PING, flags: FLAG_ACK, streamId: 0, length: f.header.length });
  assert.ok((await pingThroughRawPeer(session, peer)) >= 0);
  await session.close();
  await peer.close();
});

Deno.test("mux session: a transport that accepts no bytes ends the session after the write timeout", async () => {
  const [a, b] = memoryDuplexPair(1024);
  const session = new MuxSession(a, {
    role: "client",
    keepAliveIntervalMs: 0,
    writeTimeoutMs: 100,
  });
  const s = await session.open();
  const writing = assert.rejects(
    s.writable.getWriter().write(new Uint8Array(INITIAL_WINDOW)),
    isCode("write-timeout"),
  );
  const err = await session.closed; // b is never read
  assert.ok(isCode("write-timeout")(err), `closed with ${err}`);
  await writing;
  await b.readable.cancel();
  await b.writable.abort();
});

Deno.test("mux session: a stream the peer never acknowledges is reset after the open timeout", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "client", streamOpenTimeoutMs: 50 });
  const s = await session.open();
  await assert.rejects(readAll(s.readable), isCode("stream-open-timeout"));
  await peer.expect("RST", (f) => f.header.flags === FLAG_RST && f.header.streamId === s.id);
  assert.equal(session.isClosed, false);
  const acked = await session.open();
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_ACK, streamId: acked.id, length: 0 });
  await sleep(120);
  assert.equal(session.streamCount, 1, "an acknowledged stream has no open timeout");
  await session.close();
  await peer.close();
});

Deno.test("mux session: close() ends streams, accept() and open() with typed results", async () => {
  const { client, server } = sessionPair();
  const s = await client.open();
  const waiting = server.accept();
  const pendingAccept = (await waiting)!;
  const nextAccept = server.accept();
  const reading = readAll(s.readable);
  await client.close();
  assert.equal(await client.closed, null);
  await assert.rejects(reading, isCode("session-closed"));
  await assert.rejects(client.open(), isCode("session-closed"));
  await assert.rejects(client.ping(), isCode("session-closed"));
  assert.equal(await client.accept(), null);
  assert.ok(isCode("remote-closed")(await server.closed));
  assert.equal(await nextAccept, null);
  await assert.rejects(readAll(pendingAccept.readable), isCode("remote-closed"));
  await client.close(); // idempotent
});

Deno.test("mux session: data and FIN received before the peer hangs up stay readable", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "server" });
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: 1, length: 0 });
  const accepted = (await session.accept())!;
  const body = seededBytes(4, 5000);
  await peer.send({ type: TYPE_DATA, flags: 0, streamId: 1 }, body);
  await peer.send({ type: TYPE_DATA, flags: FLAG_FIN, streamId: 1 }, new Uint8Array(0));
  await peer.send({ type: TYPE_DATA, flags: FLAG_SYN, streamId: 3 }, body.subarray(0, 10));
  await peer.close();
  assert.ok(isCode("remote-closed")(await session.closed));
  assert.deepEqual(await readAll(accepted.readable), body, "finished stream ends cleanly");
  assert.equal(await session.accept(), null, "streams not yet accepted are dropped");
});

Deno.test("mux session: buffered data is delivered before the session error", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "server" });
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: 1, length: 0 });
  const s = (await session.accept())!;
  await peer.send({ type: TYPE_DATA, flags: 0, streamId: 1 }, new Uint8Array([1, 2, 3]));
  await peer.send({ type: TYPE_DATA, flags: 0, streamId: 1 }, new Uint8Array([4, 5]));
  await peer.close();
  await session.closed;
  const r = s.readable.getReader();
  const got: number[] = [];
  await assert.rejects(async () => {
    for (let i = 0; i < 10; i++) {
      const { value, done } = await r.read();
      if (done) break;
      got.push(...value);
    }
  }, isCode("remote-closed"));
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
});

Deno.test("mux session: cancelling the readable discards data but keeps the peer's writer moving", async () => {
  const { client, server } = sessionPair();
  const s = await client.open();
  const writing = writeAllAndClose(s, seededBytes(2, 3 * INITIAL_WINDOW));
  const peer = (await server.accept())!;
  await peer.readable.cancel();
  await writing; // would stall forever without window updates
  await writeAllAndClose(peer, new Uint8Array([42]));
  assert.deepEqual(await readAll(s.readable), new Uint8Array([42]));
  await client.close();
  await server.closed;
});

Deno.test("mux session: larger receive windows are announced and honoured", async () => {
  const windowSize = 4 * INITIAL_WINDOW;
  const { client, server } = sessionPair({ windowSize });
  const s = await client.open();
  const peer = server.accept();
  const a = (await peer)!;
  await client.ping(); // ACK with the extra credit has arrived
  assert.equal(s.sendWindow, windowSize);
  const w = s.writable.getWriter();
  await w.write(new Uint8Array(windowSize)); // completes without any read
  await client.ping(); // the data before the ping has been taken in
  assert.equal(a.bufferedBytes, windowSize);
  assert.equal(s.sendWindow, 0);
  await client.close();
  await server.closed;
});

Deno.test("mux session: bad options and bad chunks give typed errors", async () => {
  const [a] = memoryDuplexPair();
  const bad = [
    { role: "peer" },
    { role: "client", windowSize: 1000 },
    { role: "client", maxStreams: 0 },
    { role: "client", maxWindowSize: 2 ** 33 },
    { role: "client", pingTimeoutMs: -1 },
    { role: "client", maxSendFrame: 1.5 },
  ];
  for (const o of bad) {
    assert.throws(() => new MuxSession(a, o as never), isCode("bad-options"), JSON.stringify(o));
  }
  const { client, server } = sessionPair();
  const s = await client.open();
  await assert.rejects(s.writable.getWriter().write("text" as never), isCode("bad-chunk"));
  await client.close();
  await server.closed;
});

Deno.test("mux session: a failing or unusable transport gives typed errors", async () => {
  const broken = new MuxSession({
    readable: new ReadableStream({ start: (c) => c.error(new Error("socket reset")) }),
    writable: new WritableStream(),
  }, { role: "client", keepAliveIntervalMs: 0 });
  assert.ok(isCode("connection-error")(await broken.closed));

  const [a, b] = memoryDuplexPair();
  const failingWrites = new MuxSession({
    readable: a.readable,
    writable: new WritableStream({
      write() {
        throw new Error("EPIPE");
      },
    }),
  }, { role: "client", keepAliveIntervalMs: 0 });
  await assert.rejects(failingWrites.ping(), isCode("connection-error"));
  assert.ok(isCode("connection-error")(await failingWrites.closed));
  await assert.rejects(
    b.writable.getWriter().write(new Uint8Array(1)),
    "the session let go of its input",
  );

  const [c] = memoryDuplexPair();
  c.readable.getReader();
  assert.throws(() => new MuxSession(c, { role: "client" }), isCode("bad-transport"));
});

Deno.test("mux session: one-byte frames are merged, not queued one object per byte", async () => {
  const { session, peer } = sessionWithRawPeer({ role: "server" });
  await peer.send({ type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: 1, length: 0 });
  const s = (await session.accept())!;
  const frames = new Uint8Array(13 * 65536);
  for (let i = 0; i < 65536; i++) {
    frames.set(
      encodeFrame({ type: TYPE_DATA, flags: 0, streamId: 1 }, new Uint8Array([i & 0xff])),
      i * 13,
    );
  }
  await peer.sendBytes(frames);
  await pingThroughRawPeer(session, peer); // all data frames were taken in
  assert.equal(s.bufferedBytes, 65536);
  const r = s.readable.getReader();
  let chunks = 0;
  let bytes = 0;
  while (bytes < 65536) {
    const { value } = await r.read();
    assert.ok(value!.every((b, j) => b === ((bytes + j) & 0xff)), "bytes in order");
    bytes += value!.length;
    chunks++;
  }
  assert.ok(chunks <= 8, `65536 one-byte frames arrived as ${chunks} chunks`);
  await session.close();
  await peer.close();
});
