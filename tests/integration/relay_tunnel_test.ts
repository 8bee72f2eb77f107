// deno-lint-ignore-file no-explicit-any
/**
 * Reverse tunnel and control-plane egress: only the controller may hold
 * either, the tunnel survives cuts and relay restarts, and egress dials only
 * what the controller's allow-list names.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { EgressClient } from "../../controller/relay/egress_client.ts";
import { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import { createLogger } from "../../core/log.ts";
import { MuxSession } from "../../core/mux/mod.ts";
import { certPem } from "../../core/pki/mod.ts";
import { RelayPolicy } from "../../core/relay_policy.ts";
import { serveEgress } from "../../relay/egress.ts";
import { TunnelSlot } from "../../relay/tunnel.ts";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import {
  type Fleet,
  type IssuedLeaf,
  issueLegacyControllerCert,
  makeFleet,
} from "../support/pki_fixture.ts";
import { type Harness, relayHarness, unary } from "../support/relay_harness.ts";
import {
  startTunnel,
  testControllerListener,
  type TunnelFixture,
} from "../support/tunnel_fixture.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Redial only after a minute: a controller that lost its session stays off during a test. */
const SLOW_REDIAL = { initialMs: 60_000, maxMs: 60_000, stableMs: 1 };

/** Tries to hold a controller-only port with `leaf`; true if the relay kept the connection. */
async function holdsPort(fleet: Fleet, port: number, leaf: IssuedLeaf): Promise<boolean> {
  const socket = tls.connect({
    host: "127.0.0.1",
    port,
    cert: leaf.chainPem,
    key: leaf.keyPem,
    ca: fleet.rootPem + certPem(fleet.pki.fleet.cert),
    minVersion: "TLSv1.3",
  });
  socket.on("error", () => {});
  const ok = await within(
    new Promise<boolean>((resolve) => {
      socket.once("secureConnect", () => resolve(true));
      socket.once("close", () => resolve(false));
    }),
    WAIT_MS,
    "the TLS handshake with the controller-only port (or its refusal)",
    () => socket.destroy(),
  );
  if (!ok) return false;
  // The role check runs right after the handshake: a refused peer is cut.
  const session = new MuxSession(nodeToWeb(socket), {
    role: "server",
    keepAliveIntervalMs: 0,
    pingTimeoutMs: 1000,
  });
  try {
    await session.ping();
    return true;
  } catch {
    return false;
  } finally {
    await within(session.close(), WAIT_MS, "the probe's mux session to close").finally(() =>
      socket.destroy()
    );
  }
}

tunnelTest(
  "tunnel: node, relay and device certificates cannot hold the tunnel; the controller still can",
  async (h, t) => {
    const fleet = h.fleet;
    const intruders = [
      await fleet.issue({ kind: "node", host: "203.0.113.4" }),
      await fleet.issue({ kind: "relay", hosts: ["relay2.example"] }),
      await fleet.issue({ kind: "controller-server" }),
      h.device,
    ];
    for (const leaf of intruders) assert.equal(await holdsPort(fleet, t.port, leaf), false);
    assert.ok(t.logs.some((l) => l.includes("refused a non-controller connection")));
    // The real controller's tunnel was never displaced.
    assert.equal(t.client.sessions, 1);
    assert.equal(
      (await unary(h.client(), "Unary", { text: "still here" })).res.text,
      "still here",
    );
  },
);

tunnelTest(
  "tunnel: after a cut or a relay restart the controller redials and calls work again",
  async (h, t) => {
    assert.equal((await unary(h.client(), "Unary", { text: "one" })).res.text, "one");
    // Cut: the relay drops the tunnel's TCP connection.
    await within(t.slot.close(), WAIT_MS, "the relay to cut the tunnel");
    await until(
      () => t.client.sessions >= 2 && t.slot.connected,
      WAIT_MS,
      "the controller to redial",
    );
    assert.equal((await unary(h.client(), "Unary", { text: "two" })).res.text, "two");
    // Restart of the relay's listener on the same port.
    await t.restartRelay();
    await until(
      () => t.client.sessions >= 3 && t.slot.connected,
      WAIT_MS,
      "the controller to redial after restart",
    );
    assert.equal((await unary(h.client(), "Unary", { text: "three" })).res.text, "three");
  },
);

tunnelTest(
  "tunnel: a second controller session replaces the first instead of being locked out",
  async (h, t, accept) => {
    const second = await h.fleet.issue({ kind: "controller-client" });
    // A second controller process dialling the same relay; what reaches the
    // backend through its tunnel is counted.
    let viaSecond = 0;
    const other = new TunnelClient({
      target: { host: "127.0.0.1", port: t.port },
      identity: {
        certPem: second.chainPem,
        keyPem: second.keyPem,
        caPem: h.fleet.rootPem + certPem(h.fleet.pki.fleet.cert),
        trust: h.fleet.trust,
      },
      accept: (c) => {
        viaSecond++;
        accept(c);
      },
      policy: () => ({ v: 1, revision: 100, revoked_serials: [], egress_allow: [] }),
      log: createLogger("second", { sink: () => {} }),
      backoff: SLOW_REDIAL,
    });
    other.start();
    try {
      await within(other.whenUp(), WAIT_MS, "the second controller's tunnel to come up");
      await until(
        () => t.logs.some((l) => l.includes("replaces the previous one")),
        WAIT_MS,
        "replacement",
      );
      // The first controller lost its session (it is not redialling yet: SLOW_REDIAL).
      await until(
        () => t.client.state === "backoff",
        WAIT_MS,
        "the first controller's session to end",
      );
      assert.equal(t.client.sessions, 1);
      assert.equal(
        (await unary(h.client(), "Unary", { text: "via second" })).res.text,
        "via second",
      );
      assert.ok(viaSecond > 0, "the call travelled through the second controller's tunnel");
    } finally {
      await within(other.stop(), WAIT_MS, "the second controller's TunnelClient.stop()");
    }
  },
  { backoff: SLOW_REDIAL },
);

Deno.test({
  name: "tunnel client: stop() during a dial resolves, and the dial never comes up",
  ...opts,
  fn: async () => {
    const r = await controllerPort();
    const client = r.tunnelClient();
    try {
      // start() leaves the loop inside its dial: stop() lands mid-dial.
      client.start();
      await within(client.stop(), WAIT_MS, "TunnelClient.stop() called while it dials");
      assert.equal(client.state, "stopped");
      assert.equal(client.sessions, 0);
      await assert.rejects(
        within(client.whenUp(), WAIT_MS, "whenUp() of a stopped client"),
        /stopped/,
      );
      assert.equal(r.slot.connected, false);
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name:
    "tunnel client: stop() while it verifies the relay resolves; the finished handshake is dropped",
  ...opts,
  fn: async () => {
    const r = await controllerPort();
    // The relay's certificate check waits until the test lets it go.
    const verifying = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    const trust = {
      verify: async (...a: Parameters<typeof r.fleet.trust.verify>) => {
        verifying.resolve();
        await release.promise;
        return await r.fleet.trust.verify(...a);
      },
    } as unknown as typeof r.fleet.trust;
    const client = r.tunnelClient(trust);
    const waiter = assert.rejects(client.whenUp(), /stopped/, "whenUp() across stop()");
    try {
      client.start();
      await within(verifying.promise, WAIT_MS, "the client to verify the relay's certificate");
      const stopping = client.stop();
      release.resolve();
      await within(stopping, WAIT_MS, "TunnelClient.stop() called during the relay check");
      await within(waiter, WAIT_MS, "whenUp() to reject on stop()");
      assert.equal(client.state, "stopped");
      assert.equal(client.sessions, 0);
      // The relay took the connection after its side of TLS; the client dropped it.
      await until(() => !r.slot.connected, WAIT_MS, "the relay to see the connection go");
    } finally {
      release.resolve();
      await r.close();
    }
  },
});

/** A relay's controller-only port with a tunnel slot, and TunnelClients for it. */
async function controllerPort() {
  const fleet = await makeFleet();
  const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
  const ctl = await fleet.issue({ kind: "controller-client" });
  const logs: string[] = [];
  const log = createLogger("tunnel", { sink: (l) => logs.push(l) });
  const policy = new RelayPolicy();
  const slot = new TunnelSlot(policy, log);
  const listener = await within(
    testControllerListener(fleet, relayLeaf, {
      policy,
      log,
      onController: (socket) => slot.attach(nodeToWeb(socket)),
    }),
    WAIT_MS,
    "the relay's controller listener",
  );
  return {
    fleet,
    slot,
    logs,
    tunnelClient: (trust = fleet.trust) =>
      new TunnelClient({
        target: { host: "127.0.0.1", port: listener.port },
        identity: {
          certPem: ctl.chainPem,
          keyPem: ctl.keyPem,
          caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
          trust,
        },
        accept: (c) => c.destroy(),
        policy: () => ({ v: 1, revision: 1, revoked_serials: [], egress_allow: [] }),
        log,
        backoff: SLOW_REDIAL,
      }),
    async close() {
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
      await within(listener.close(), WAIT_MS, "the relay's controller listener to close");
    },
  };
}

/** A relay harness whose transport is a real tunnel; `fn` gets both, plus the backend's accept. */
function tunnelTest(
  name: string,
  fn: (h: Harness, t: TunnelFixture, accept: (c: any) => void) => Promise<void>,
  tunnelOpts: Parameters<typeof startTunnel>[3] = {},
): void {
  Deno.test({
    name,
    ...opts,
    fn: async () => {
      let t: TunnelFixture | undefined;
      let accept: ((c: any) => void) | undefined;
      const h = await relayHarness(async (a, f, r) => {
        accept = a;
        t = await startTunnel(a, f, r, tunnelOpts);
        return t.transport;
      });
      try {
        await fn(h, t!, accept!);
      } finally {
        await h.close();
      }
    },
  });
}

/** A stream to host:port through the relay's egress (bounded). */
function dial(e: EgressSetup, host: string, port: number) {
  return within(e.client.dial(host, port), WAIT_MS, `an egress stream to ${host}:${port}`);
}

/** Pushes `doc` on the egress session; the relay's answer line (bounded). */
function push(e: EgressSetup, doc: Parameters<EgressClient["pushPolicy"]>[0]) {
  return within(e.client.pushPolicy(doc), WAIT_MS, `the relay's answer to policy ${doc.revision}`);
}

interface EgressSetup {
  fleet: Fleet;
  policy: RelayPolicy;
  port: number;
  logs: string[];
  client: EgressClient;
  echoPort: number;
  close(): Promise<void>;
}

async function egressSetup(): Promise<EgressSetup> {
  const fleet = await makeFleet();
  const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
  const ctl = await fleet.issue({ kind: "controller-client" });
  const logs: string[] = [];
  const log = createLogger("egress", { sink: (l) => logs.push(l) });
  const policy = new RelayPolicy();
  const listener = await within(
    testControllerListener(fleet, relayLeaf, {
      policy,
      log,
      onController: (socket) =>
        void serveEgress(nodeToWeb(socket), { policy, log, dialTimeoutMs: 2000 }),
    }),
    WAIT_MS,
    "the relay's egress listener",
  );
  // A stand-in for a node's control port: echoes what it receives.
  const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of echo) conn.readable.pipeTo(conn.writable).catch(() => {});
  })();
  const client = new EgressClient(
    { host: "127.0.0.1", port: listener.port },
    {
      certPem: ctl.chainPem,
      keyPem: ctl.keyPem,
      caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
      trust: fleet.trust,
    },
    log,
  );
  return {
    fleet,
    policy,
    port: listener.port,
    logs,
    client,
    echoPort: (echo.addr as Deno.NetAddr).port,
    async close() {
      await within(client.close(), WAIT_MS, "the egress client to close");
      await within(listener.close(), WAIT_MS, "the relay's egress listener to close");
      echo.close();
      await within(serving.catch(() => {}), WAIT_MS, "the echo server to stop");
    },
  };
}

/** Sends `data` down an egress stream and reads back up to data.length bytes. */
async function roundTrip(
  stream: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
  data: Uint8Array,
) {
  const w = stream.writable.getWriter();
  const reading = (async () => {
    const parts: Uint8Array[] = [];
    let n = 0;
    try {
      for await (const c of stream.readable) {
        parts.push(c);
        n += c.length;
        if (n >= data.length) break;
      }
    } catch {
      // reset by the relay
    }
    const out = new Uint8Array(n);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  })();
  await within(w.write(data).catch(() => {}), WAIT_MS, "a write on the egress stream");
  return await within(reading, WAIT_MS, "the egress stream's answer (or its end)");
}

Deno.test({
  name: "egress: refuses what the allow-list lacks, connects what it names, reports dial failures",
  ...opts,
  fn: async () => {
    const e = await egressSetup();
    try {
      const payload = new Uint8Array(1 << 20).map((_, i) => i & 0xff);
      // Empty allow-list: the relay never dials.
      const refused = await roundTrip(
        await dial(e, "127.0.0.1", e.echoPort),
        new Uint8Array([1, 2, 3]),
      );
      assert.equal(refused.length, 0);
      await until(
        () => e.logs.some((l) => l.includes("not in the controller's allow-list")),
        WAIT_MS,
        "refusal log",
      );

      // The controller names the node; now it works both ways.
      assert.equal(
        await push(e, {
          v: 1,
          revision: 1,
          revoked_serials: [],
          egress_allow: [`127.0.0.1:${e.echoPort}`],
        }),
        "ok",
      );
      assert.ok(e.policy.allows("127.0.0.1", e.echoPort));
      const back = await roundTrip(await dial(e, "127.0.0.1", e.echoPort), payload);
      assert.deepEqual(back, payload);

      // Another port on the same host is still refused.
      assert.equal(
        (await roundTrip(await dial(e, "127.0.0.1", e.echoPort + 1), new Uint8Array([9])))
          .length,
        0,
      );

      // An allowed target that is down: the stream closes, the reason is logged.
      const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const deadPort = (closed.addr as Deno.NetAddr).port;
      closed.close();
      await push(e, {
        v: 1,
        revision: 2,
        revoked_serials: [],
        egress_allow: [`127.0.0.1:${deadPort}`],
      });
      assert.equal(
        (await roundTrip(await dial(e, "127.0.0.1", deadPort), new Uint8Array([7]))).length,
        0,
      );
      await until(
        () => e.logs.some((l) => l.includes("egress dial failed")),
        WAIT_MS,
        "dial failure log",
      );
      // Revision 2 replaced the allow-list: the echo server is no longer allowed.
      assert.equal(e.policy.allows("127.0.0.1", e.echoPort), false);

      // Stale and malformed policies are answered and change nothing: a stale one is
      // answered "stale" with the revision the relay holds, never "ok".
      assert.equal(
        await push(e, {
          v: 1,
          revision: 1,
          revoked_serials: [],
          egress_allow: [`127.0.0.1:${e.echoPort}`],
        }),
        "stale: 2",
      );
      assert.equal(e.policy.revision, 2);
      const bad = await push(
        e,
        { v: 1, revision: 3, revoked_serials: [], egress_allow: ["no port here"] } as any,
      );
      assert.match(bad, /^error: .*not host:port/);
      assert.equal(e.policy.revision, 2);
    } finally {
      await e.close();
    }
  },
});

Deno.test({
  name: "egress: only a controller certificate may open an egress session",
  ...opts,
  fn: async () => {
    const e = await egressSetup();
    try {
      for (
        const leaf of [
          await e.fleet.issue({ kind: "node", host: "203.0.113.4" }),
          await e.fleet.issue({ kind: "relay", hosts: ["r.example"] }),
          await e.fleet.issue({ kind: "device", name: "phone" }),
          await (await makeFleet()).issue({ kind: "controller-client" }),
        ]
      ) {
        assert.equal(await holdsPort(e.fleet, e.port, leaf), false);
      }
      // The same probe with the controller's own kind of certificate succeeds.
      const ctl = await e.fleet.issue({ kind: "controller-client" });
      assert.equal(await holdsPort(e.fleet, e.port, ctl), true);
    } finally {
      await e.close();
    }
  },
});

Deno.test({
  name: "legacy: an original controller's unmarked certificate holds the tunnel only when pinned",
  ...opts,
  fn: async () => {
    const fleet = await makeFleet();
    const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
    const legacy = await issueLegacyControllerCert(fleet);
    const unpinned = await issueLegacyControllerCert(fleet);
    const quiet = createLogger("legacy", { sink: () => {} });
    const listen = (pins: Set<string>) => {
      const policy = new RelayPolicy();
      return testControllerListener(fleet, relayLeaf, {
        policy,
        log: quiet,
        legacyControllerPins: pins,
        onController: (socket) => void serveEgress(nodeToWeb(socket), { policy, log: quiet }),
      });
    };
    const off = await within(listen(new Set()), WAIT_MS, "a listener without pins");
    const on = await within(
      listen(new Set([await caFingerprintOf(legacy)])),
      WAIT_MS,
      "a listener with a pin",
    );
    try {
      assert.equal(await holdsPort(fleet, off.port, legacy), false, "off by default");
      assert.equal(
        await holdsPort(fleet, on.port, legacy),
        true,
        "the pinned certificate is admitted",
      );
      assert.equal(
        await holdsPort(fleet, on.port, unpinned),
        false,
        "one pin admits one certificate",
      );
    } finally {
      await within(off.close(), WAIT_MS, "the listener without pins to close");
      await within(on.close(), WAIT_MS, "the listener with a pin to close");
    }
  },
});

async function caFingerprintOf(leaf: IssuedLeaf): Promise<string> {
  const { caFingerprint } = await import("../../core/pki/mod.ts");
  return await caFingerprint(leaf.cert);
}
