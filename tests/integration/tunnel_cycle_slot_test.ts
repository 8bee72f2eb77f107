/**
 * The bounds of draining in the relay's TunnelSlot, on in-memory pipes (the
 * sockets are covered by tunnel_cycle_renewal_test.ts): a replaced session
 * whose controller went silent (at once, or after answering the first
 * ping) is closed once a ping goes unanswered, not after the whole grace;
 * and a burst of replacements never keeps more than MAX_DRAINING old sessions.
 */
import assert from "node:assert/strict";
import type { Duplex } from "node:stream";
import { createLogger } from "../../core/log.ts";
import { type Duplex as WebDuplex, memoryDuplexPair, MuxSession } from "../../core/mux/mod.ts";
import { RelayPolicy } from "../../core/relay_policy.ts";
import { MAX_DRAINING, TunnelSlot } from "../../relay/tunnel.ts";
import { waitForCode, withCode } from "../support/tunnel_cycle.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

function slotWithLogs() {
  const logs: string[] = [];
  // A grace far beyond the test: what ends a drain here is not the clock.
  const slot = new TunnelSlot(
    new RelayPolicy(),
    createLogger("relay", { sink: (l) => logs.push(l) }),
    {
      drainGraceMs: 10 * WAIT_MS,
    },
  );
  return { slot, logs };
}

/** A controller end that answers (a yamux server), attached to the slot with `serial`. */
function attachLive(slot: TunnelSlot, serial: string): MuxSession {
  const [relayEnd, controllerEnd] = memoryDuplexPair();
  const controller = new MuxSession(controllerEnd, { role: "server", keepAliveIntervalMs: 0 });
  slot.attach(relayEnd, { keepAliveIntervalMs: 0, serial });
  return controller;
}

/** A backend substream opened on the slot's live session (it keeps that session busy). */
function hold(slot: TunnelSlot): Promise<Duplex> {
  return within(slot.dial(), WAIT_MS, "a backend substream");
}

Deno.test("tunnel slot: a replaced session whose controller went silent is closed at its first unanswered ping", async () => {
  const { slot, logs } = slotWithLogs();
  // The old controller end never reads nor answers: a connection that died unheard.
  const [relayEnd] = memoryDuplexPair();
  slot.attach(relayEnd, { keepAliveIntervalMs: 0, serial: "old", pingTimeoutMs: 500 });
  const held = await hold(slot);
  held.on("error", () => {});
  const fresh = attachLive(slot, "new");
  try {
    const end = await waitForCode(logs, "tunnel-drain-end", "the silent session to be closed");
    assert.equal(end.reason, "unresponsive");
    assert.equal(end.serial, "old");
    assert.ok(end.streams_cut >= 1, JSON.stringify(end));
    assert.equal(slot.draining, 0);
    assert.ok(slot.connected, "the new session is untouched");
  } finally {
    held.destroy();
    await slot.close();
    await fresh.close();
  }
});

/**
 * `end` with a gate: once shut, nothing more reaches the reader (held, not
 * dropped); `written` counts the chunks it wrote.
 */
function gated(end: WebDuplex) {
  let open = true;
  let written = 0;
  const never = new Promise<void>(() => {});
  const readable = end.readable.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      async transform(chunk, c) {
        if (!open) await never;
        c.enqueue(chunk);
      },
    }),
  );
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      written++;
      const w = end.writable.getWriter();
      try {
        await w.write(chunk);
      } finally {
        w.releaseLock();
      }
    },
  });
  return {
    duplex: { readable, writable } as WebDuplex,
    shut: () => open = false,
    get written() {
      return written;
    },
  };
}

Deno.test("tunnel slot: a draining session that answered the first ping and then went silent is closed at the next unanswered ping", async () => {
  const logs: string[] = [];
  // Pings every 100 ms with 500 ms to answer; the grace is far beyond the test.
  const slot = new TunnelSlot(
    new RelayPolicy(),
    createLogger("relay", { sink: (l) => logs.push(l) }),
    { drainGraceMs: 10 * WAIT_MS, drainPingMs: 100 },
  );
  const [relayEnd, controllerEnd] = memoryDuplexPair();
  const gate = gated(controllerEnd);
  const old = new MuxSession(gate.duplex, { role: "server", keepAliveIntervalMs: 0 });
  slot.attach(relayEnd, { keepAliveIntervalMs: 0, serial: "old", pingTimeoutMs: 500 });
  const held = await hold(slot);
  held.on("error", () => {});
  await until(() => old.streamCount === 1, WAIT_MS, "the held substream on the old session");
  const fresh = attachLive(slot, "new");
  try {
    await waitForCode(logs, "tunnel-drain-start", "the drain");
    // The old controller answers the drain's first ping (the only thing it writes now)...
    const before = gate.written;
    await until(() => gate.written > before, WAIT_MS, "the answer to the first ping");
    // ...then goes silent.
    gate.shut();
    const end = await waitForCode(logs, "tunnel-drain-end", "the silent session to be closed");
    assert.equal(end.reason, "unresponsive");
    assert.equal(end.serial, "old");
    assert.ok(end.streams_cut >= 1, JSON.stringify(end));
    assert.equal(slot.draining, 0);
    assert.ok(slot.connected, "the new session is untouched");
  } finally {
    held.destroy();
    await slot.close();
    await fresh.close();
    await old.close();
  }
});

Deno.test("tunnel slot: a burst of replacements keeps at most MAX_DRAINING old sessions", async () => {
  const { slot, logs } = slotWithLogs();
  const controllers: MuxSession[] = [];
  const held: Duplex[] = [];
  try {
    for (let i = 0; i <= MAX_DRAINING + 1; i++) {
      controllers.push(attachLive(slot, `s${i}`));
      const s = await hold(slot);
      s.on("error", () => {});
      held.push(s);
    }
    await until(
      () => withCode(logs, "tunnel-drain-end").length === 1,
      WAIT_MS,
      "the oldest drain to be closed",
    );
    const [end] = withCode(logs, "tunnel-drain-end");
    assert.equal(end.reason, "too-many-draining");
    assert.equal(end.serial, "s0");
    assert.equal(slot.draining, MAX_DRAINING);
    assert.equal(withCode(logs, "tunnel-drain-start").length, MAX_DRAINING + 1);
  } finally {
    for (const s of held) s.destroy();
    await slot.close();
    for (const c of controllers) await c.close();
  }
});
