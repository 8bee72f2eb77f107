// deno-lint-ignore-file no-explicit-any
/**
 * Reverse tunnel and control-plane egress: only the controller may hold
 * either, the tunnel survives cuts and relay restarts, and egress dials only
 * what the controller's allow-list names.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { EgressClient } from "../../controller/relay/egress_client.ts";
import { createLogger } from "../../core/log.ts";
import { MuxSession } from "../../core/mux/mod.ts";
import { certPem } from "../../core/pki/mod.ts";
import { RelayPolicy } from "../../core/relay_policy.ts";
import { serveEgress } from "../../relay/egress.ts";
import { nodeToWeb } from "../../relay/web_node.ts";
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
import { until } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

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
  const ok = await new Promise<boolean>((resolve) => {
    socket.once("secureConnect", () => resolve(true));
    socket.once("close", () => resolve(false));
  });
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
    await session.close();
    socket.destroy();
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
    await t.slot.close();
    await until(
      () => t.client.sessions >= 2 && t.slot.connected,
      10_000,
      "the controller to redial",
    );
    assert.equal((await unary(h.client(), "Unary", { text: "two" })).res.text, "two");
    // Restart of the relay's listener on the same port.
    await t.restartRelay();
    await until(
      () => t.client.sessions >= 3 && t.slot.connected,
      10_000,
      "the controller to redial after restart",
    );
    assert.equal((await unary(h.client(), "Unary", { text: "three" })).res.text, "three");
  },
);

tunnelTest(
  "tunnel: a second controller session replaces the first instead of being locked out",
  async (h, t, accept) => {
    const second = await h.fleet.issue({ kind: "controller-client" });
    // A second controller process dialling the same relay.
    const { TunnelClient } = await import("../../controller/relay/tunnel_client.ts");
    const other = new TunnelClient({
      target: { host: "127.0.0.1", port: t.port },
      identity: {
        certPem: second.chainPem,
        keyPem: second.keyPem,
        caPem: h.fleet.rootPem + certPem(h.fleet.pki.fleet.cert),
        trust: h.fleet.trust,
      },
      accept: accept,
      policy: () => ({ v: 1, revision: 100, revoked_serials: [], egress_allow: [] }),
      log: createLogger("second", { sink: () => {} }),
      backoff: { initialMs: 60_000, maxMs: 60_000, stableMs: 1 },
    });
    other.start();
    await other.whenUp();
    await until(
      () => t.logs.some((l) => l.includes("replaces the previous one")),
      5000,
      "replacement",
    );
    assert.equal(
      (await unary(h.client(), "Unary", { text: "via second" })).res.text,
      "via second",
    );
    await other.stop();
  },
);

/** A relay harness whose transport is a real tunnel; `fn` gets both, plus the backend's accept. */
function tunnelTest(
  name: string,
  fn: (h: Harness, t: TunnelFixture, accept: (c: any) => void) => Promise<void>,
): void {
  Deno.test({
    name,
    ...opts,
    fn: async () => {
      let t: TunnelFixture | undefined;
      let accept: ((c: any) => void) | undefined;
      const h = await relayHarness(async (a, f, r) => {
        accept = a;
        t = await startTunnel(a, f, r);
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
  const listener = await testControllerListener(fleet, relayLeaf, {
    policy,
    log,
    onController: (socket) =>
      void serveEgress(nodeToWeb(socket), { policy, log, dialTimeoutMs: 2000 }),
  });
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
      await client.close();
      await listener.close();
      echo.close();
      await serving.catch(() => {});
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
  await w.write(data).catch(() => {});
  return await reading;
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
        await e.client.dial("127.0.0.1", e.echoPort),
        new Uint8Array([1, 2, 3]),
      );
      assert.equal(refused.length, 0);
      await until(
        () => e.logs.some((l) => l.includes("not in the controller's allow-list")),
        3000,
        "refusal log",
      );

      // The controller names the node; now it works both ways.
      assert.equal(
        await e.client.pushPolicy({
          v: 1,
          revision: 1,
          revoked_serials: [],
          egress_allow: [`127.0.0.1:${e.echoPort}`],
        }),
        "ok",
      );
      assert.ok(e.policy.allows("127.0.0.1", e.echoPort));
      const back = await roundTrip(await e.client.dial("127.0.0.1", e.echoPort), payload);
      assert.deepEqual(back, payload);

      // Another port on the same host is still refused.
      assert.equal(
        (await roundTrip(await e.client.dial("127.0.0.1", e.echoPort + 1), new Uint8Array([9])))
          .length,
        0,
      );

      // An allowed target that is down: the stream closes, the reason is logged.
      const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const deadPort = (closed.addr as Deno.NetAddr).port;
      closed.close();
      await e.client.pushPolicy({
        v: 1,
        revision: 2,
        revoked_serials: [],
        egress_allow: [`127.0.0.1:${deadPort}`],
      });
      assert.equal(
        (await roundTrip(await e.client.dial("127.0.0.1", deadPort), new Uint8Array([7]))).length,
        0,
      );
      await until(
        () => e.logs.some((l) => l.includes("egress dial failed")),
        3000,
        "dial failure log",
      );
      // Revision 2 replaced the allow-list: the echo server is no longer allowed.
      assert.equal(e.policy.allows("127.0.0.1", e.echoPort), false);

      // Stale and malformed policies are answered and change nothing: a stale one is
      // answered "stale" with the revision the relay holds, never "ok".
      assert.equal(
        await e.client.pushPolicy({
          v: 1,
          revision: 1,
          revoked_serials: [],
          egress_allow: [`127.0.0.1:${e.echoPort}`],
        }),
        "stale: 2",
      );
      assert.equal(e.policy.revision, 2);
      const bad = await e.client.pushPolicy(
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
    const off = await listen(new Set());
    const on = await listen(new Set([await caFingerprintOf(legacy)]));
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
      await off.close();
      await on.close();
    }
  },
});

async function caFingerprintOf(leaf: IssuedLeaf): Promise<string> {
  const { caFingerprint } = await import("../../core/pki/mod.ts");
  return await caFingerprint(leaf.cert);
}
