/**
 * GuardedListener in-process, with a toy protocol behind it: caps refuse at
 * accept, each phase's deadline closes a connection that stalls there, an
 * established connection is closed only when idle, and the watchdog's
 * self-check leaves a healthy listener alone. Waits are on socket events,
 * bounded.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import net from "node:net";
import { ConnectionBudget } from "../../core/conn_limits.ts";
import { createLogger } from "../../core/log.ts";
import { GuardedListener } from "../../relay/conn_guard.ts";

/**
 * The toy protocol: "tls\n" ends the handshake, "hello\n" the preface,
 * "call\n" / "done\n" start and end a call.
 */
function toyProtocol(guardOf: () => GuardedListener): EventEmitter {
  const inner = new EventEmitter();
  inner.on("connection", (socket: net.Socket) => {
    socket.on("data", (d: Uint8Array) => {
      for (const word of new TextDecoder().decode(d).split("\n").filter(Boolean)) {
        const g = guardOf();
        if (word === "tls") g.handshakeDone(socket);
        if (word === "hello") g.established(socket);
        if (word === "call") g.activity(socket, 1);
        if (word === "done") g.activity(socket, -1);
      }
    });
  });
  return inner;
}

async function guarded(opts: {
  tls?: boolean;
  caps?: { total: number; perSource: number };
  limits?: { handshakeMs?: number; prefaceMs?: number; idleMs?: number };
}) {
  const logs: string[] = [];
  const log = createLogger("relay", { sink: (l) => logs.push(l) });
  const g: GuardedListener = new GuardedListener({
    name: "toy",
    listen: { hostname: "127.0.0.1", port: 0 },
    listenSetting: "--toy-addr",
    inner: toyProtocol(() => g),
    budget: new ConnectionBudget(opts.caps ?? { total: 100, perSource: 100 }),
    limits: { handshakeMs: 60_000, prefaceMs: 60_000, idleMs: 60_000, ...opts.limits },
    tls: opts.tls ?? false,
    idle: true,
    log,
    noisy: log,
  });
  await g.listen();
  return { g, logs };
}

/** A connection from `from` that reports when the server closes it. */
function connect(port: number, from = "127.0.0.1") {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
  socket.on("error", () => {});
  const opened = new Promise<void>((r) => socket.once("connect", () => r()));
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  return { socket, opened, closed };
}

/** Resolves when `p` settles; fails after `ms` naming `what` (a bounded wait). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("conn guard: beyond the per-source cap a connection is closed at once; other sources get in", async () => {
  const { g, logs } = await guarded({ caps: { total: 10, perSource: 2 } });
  const conns: ReturnType<typeof connect>[] = [];
  try {
    for (let i = 0; i < 2; i++) conns.push(connect(g.port, "127.0.0.2"));
    await Promise.all(conns.map((c) => c.opened));
    // Both accepted before the third arrives (the guard sees them in order).
    await within(waitFor(() => g.stats.open === 2), 5000, "two open");
    const third = connect(g.port, "127.0.0.2");
    conns.push(third);
    await within(third.closed, 5000, "the refused connection closed");
    assert.equal(g.stats.refused["per-source"], 1);
    const other = connect(g.port, "127.0.0.3");
    conns.push(other);
    await other.opened;
    await within(waitFor(() => g.stats.open === 3), 5000, "the other source admitted");
    assert.ok(logs.some((l) => JSON.parse(l).code === "conn-limit-source"));
  } finally {
    for (const c of conns) c.socket.destroy();
    await g.close();
  }
});

Deno.test("conn guard: a connection that never finishes its handshake is closed by the handshake limit", async () => {
  const { g } = await guarded({ tls: true, limits: { handshakeMs: 150 } });
  const silent = connect(g.port);
  try {
    await silent.opened;
    await within(silent.closed, 10_000, "the silent connection closed");
    assert.equal(g.stats.closed.handshake, 1);
    assert.equal(g.stats.closed.preface, 0);
  } finally {
    silent.socket.destroy();
    await g.close();
  }
});

Deno.test("conn guard: after the handshake, a stalled preface is closed by the preface limit; a finished one is not", async () => {
  // A long handshake limit: only the preface deadline can close anything here.
  const { g } = await guarded({ tls: true, limits: { handshakeMs: 60_000, prefaceMs: 150 } });
  const halfway = connect(g.port);
  const good = connect(g.port);
  try {
    await Promise.all([halfway.opened, good.opened]);
    halfway.socket.write("tls\n");
    good.socket.write("tls\nhello\n");
    await within(halfway.closed, 10_000, "the preface-less connection closed");
    assert.equal(g.stats.closed.preface, 1);
    assert.equal(g.stats.closed.handshake, 0);
    await within(waitFor(() => g.stats.open === 1), 5000, "one left");
    assert.ok(!good.socket.destroyed, "the established one stays");
  } finally {
    for (const c of [halfway, good]) c.socket.destroy();
    await g.close();
  }
  assert.equal(g.stats.accepted, 2);
});

Deno.test("conn guard: an established connection is closed when idle, never during a call", async () => {
  const { g } = await guarded({ limits: { idleMs: 150 } });
  const busy = connect(g.port);
  const idle = connect(g.port);
  try {
    await Promise.all([busy.opened, idle.opened]);
    busy.socket.write("hello\ncall\n");
    idle.socket.write("hello\n");
    await within(idle.closed, 10_000, "the idle one closed");
    assert.equal(g.stats.closed.idle, 1);
    assert.ok(!busy.socket.destroyed, "a connection with a call in progress stays");
    // The call ends: now it idles out too.
    busy.socket.write("done\n");
    await within(busy.closed, 10_000, "closed once idle");
    assert.equal(g.stats.closed.idle, 2);
  } finally {
    for (const c of [busy, idle]) c.socket.destroy();
    await g.close();
  }
});

Deno.test("conn guard: the watchdog's self-check finds a healthy listener alive and leaves it", async () => {
  const logs: string[] = [];
  const log = createLogger("relay", { sink: (l) => logs.push(l) });
  const g: GuardedListener = new GuardedListener({
    name: "toy",
    listen: { hostname: "127.0.0.1", port: 0 },
    listenSetting: "--toy-addr",
    inner: toyProtocol(() => g),
    budget: new ConnectionBudget({ total: 10, perSource: 10 }),
    tls: false,
    idle: true,
    log,
    noisy: log,
    watchdog: { intervalMs: 60_000, probeTimeoutMs: 5000 },
  });
  await g.listen();
  try {
    await g.check(); // first round: records the count
    await g.check(); // nothing accepted since: connects to itself
    assert.equal(g.stats.rebuilds, 0, logs.join("\n"));
    const c = connect(g.port);
    await c.opened;
    c.socket.destroy();
  } finally {
    await g.close();
  }
  assert.ok(!logs.some((l) => JSON.parse(l).code === "listener-dead"));
});

/** Resolves once `cond` holds (checked on a short timer; callers bound the wait). */
function waitFor(cond: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const tick = () => (cond() ? resolve() : setTimeout(tick, 5));
    tick();
  });
}
