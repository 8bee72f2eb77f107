/** The event observer's diff (CONTRACTS.md §1.5) and the bounded subscriber buffers. */
import assert from "node:assert/strict";
import {
  baseline,
  diffDump,
  EventHub,
  HANDSHAKE_UP_WINDOW_S,
  Observer,
  SUBSCRIBER_BUFFER,
} from "../../agent/events.ts";
import type { AgentEvent } from "../../agent/events.ts";
import type { DumpPeer, WgDump } from "../../core/dataplane/mod.ts";
import { createLogger } from "../../core/log.ts";

const key = (n: number) => new Uint8Array(32).fill(n).toBase64();
const peer = (n: number, p: Partial<DumpPeer> = {}): DumpPeer => ({
  publicKey: key(n),
  presharedKey: null,
  endpoint: null,
  allowedIps: [],
  latestHandshake: 0,
  rxBytes: 0n,
  txBytes: 0n,
  persistentKeepalive: null,
  ...p,
});
const dump = (...peers: DumpPeer[]): WgDump => ({
  interface: { privateKey: null, publicKey: null, listenPort: 443, awgFields: [], fwmark: null },
  peers,
});
const types = (events: AgentEvent[]) =>
  events.map((e) => `${e.type.slice(11)} ${e.peerId.slice(0, 4)}`);

Deno.test("events: handshake up, connect, roaming, rekey, timeout and removal per §1.5", () => {
  const t0 = 1_800_000_000;
  let prev = baseline(dump(peer(1), peer(2)), t0);
  const step = (d: WgDump, now: number) => {
    const r = diffDump(prev, d, now);
    prev = r.next;
    return r;
  };
  // First handshake: HANDSHAKE_UP and PEER_CONNECTED with the source endpoint and counters.
  let r = step(
    dump(
      peer(1, {
        latestHandshake: t0 + 4,
        endpoint: "192.0.2.2:40000",
        rxBytes: 92n,
        txBytes: 148n,
      }),
      peer(2),
    ),
    t0 + 5,
  );
  assert.deepEqual(types(r.events), [
    `HANDSHAKE_UP ${key(1).slice(0, 4)}`,
    `PEER_CONNECTED ${key(1).slice(0, 4)}`,
  ]);
  assert.equal(r.handshakes, 1);
  const connected = r.events[1];
  assert.deepEqual([connected.sourceEndpoint, connected.rxBytes, connected.txBytes], [
    "192.0.2.2:40000",
    92n,
    148n,
  ]);
  // A rekey while up: HANDSHAKE_UP only.
  r = step(
    dump(
      peer(1, { latestHandshake: t0 + 125, endpoint: "192.0.2.2:40000", rxBytes: 900n }),
      peer(2),
    ),
    t0 + 126,
  );
  assert.deepEqual(types(r.events), [`HANDSHAKE_UP ${key(1).slice(0, 4)}`]);
  // Roaming while up: PEER_CONNECTED with the new endpoint, no disconnect first.
  r = step(
    dump(peer(1, { latestHandshake: t0 + 125, endpoint: "198.51.100.9:1234" }), peer(2)),
    t0 + 130,
  );
  assert.deepEqual(r.events.map((e) => [e.type, e.sourceEndpoint]), [[
    "EVENT_TYPE_PEER_CONNECTED",
    "198.51.100.9:1234",
  ]]);
  // Last handshake older than 180 s: HANDSHAKE_DOWN then PEER_DISCONNECTED with counters.
  r = step(
    dump(
      peer(1, {
        latestHandshake: t0 + 125,
        endpoint: "198.51.100.9:1234",
        rxBytes: 1000n,
        txBytes: 2000n,
      }),
      peer(2),
    ),
    t0 + 125 + HANDSHAKE_UP_WINDOW_S + 1,
  );
  assert.deepEqual(types(r.events), [
    `HANDSHAKE_DOWN ${key(1).slice(0, 4)}`,
    `PEER_DISCONNECTED ${key(1).slice(0, 4)}`,
  ]);
  assert.deepEqual([r.events[1].rxBytes, r.events[1].txBytes], [1000n, 2000n]);
  // Nothing new: nothing.
  assert.deepEqual(
    step(dump(peer(1, { latestHandshake: t0 + 125 }), peer(2)), t0 + 400).events,
    [],
  );
  // A peer removed from the config: PEER_DISCONNECTED with its last endpoint (counters 0: it was down).
  r = step(dump(peer(1, { latestHandshake: t0 + 125 })), t0 + 401);
  assert.deepEqual(r.events.map((e) => [e.type, e.peerId, e.rxBytes]), [[
    "EVENT_TYPE_PEER_DISCONNECTED",
    key(2),
    0n,
  ]]);
});

Deno.test("events: the first reading is a silent baseline; a failed reading is an ERROR event", async () => {
  const hub = new EventHub(createLogger("t", { level: "error" }));
  const sub = hub.subscribe();
  let now = 1_800_000_000;
  let next: WgDump | Error = dump(peer(1, { latestHandshake: now - 10, endpoint: "192.0.2.2:1" }));
  const obs = new Observer({
    hub,
    log: createLogger("t", { level: "error" }),
    intervalMs: 1000,
    now: () => now,
    read: () => next instanceof Error ? Promise.reject(next) : Promise.resolve(next),
  });
  await obs.poll();
  next = new Error("uapi: connection refused");
  await obs.poll();
  assert.equal(obs.errorsTotal, 1n);
  const e = await sub.next();
  assert.deepEqual([e?.type, e?.message], ["EVENT_TYPE_ERROR", "uapi: connection refused"]);
  // A graceful stop reports every peer still up as disconnected ("node-shutdown").
  now += 1;
  await obs.stop();
  const bye = await sub.next();
  assert.deepEqual([bye?.type, bye?.message, bye?.peerId], [
    "EVENT_TYPE_PEER_DISCONNECTED",
    "node-shutdown",
    key(1),
  ]);
});

Deno.test("events: a subscriber that does not read keeps at most 256 events; others are unaffected", async () => {
  const lines: string[] = [];
  const hub = new EventHub(createLogger("t", { sink: (l) => lines.push(l) }));
  const slow = hub.subscribe();
  const fast = hub.subscribe();
  const got: AgentEvent[] = [];
  const reading = (async () => {
    for (let i = 0; i < 300; i++) got.push((await fast.next())!);
  })();
  for (let i = 0; i < 300; i++) {
    hub.publish({
      at: i,
      type: "EVENT_TYPE_HANDSHAKE_UP",
      peerId: key(1),
      message: "",
      sourceEndpoint: "",
      rxBytes: 0n,
      txBytes: 0n,
    });
    await Promise.resolve();
  }
  await reading;
  assert.equal(got.length, 300);
  assert.equal(slow.dropped, 300 - SUBSCRIBER_BUFFER);
  assert.ok(lines.some((l) => JSON.parse(l).code === "event-dropped"));
  slow.close();
  let drained = 0;
  while ((await slow.next()) !== null) drained++;
  assert.equal(drained, SUBSCRIBER_BUFFER, "queued events are still handed out after close");
  assert.equal(hub.subscribers, 1);
});
