import assert from "node:assert/strict";
import { INITIAL_WINDOW } from "../../core/mux/mod.ts";
import { sessionPair, sleep } from "./mux_helpers.ts";

const TOTAL = 64 * 1024 * 1024;
const CHUNK = 16 * 1024;

Deno.test("mux backpressure: 64 MiB at a reader that reads nothing stalls with bounded memory, then resumes", async () => {
  const { client, server } = sessionPair({}, 64 * 1024);
  const stream = await client.open();
  const writer = stream.writable.getWriter();
  const chunk = new Uint8Array(CHUNK);
  let written = 0;
  const writing = (async () => {
    for (let i = 0; i < TOTAL / CHUNK; i++) {
      chunk.fill(i & 0xff); // the content tells which chunk a byte came from
      await writer.write(chunk);
      written += CHUNK;
    }
    await writer.close();
  })();
  const peer = (await server.accept())!;
  const heapBefore = Deno.memoryUsage().heapUsed;

  // Wait until the writer stops making progress.
  let last = -1;
  let still = 0;
  for (let i = 0; i < 500 && still < 5; i++) {
    await sleep(10);
    still = written === last ? still + 1 : 0;
    last = written;
  }
  assert.equal(still, 5, "the writer stalled");
  assert.ok(written >= INITIAL_WINDOW - CHUNK, `writer used the window (${written} bytes)`);
  assert.ok(written <= INITIAL_WINDOW + CHUNK, `writer stopped at the window (${written} bytes)`);
  assert.ok(peer.bufferedBytes <= INITIAL_WINDOW, `receiver holds ${peer.bufferedBytes} bytes`);
  assert.ok(stream.sendWindow < CHUNK, "send window exhausted");
  const heapGrowth = Deno.memoryUsage().heapUsed - heapBefore;
  assert.ok(heapGrowth < 16 * 1024 * 1024, `heap grew by ${heapGrowth} bytes while stalled`);

  // Now read: everything arrives in order and the writer finishes.
  let received = 0;
  let maxBuffered = 0;
  for await (const piece of peer.readable) {
    maxBuffered = Math.max(maxBuffered, peer.bufferedBytes);
    for (let j = 0; j < piece.length; j += 4096) {
      const expected = Math.floor((received + j) / CHUNK) & 0xff;
      if (piece[j] !== expected) {
        assert.fail(`byte ${received + j} is ${piece[j]}, expected ${expected}`);
      }
    }
    received += piece.length;
  }
  await writing;
  assert.equal(received, TOTAL);
  assert.ok(maxBuffered <= INITIAL_WINDOW, `never more than a window buffered (${maxBuffered})`);
  await client.close();
  await server.closed;
});

Deno.test("mux backpressure: a slow reader bounds what the receiver buffers", async () => {
  const { client, server } = sessionPair({}, 16 * 1024);
  const stream = await client.open();
  const writer = stream.writable.getWriter();
  const writing = (async () => {
    for (let i = 0; i < 64; i++) await writer.write(new Uint8Array(64 * 1024));
    await writer.close();
  })();
  const peer = (await server.accept())!;
  const reader = peer.readable.getReader();
  let received = 0;
  let maxBuffered = 0;
  for (let i = 0; i < 100_000; i++) {
    const { value, done } = await reader.read();
    if (done) break;
    received += value.length;
    maxBuffered = Math.max(maxBuffered, peer.bufferedBytes);
    if (i % 8 === 0) await sleep(1);
  }
  await writing;
  assert.equal(received, 64 * 64 * 1024);
  assert.ok(maxBuffered <= INITIAL_WINDOW, `buffered at most a window (${maxBuffered})`);
  await client.close();
  await server.closed;
});
