/**
 * nodeToWeb: the WHATWG view of a Node socket that core/mux runs on. Closing
 * its writable after the socket ended on its own (the peer's FIN on a socket
 * without half-open) must not crash the process when the socket finishes
 * later; Deno's Duplex.toWeb did (an uncaught TypeError in its adapter).
 */
import assert from "node:assert/strict";
import { Duplex } from "node:stream";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import { WAIT_MS, within } from "../support/wait.ts";

/** A duplex that records what is written and finishes only when `finish()` is called. */
function socketLike() {
  const written: number[] = [];
  let finishNow: (() => void) | undefined;
  const d = new Duplex({
    read() {},
    write(chunk: Uint8Array, _enc, cb) {
      written.push(...chunk);
      cb();
    },
    final(cb) {
      finishNow = () => cb();
    },
  });
  return {
    d,
    written,
    finish: () => finishNow?.(),
    get finalCalled() {
      return finishNow !== undefined;
    },
  };
}

Deno.test("nodeToWeb: closing after the socket ended itself, then finishing, is no crash", async () => {
  const s = socketLike();
  const web = nodeToWeb(s.d);
  const reader = web.readable.getReader();
  const writer = web.writable.getWriter();
  await within(writer.write(new Uint8Array([1, 2])), WAIT_MS, "a write");
  // The peer's FIN: the readable ends and the socket ends its own side.
  s.d.push(null);
  s.d.end();
  assert.equal((await within(reader.read(), WAIT_MS, "the end of the readable")).done, true);
  assert.equal(s.d.writableEnded, true);
  assert.equal(s.d.writableFinished, false);
  await within(writer.close(), WAIT_MS, "close() of an already ended socket");
  // The socket finishes after the close: before the fix, an uncaught TypeError here.
  s.finish();
  await within(new Promise((r) => s.d.once("close", r)), WAIT_MS, "the socket to close");
  assert.deepEqual(s.written, [1, 2]);
});

Deno.test("nodeToWeb: close() ends the socket and resolves once it finished", async () => {
  const s = socketLike();
  const web = nodeToWeb(s.d);
  const writer = web.writable.getWriter();
  await within(writer.write(new Uint8Array([7])), WAIT_MS, "a write");
  let closed = false;
  const closing = writer.close().then(() => closed = true);
  await within(
    new Promise<void>((r) => {
      const check = () => s.finalCalled ? r() : setTimeout(check, 5);
      check();
    }),
    WAIT_MS,
    "the socket's end()",
  );
  assert.equal(closed, false, "close() waits for the socket to finish");
  // The end of the stream waits for both sides, as with Duplex.toWeb.
  s.d.push(null);
  const reader = web.readable.getReader();
  assert.equal((await within(reader.read(), WAIT_MS, "the end of the readable")).done, true);
  assert.equal(closed, false, "close() waits for the socket to finish");
  s.finish();
  await within(closing, WAIT_MS, "close() after the socket finished");
  assert.deepEqual(s.written, [7]);
});

Deno.test("nodeToWeb: abort() destroys the socket; a socket that dies errors the writable", async () => {
  const a = socketLike();
  const wa = nodeToWeb(a.d).writable.getWriter();
  await within(wa.abort(new Error("gone")), WAIT_MS, "abort()");
  assert.equal(a.d.destroyed, true);

  const b = socketLike();
  const wb = nodeToWeb(b.d).writable.getWriter();
  b.d.destroy(new Error("connection reset"));
  await assert.rejects(within(wb.closed, WAIT_MS, "the writable to error"), /connection reset/);
});
