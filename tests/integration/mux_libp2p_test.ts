/**
 * core/mux against npm:@libp2p/yamux (the same hashicorp wire format) over
 * real loopback TCP, both ways: several streams echoing a few MiB each,
 * half-close, ping in both directions, reset and go-away.
 */
import assert from "node:assert/strict";
import { MuxError, MuxSession, type MuxStream } from "../../core/mux/mod.ts";
import {
  libp2pMuxer,
  libp2pReadAll,
  libp2pWrite,
  type LibYamuxMuxer,
  type LibYamuxStream,
} from "../support/libp2p_yamux.ts";
import { seededBytes } from "../unit/mux_helpers.ts";

const STREAMS = 4;
const BYTES_PER_STREAM = 2 * 1024 * 1024;

async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const accepted = listener.accept();
    const dialed = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    return [dialed, await accepted];
  } finally {
    listener.close();
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed by the session
  }
}

function assertSameBytes(got: Uint8Array[], want: Uint8Array): void {
  const total = got.reduce((n, c) => n + c.length, 0);
  assert.equal(total, want.length);
  let off = 0;
  for (const c of got) {
    assert.ok(
      c.every((b, i) => b === want[off + i]),
      `echoed bytes differ near offset ${off}`,
    );
    off += c.length;
  }
}

/** libp2p side: echo every stream back, then half-close. */
function libp2pEchoServer(muxer: LibYamuxMuxer, done: Promise<unknown>[]): void {
  muxer.addEventListener("stream", (evt) => {
    const stream: LibYamuxStream = evt.detail;
    done.push(
      (async () => {
        const parts: Uint8Array[] = [];
        await libp2pReadAll(stream, (b) => parts.push(b.slice()));
        for (const p of parts) await libp2pWrite(stream, p);
        await stream.close();
      })().then(() => "echoed", (e) => `failed: ${e}`),
    );
  });
}

/** Our side: write everything, half-close, then read the echo. */
async function echoThroughOurStream(stream: MuxStream, data: Uint8Array): Promise<Uint8Array[]> {
  const writer = stream.writable.getWriter();
  for (let off = 0; off < data.length; off += 100_000) {
    await writer.write(data.subarray(off, Math.min(data.length, off + 100_000)));
  }
  await writer.close(); // FIN: the echo server starts answering only after it
  const got: Uint8Array[] = [];
  for await (const chunk of stream.readable) got.push(chunk);
  return got;
}

Deno.test("mux interop: our client, @libp2p/yamux server over TCP", async () => {
  const [clientConn, serverConn] = await tcpPair();
  const theirs = libp2pMuxer(serverConn, "inbound");
  const echoes: Promise<unknown>[] = [];
  libp2pEchoServer(theirs, echoes);
  const ours = new MuxSession(clientConn, { role: "client" });
  try {
    const rtt = await ours.ping();
    assert.ok(rtt >= 0 && rtt < 5000, `ping answered by @libp2p/yamux (rtt ${rtt} ms)`);
    const theirRtt = await theirs.ping();
    assert.ok(theirRtt >= 0, "our session answers @libp2p/yamux pings");

    const streams = await Promise.all(Array.from({ length: STREAMS }, () => ours.open()));
    assert.deepEqual(streams.map((s) => s.id), [1, 3, 5, 7], "client ids are odd and increasing");
    const payloads = streams.map((_, i) => seededBytes(i + 1, BYTES_PER_STREAM + i * 1000));
    const results = await Promise.all(streams.map((s, i) => echoThroughOurStream(s, payloads[i])));
    results.forEach((got, i) => assertSameBytes(got, payloads[i]));
    assert.deepEqual(await Promise.all(echoes), Array(STREAMS).fill("echoed"));

    // Their reset reaches our reader as a typed error.
    const victim = await ours.open();
    const seen = new Promise<LibYamuxStream>((resolve) =>
      theirs.addEventListener("stream", (evt) => resolve(evt.detail), { once: true })
    );
    const w = victim.writable.getWriter();
    await w.write(new Uint8Array([1, 2, 3]));
    (await seen).abort(new Error("test reset"));
    await assert.rejects(
      victim.readable.getReader().read(),
      (e) => e instanceof MuxError && e.code === "stream-reset",
    );
    w.releaseLock();

    // Their go-away: we may not open new streams afterwards.
    await theirs.close();
    let refusal: unknown = null;
    for (let i = 0; i < 100 && refusal === null; i++) {
      await new Promise((r) => setTimeout(r, 10));
      refusal = await ours.open().then((s) => {
        s.reset();
        return null;
      }, (e) => e);
    }
    assert.ok(
      refusal instanceof MuxError && refusal.code === "go-away",
      `open after their go-away: ${refusal}`,
    );
  } finally {
    await ours.close();
    closeQuietly(serverConn);
    closeQuietly(clientConn);
  }
});

Deno.test("mux interop: @libp2p/yamux client, our server over TCP", async () => {
  const [clientConn, serverConn] = await tcpPair();
  const ours = new MuxSession(serverConn, { role: "server" });
  const theirs = libp2pMuxer(clientConn, "outbound");
  // Our echo server: pipe each stream back to itself (closing the writable
  // when the peer half-closes).
  const served = (async () => {
    const pipes: Promise<void>[] = [];
    for await (const stream of ours) {
      pipes.push(stream.readable.pipeTo(stream.writable).catch(() => {}));
    }
    await Promise.all(pipes);
  })();
  try {
    const theirRtt = await theirs.ping();
    assert.ok(theirRtt >= 0, "our session answers @libp2p/yamux pings");
    assert.ok((await ours.ping()) >= 0, "@libp2p/yamux answers our pings");

    const payloads = Array.from(
      { length: STREAMS },
      (_, i) => seededBytes(100 + i, BYTES_PER_STREAM - i * 777),
    );
    await Promise.all(payloads.map(async (data) => {
      const stream = await theirs.createStream();
      const got: Uint8Array[] = [];
      const reading = libp2pReadAll(stream, (b) => got.push(b.slice()));
      await libp2pWrite(stream, data);
      await stream.close(); // half-close; our pipeTo answers with FIN after the echo
      await reading;
      assertSameBytes(got, data);
    }));

    // Our go-away: @libp2p/yamux treats a normal go-away as the end of the
    // session and refuses to open more streams.
    ours.goAway();
    await ours.ping(); // the go-away frame went out before this ping's answer
    await assert.rejects(theirs.createStream(), (e) => (e as Error).name === "MuxerClosedError");
  } finally {
    await theirs.close();
    await ours.close();
    await served;
    closeQuietly(clientConn);
    closeQuietly(serverConn);
  }
});
