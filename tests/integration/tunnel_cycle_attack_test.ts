/**
 * The security rules of tunnel replacement and draining (relay/tunnel.ts),
 * with real TLS on loopback: the relay's controller-only listener and
 * TunnelSlot, and two controller TunnelClients with different valid
 * controller certificates (A, then B: a cycle, or a hijack with a stolen
 * but valid certificate, look the same to the relay). The newest session
 * always wins at once; the replaced one gets no new work, cannot push a
 * policy that would lock the newest out, and once its certificate is
 * revoked it is closed and cannot come back. An original Go relay (one
 * controller connection at a time) is not cycled.
 */
import assert from "node:assert/strict";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import type { PushOutcome } from "../../controller/relay/tunnel_client.ts";
import { createLogger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { type PolicyDocument, RelayPolicy } from "../../core/relay_policy.ts";
import { listenForController } from "../../relay/controller_listener.ts";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import { startRelay } from "../../relay/relay.ts";
import { TunnelSlot } from "../../relay/tunnel.ts";
import { startEchoBackend } from "../support/echo_backend.ts";
import { startOriginalRelay } from "../support/original_relay.ts";
import { type Fleet, type IssuedLeaf, makeFleet } from "../support/pki_fixture.ts";
import { deviceClient } from "../support/relay_harness.ts";
import { controllerTunnel, openBidi, waitForCode, withCode } from "../support/tunnel_cycle.ts";
import { closeClients, until, WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** A controller's tunnel client presenting `leaf` (substreams counted, or served by `serve`). */
function controller(
  fleet: Fleet,
  port: number,
  leaf: IssuedLeaf,
  policy: () => PolicyDocument,
  logs: string[],
  serve?: (c: Duplex) => void,
) {
  return controllerTunnel(fleet, port, leaf, { policy, logs, serve });
}

Deno.test({
  name:
    "tunnel cycle attack: a replaced session gets no new streams, cannot push a policy revoking the newest, and once revoked cannot come back",
  ...opts,
  fn: async () => {
    const fleet = await makeFleet();
    const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
    const relayLogs: string[] = [];
    const relayLog = createLogger("relay", { sink: (l) => relayLogs.push(l) });
    const policy = new RelayPolicy();
    // A long grace: whatever ends the replaced session here is not the clock.
    const slot = new TunnelSlot(policy, relayLog, { drainGraceMs: 10 * WAIT_MS });
    const serials: string[] = [];
    const listener = await within(
      listenForController({
        listen: { hostname: "127.0.0.1", port: 0 },
        certPem: relayLeaf.chainPem,
        keyPem: relayLeaf.keyPem,
        fleetCaPem: pki.certPem(fleet.pki.fleet.cert),
        trust: fleet.trust,
        revoked: policy.revoked,
        log: relayLog,
        onController: (socket, who) => {
          serials.push(who.serial);
          slot.attach(nodeToWeb(socket), { serial: who.serial });
        },
      }),
      WAIT_MS,
      "the relay's tunnel listener",
    );
    const leafA = await fleet.issue({ kind: "controller-client" });
    const leafB = await fleet.issue({ kind: "controller-client" });
    const serialA = pki.serialOf(leafA.cert);
    const serialB = pki.serialOf(leafB.cert);
    let revision = 0;
    const doc = (revoked: string[]): PolicyDocument => ({
      v: 1,
      revision: ++revision,
      revoked_serials: revoked,
      egress_allow: [],
    });
    let attack = false;
    const logsA: string[] = [];
    const logsB: string[] = [];
    const a = controller(
      fleet,
      listener.port,
      leafA,
      // The attack: a revision far ahead, revoking the newest controller.
      () => attack ? { ...doc([serialB]), revision: 1_000_000 } : doc([]),
      logsA,
    );
    const revokedByB: string[] = [];
    let b: ReturnType<typeof controller> | undefined;
    let heldOnA: Duplex | undefined;
    try {
      await within(a.client.whenUp(), WAIT_MS, "A's tunnel");
      await until(() => a.client.status.policy.lastAnswer === "ok", WAIT_MS, "A's first policy");
      // A call in flight on A: once replaced, A's session drains (it is not
      // idle, so the relay keeps it) until something closes it.
      heldOnA = await within(slot.dial(), WAIT_MS, "a backend dial held on A");
      heldOnA.on("error", () => {});
      await until(() => a.accepted.length === 1, WAIT_MS, "A to get the held substream");

      // B dials: the relay switches to it at once and drains A.
      b = controller(fleet, listener.port, leafB, () => doc([...revokedByB]), logsB);
      await within(b.client.whenUp(), WAIT_MS, "B's tunnel");
      const start = await waitForCode(relayLogs, "tunnel-drain-start", "A's drain");
      assert.equal(start.serial, serialA);
      assert.equal(start.new_serial, serialB);
      assert.deepEqual(serials, [serialA, serialB]);
      await until(() => b!.client.status.policy.lastAnswer === "ok", WAIT_MS, "B's first policy");
      const revisionBefore = policy.revision;

      // A, replaced, pushes a policy revoking B: refused, nothing applied.
      attack = true;
      const outcome: PushOutcome = await within(a.client.pushPolicy(), WAIT_MS, "A's push");
      assert.equal(outcome, "failed");
      assert.equal(policy.revoked.has(serialB), false);
      assert.equal(policy.revision, revisionBefore);

      // New work (backend substreams) goes to B only.
      for (let i = 0; i < 3; i++) (await within(slot.dial(), WAIT_MS, "a backend dial")).destroy();
      await until(() => b!.accepted.length === 3, WAIT_MS, "B to get the three substreams");
      assert.equal(a.accepted.length, 1, "the replaced session got no new stream");
      assert.equal(slot.draining, 1, "A's session drains (its call is still open)");
      await until(
        () => withCode(logsA, "tunnel-replaced").length === 1,
        WAIT_MS,
        "A to see the relay's go-away (it does not take the tunnel back)",
      );
      assert.deepEqual(serials, [serialA, serialB]);

      // B revokes A's certificate: A's draining session is closed at once, and A's
      // redials are refused before they can replace B.
      revokedByB.push(serialA);
      assert.equal(await within(b.client.pushPolicy(), WAIT_MS, "B's push"), "ok");
      const end = await waitForCode(relayLogs, "tunnel-drain-end", "A's session to close");
      assert.equal(end.serial, serialA);
      // Closed by the revocation (the listener drops the connection), not drained nor timed out.
      const revokedLine = await waitForCode(relayLogs, "controller-revoked", "A's revocation");
      assert.equal(revokedLine.serial, serialA);
      assert.equal(end.reason, "ended");
      assert.ok(
        relayLogs.findIndex((l) => l.includes('"controller-revoked"')) <
          relayLogs.findIndex((l) => l.includes('"tunnel-drain-end"')),
        "the revocation closed A's session before its drain ended",
      );
      await until(
        () => relayLogs.some((l) => l.includes("refused a non-controller connection")),
        WAIT_MS,
        "the relay to refuse A's redial",
      );
      assert.deepEqual(serials, [serialA, serialB], "A never took the tunnel back");
      assert.equal(slot.draining, 0);
      assert.ok(slot.connected);
      (await within(slot.dial(), WAIT_MS, "a backend dial")).destroy();
      await until(() => b!.accepted.length === 4, WAIT_MS, "B to keep getting new work");
      assert.equal(a.accepted.length, 1);
      assert.equal(b.client.status.state, "up");
    } finally {
      heldOnA?.destroy();
      for (const s of [...a.accepted, ...(b?.accepted ?? [])]) s.destroy();
      await within(a.client.stop(), WAIT_MS, "A to stop");
      await within(b?.client.stop() ?? Promise.resolve(), WAIT_MS, "B to stop");
      await within(listener.close(), WAIT_MS, "the relay's tunnel listener to close");
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
    }
  },
});

Deno.test({
  name:
    "tunnel cycle: an original relay is not cycled on renewal (it takes one controller connection at a time); the session stays up",
  ...opts,
  fn: async () => {
    const fleet = await makeFleet();
    const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
    const original = await within(
      startOriginalRelay(fleet, relayLeaf),
      WAIT_MS,
      "the original relay to start",
    );
    const first = await fleet.issue({ kind: "controller-client" });
    const logs: string[] = [];
    const c = controller(fleet, original.port, first, () => doc(), logs);
    let revision = 0;
    function doc(): PolicyDocument {
      return { v: 1, revision: ++revision, revoked_serials: [], egress_allow: [] };
    }
    try {
      await within(c.client.whenUp(), WAIT_MS, "the tunnel to the original relay");
      await until(() => original.sessions === 1, WAIT_MS, "the original relay's session");
      assert.equal(c.client.status.relay, "original");

      // The controller's certificate is renewed.
      const renewed = await fleet.issue({ kind: "controller-client" });
      c.identity.certPem = renewed.chainPem;
      c.identity.keyPem = renewed.keyPem;
      c.client.renewed();
      const skipped = await waitForCode(logs, "tunnel-cycle-skipped", "the cycle to be skipped");
      assert.equal(skipped.note, c.client.status.note);
      assert.equal(original.sessions, 1, "no second connection to the original relay");
      assert.equal(c.client.status.state, "up");
      assert.equal(c.client.status.cycles, 0);
      assert.equal(c.client.status.controllerSerial, pki.serialOf(first.cert));
    } finally {
      await within(c.client.stop(), WAIT_MS, "the tunnel client to stop");
      await within(original.close(), WAIT_MS, "the original relay to close");
    }
  },
});

/** The serial of the certificate a TLS server on 127.0.0.1:`port` presents. */
async function serverSerial(port: number, client: IssuedLeaf): Promise<string> {
  const socket = tls.connect({
    host: "127.0.0.1",
    port,
    cert: client.chainPem,
    key: client.keyPem,
    rejectUnauthorized: false,
    ALPNProtocols: ["h2"],
  });
  socket.on("error", () => {});
  try {
    await within(
      new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", resolve);
        socket.once("error", reject);
      }),
      WAIT_MS,
      "a TLS handshake with the gRPC server",
    );
    return pki.serialOf(pki.parseCertificate(new Uint8Array(socket.getPeerCertificate().raw)));
  } finally {
    socket.destroy();
  }
}

Deno.test({
  name:
    "tunnel cycle attack: a revoked controller server certificate drops the retired backend session too, not only the live one",
  ...opts,
  fn: async () => {
    const fleet = await makeFleet();
    // The controller's gRPC server, reached with inner TLS (no plain HTTP/2 here).
    const backend = await startEchoBackend(fleet);
    const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1", "localhost"] });
    const grpcSerial = await serverSerial(await backend.listenTcp(), relayLeaf);
    const relayLogs: string[] = [];
    const relayLog = createLogger("relay", { sink: (l) => relayLogs.push(l) });
    const policy = new RelayPolicy();
    const slot = new TunnelSlot(policy, relayLog, { drainGraceMs: 10 * WAIT_MS });
    const listener = await within(
      listenForController({
        listen: { hostname: "127.0.0.1", port: 0 },
        certPem: relayLeaf.chainPem,
        keyPem: relayLeaf.keyPem,
        fleetCaPem: pki.certPem(fleet.pki.fleet.cert),
        trust: fleet.trust,
        revoked: policy.revoked,
        log: relayLog,
        onController: (socket, who) => slot.attach(nodeToWeb(socket), { serial: who.serial }),
      }),
      WAIT_MS,
      "the relay's tunnel listener",
    );
    const relay = await within(
      startRelay({
        listen: { hostname: "127.0.0.1", port: 0 },
        certPem: relayLeaf.chainPem,
        keyPem: relayLeaf.keyPem,
        caPem: fleet.rootPem + pki.certPem(fleet.pki.fleet.cert),
        deviceCaPem: pki.certPem(fleet.pki.device.cert),
        trust: fleet.trust,
        revoked: policy.revoked,
        transport: slot,
        log: relayLog,
      }),
      WAIT_MS,
      "the relay's client listener",
    );
    let revision = 0;
    const revoked: string[] = [];
    const doc = (): PolicyDocument => ({
      v: 1,
      revision: ++revision,
      revoked_serials: [...revoked],
      egress_allow: [],
    });
    const serve = (c: Duplex) => backend.accept(c);
    const a = controller(
      fleet,
      listener.port,
      await fleet.issue({ kind: "controller-client" }),
      doc,
      [],
      serve,
    );
    let b: ReturnType<typeof controller> | undefined;
    const device = await fleet.issue({ kind: "device", name: "phone" });
    const client = deviceClient(fleet, device, relay.port);
    let held: ReturnType<typeof openBidi> | undefined;
    try {
      await within(a.client.whenUp(), WAIT_MS, "A's tunnel");
      await until(() => slot.connected, WAIT_MS, "the relay to take A's tunnel");
      held = openBidi(client);
      await held.say("HELD"); // the echo answers in capitals

      // B replaces A: the backend session carrying the held call is retired, not cut.
      b = controller(
        fleet,
        listener.port,
        await fleet.issue({ kind: "controller-client" }),
        doc,
        [],
        serve,
      );
      await within(b.client.whenUp(), WAIT_MS, "B's tunnel");
      await waitForCode(relayLogs, "tunnel-drain-start", "A's drain");
      await held.say("STILL");

      // The gRPC server's certificate is revoked: every backend session that verified
      // it is dropped at once, the retired one included.
      revoked.push(grpcSerial);
      assert.equal(await within(b.client.pushPolicy(), WAIT_MS, "B's push"), "ok");
      await until(
        () => relayLogs.some((l) => l.includes("retired backend session closed")),
        WAIT_MS,
        "the relay to drop the retired backend session",
      );
      assert.notEqual((await held.ended()).code, 0, "the call on the retired session ends");
      held = undefined;
    } finally {
      held?.cancel();
      await closeClients([client], relay);
      await within(relay.close(), WAIT_MS, "the relay's client listener to close");
      await within(a.client.stop(), WAIT_MS, "A to stop");
      await within(b?.client.stop() ?? Promise.resolve(), WAIT_MS, "B to stop");
      await within(listener.close(), WAIT_MS, "the relay's tunnel listener to close");
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
      backend.close();
    }
  },
});
