/**
 * Issue 10: one client must only ever affect itself. Rapid reset of
 * certificate-less claims and of device calls, streams beyond the limits,
 * oversized claims and revocation of a device with a call in flight, through
 * the embedded pipe and a real reverse tunnel. During every attack a
 * legitimate device keeps a call open and must see it through.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import http2 from "node:http2";
import { CLIENT_MAX_STREAMS } from "../../relay/client_listener.ts";
import { CANCEL_BUDGET, DEFAULT_STREAM_LIMITS, RESET_BUDGET } from "../../relay/stream_limits.ts";
import { type AbuseRelay, abuseRelay, legitBidi, unaryEcho } from "../support/abuse_harness.ts";
import {
  BIDI,
  CLAIM_METHOD,
  claimAndReset,
  deviceResetRounds,
  echoRequest,
  endStreamFrame,
  holdClaims,
  pingRoundTrip,
} from "../support/h2_attacks.ts";
import { ERR, grpcFrame, grpcStatus, RawH2 } from "../support/h2_raw.ts";
import { makeFleet } from "../support/pki_fixture.ts";
import { until } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

function raw(h: AbuseRelay, leaf: { chainPem: string; keyPem: string } | null) {
  return RawH2.connect({
    port: h.port,
    caPem: h.fleet.rootPem,
    ...(leaf ? { certPem: leaf.chainPem, keyPem: leaf.keyPem } : {}),
  });
}

/** Waits until the relay has every call closed and every slot back. */
async function settled(h: AbuseRelay, timeoutMs = 30_000): Promise<void> {
  await until(
    () => h.proxy.limits.open.certless === 0 && h.proxy.limits.open.device === 0,
    timeoutMs,
    "every slot to be released",
  );
}

/** The relay ended `c` for abuse: GOAWAY ENHANCE_YOUR_CALM, or (late) just the close after it. */
async function endedCalm(c: RawH2, what: string): Promise<void> {
  await c.waitFor(() => c.goaway !== undefined || c.closed, 10_000, `${what} to be ended`);
  assert.equal(c.goaway?.code, ERR.ENHANCE_YOUR_CALM, `${what}: GOAWAY ENHANCE_YOUR_CALM`);
}

function sessionErrors(h: AbuseRelay): string[] {
  return h.logs.filter((l) => l.includes("controller session error"));
}

Deno.test({
  name:
    "HTTP/2 in Deno: a server connection takes 1000 client resets before GOAWAY, with or without maxSessionRejectedStreams/maxSessionInvalidFrames",
  ...opts,
  fn: async () => {
    // This is the controller's budget that the relay's reset pacer stays under.
    const fleet = await makeFleet();
    const leaf = await fleet.issue({ kind: "relay", hosts: ["localhost"] });
    for (
      const extra of [{}, {
        maxSessionRejectedStreams: 1e9,
        maxSessionInvalidFrames: 1e9,
        maxSessionMemory: 1e6,
      }]
    ) {
      const server = http2.createSecureServer({
        cert: leaf.chainPem,
        key: leaf.keyPem,
        ALPNProtocols: ["h2"],
        settings: { maxConcurrentStreams: 4000 },
        ...extra,
      });
      server.on("stream", (s) => s.on("error", () => {}));
      server.on("sessionError", () => {});
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
      const c = await RawH2.connect({
        port: (server.address() as { port: number }).port,
        caPem: fleet.rootPem,
      });
      try {
        await c.waitFor(() => c.peerSettings.size > 0, 10_000, "server SETTINGS");
        let resets = 0;
        for (let k = 0; k < 40 && !c.goaway && !c.closed; k++) {
          const frames: Uint8Array[] = [];
          for (let i = 0; i < 100; i++) {
            const r = c.requestFrames("/x");
            frames.push(...r.frames, c.rstFrame(r.id, ERR.CANCEL));
          }
          await c.write(frames);
          resets += 100;
          await pingRoundTrip(c);
        }
        assert.ok(c.goaway, `no GOAWAY after ${resets} resets (options ${JSON.stringify(extra)})`);
        const before = (c.goaway.lastStreamId + 1) / 2;
        assert.ok(before >= 1000, `GOAWAY after only ${before} resets`);
        assert.ok(RESET_BUDGET.burst <= before / 2 && RESET_BUDGET.perSecond < 33);
      } finally {
        c.close();
        await c.done();
        await new Promise<void>((r) => server.close(() => r()));
      }
    }
  },
});

for (const kind of ["embedded", "tunnel"] as const) {
  const withRelay = (title: string, fn: (h: AbuseRelay) => Promise<void>) =>
    Deno.test({
      name: `abuse (${kind}): ${title}`,
      ...opts,
      fn: async () => {
        const h = await abuseRelay(kind);
        try {
          await fn(h);
        } finally {
          await h.close();
        }
      },
    });

  withRelay(
    "1,000 held certificate-less claims on one connection: the excess is refused stream by stream, then the connection and its address are calmed; nobody else is touched",
    async (h) => {
      const legit = legitBidi(h.client());
      await legit.ping("before");
      const attacker = await raw(h, null);
      try {
        const ids = await holdClaims(attacker, 1000, 100, 8);
        const open = ids.filter((id) => {
          const st = attacker.streams.get(id)!;
          return st.rst === undefined && !st.ended;
        });
        const perConn = DEFAULT_STREAM_LIMITS.certless.connection.concurrent;
        assert.ok(open.length <= perConn, `${open.length} claims held at once`);
        const refused = ids.filter((id) => attacker.streams.get(id)!.rst === ERR.REFUSED_STREAM);
        assert.ok(refused.length > 0, "the first excess claims are refused one by one");
        // Refusals past the connection's budget end it (not nghttp2's 1,000-reset limit).
        await endedCalm(attacker, "the attacker's connection");
        assert.ok(ids.length < 1000 || refused.length < 1000 - perConn, "cut short");
        assert.ok(refused.length <= CANCEL_BUDGET.burst + 100, `${refused.length} refused`);
        await legit.ping("during");
        // The address is calmed: its next connection is ended at its first claim.
        const again = await raw(h, null);
        try {
          await again.request(CLAIM_METHOD);
          await endedCalm(again, "a new connection from the calmed address");
        } finally {
          again.close();
        }
        await legit.ping("after the cancel");
        assert.equal((await unaryEcho(h.client(), "fresh call")).text, "fresh call");
        assert.equal((await legit.end()).code, grpc.status.OK);
        // Held claims never reached the controller: nothing to reset there.
        assert.ok(!h.logs.some((l) => l.includes('"lane":"certless"')));
        await settled(h);
        assert.deepEqual(sessionErrors(h), []);
      } finally {
        attacker.close();
      }
    },
  );

  withRelay(
    "claims sent whole and reset at once, up to 1,000 on each of four connections: refused or left to finish, the connections calmed, the controller session holds",
    async (h) => {
      const legit = legitBidi(h.client());
      await legit.ping("before");
      const attackers = await Promise.all([0, 1, 2, 3].map(() => raw(h, null)));
      try {
        const results = await Promise.all(attackers.map((a) => claimAndReset(a, 1000, 100)));
        await legit.ping("during");
        for (const [i, r] of results.entries()) {
          // Each is refused, then ended once its address is calmed, long before 1,000.
          await endedCalm(attackers[i], `attacker ${i}`);
          assert.ok(r.opened < 1000, `attacker ${i} opened ${r.opened}`);
        }
        assert.equal((await unaryEcho(h.client(), "fresh call")).text, "fresh call");
        assert.equal((await legit.end()).code, grpc.status.OK);
        await settled(h);
        assert.deepEqual(sessionErrors(h), []);
      } finally {
        for (const a of attackers) a.close();
      }
    },
  );

  withRelay(
    "a device resetting calls in bulk: its connection is ended early, its new ones at once while calmed; other devices' calls go on",
    async (h) => {
      const legit = legitBidi(h.client());
      await legit.ping("before");
      const bad = await h.fleet.issue({ kind: "device", name: "attacker" });
      const one = await raw(h, bad);
      let resets = 0;
      try {
        const r = await deviceResetRounds(one, 12, 128);
        resets += r.resetsSent;
        // Its cancels pass the connection's budget: ended with ENHANCE_YOUR_CALM,
        // long before nghttp2's own limit of about 1,000 resets.
        await endedCalm(one, "the resetting connection");
        assert.ok(resets >= 128 && resets < 1000, `${resets} resets before the end`);
        await legit.ping("after one connection");
        // The device is calmed: each new connection of it is ended at its first call.
        const four = await Promise.all([0, 1, 2, 3].map(() => raw(h, bad)));
        try {
          const rs = await Promise.all(four.map((c) => deviceResetRounds(c, 4, 128)));
          resets += rs.reduce((n, x) => n + x.resetsSent, 0);
          for (const [i, c] of four.entries()) await endedCalm(c, `connection ${i} of the device`);
          // Nothing of theirs was forwarded: no call was answered.
          for (const c of four) {
            assert.ok(
              [...c.streams.values()].every((st) => st.dataBytes === 0),
              "nothing forwarded",
            );
          }
        } finally {
          for (const c of four) c.close();
        }
        await legit.ping("after four connections");
        assert.equal((await unaryEcho(h.client(), "fresh call")).text, "fresh call");
        assert.equal((await legit.end()).code, grpc.status.OK);
        await settled(h);
        assert.deepEqual(sessionErrors(h), []);
        assert.equal(h.logs.filter((l) => l.includes("connected to controller")).length, 1);
      } finally {
        one.close();
      }
    },
  );

  withRelay(
    "the 129th concurrent call is refused alone with REFUSED_STREAM; the other 128 complete",
    async (h) => {
      assert.equal(CLIENT_MAX_STREAMS, DEFAULT_STREAM_LIMITS.device.connection.concurrent);
      const c = await raw(h, h.device);
      try {
        await c.waitFor(() => c.peerSettings.size > 0, 10_000, "server SETTINGS");
        await pingRoundTrip(c); // our SETTINGS ACK has been read: the advertised limit is in force
        const ids: number[] = [];
        const frames: Uint8Array[] = [];
        for (let i = 0; i < CLIENT_MAX_STREAMS; i++) {
          const r = c.requestFrames(BIDI, { body: grpcFrame(echoRequest(`m${i}`)) });
          ids.push(r.id);
          frames.push(...r.frames);
        }
        await c.write(frames);
        await c.waitFor(
          () => ids.every((id) => c.streams.get(id)!.dataBytes > 0),
          20_000,
          "all 128 calls answered",
        );
        const extra = await c.request(BIDI, { body: grpcFrame(echoRequest("one too many")) });
        await c.waitFor(() => c.streams.get(extra)!.rst !== undefined, 10_000, "the refusal");
        assert.equal(c.streams.get(extra)!.rst, ERR.REFUSED_STREAM);
        assert.equal(c.goaway, undefined);
        await c.write(ids.map((id) => endStreamFrame(c, id)));
        await c.waitFor(
          () => ids.every((id) => c.streams.get(id)!.ended),
          20_000,
          "the 128 calls to finish",
        );
        for (const id of ids) assert.equal(grpcStatus(c.streams.get(id)!), "0");
        await settled(h);
      } finally {
        c.close();
      }
    },
  );

  withRelay(
    "a certificate-less message over 64 KiB is refused at its header, before its body",
    async (h) => {
      const c = await raw(h, null);
      try {
        // The header declares 16 MiB; not a byte of the body follows.
        const id = await c.request(CLAIM_METHOD, {
          body: grpcFrame(new Uint8Array(0), 16 * 1024 * 1024),
        });
        await c.waitFor(() => c.streams.get(id)!.ended, 10_000, "the refusal");
        assert.equal(grpcStatus(c.streams.get(id)!), String(grpc.status.RESOURCE_EXHAUSTED));
        const just = await c.request(CLAIM_METHOD, {
          body: grpcFrame(new Uint8Array(0), 64 * 1024 + 1),
        });
        await c.waitFor(() => c.streams.get(just)!.ended, 10_000, "the refusal");
        assert.equal(grpcStatus(c.streams.get(just)!), String(grpc.status.RESOURCE_EXHAUSTED));
        assert.ok(!h.logs.some((l) => l.includes('"lane":"certless"')), "nothing was forwarded");
        await settled(h);
      } finally {
        c.close();
      }
    },
  );

  withRelay("a device revoked mid-call loses its open call at once", async (h) => {
    const legit = legitBidi(h.client());
    await legit.ping("before");
    const other = await h.fleet.issue({ kind: "device", name: "other phone" });
    const bystander = legitBidi(h.client(other));
    await bystander.ping("before");
    if (h.tunnel) {
      // A remote relay hears of it from the controller's policy push.
      h.revokedSerials.push(h.device.cert.serialNumber);
      await h.tunnel.client.pushPolicy();
    } else {
      // The embedded relay shares the controller's list: its sweep notices.
      h.revoked.add(h.device.cert.serialNumber);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      legit.ended,
      new Promise<null>((r) => (timer = setTimeout(() => r(null), 10_000))),
    ]);
    clearTimeout(timer);
    assert.ok(status, "the revoked device's call is still open");
    assert.equal(status.code, grpc.status.UNAUTHENTICATED);
    assert.match(
      status.details,
      /^relay: device certificate \(serial [0-9a-f]+\) has been revoked$/,
    );
    await bystander.ping("unaffected");
    assert.equal((await bystander.end()).code, grpc.status.OK);
    await settled(h);
  });
}
