/**
 * A cycle against the relay's events in the order that hurts, made
 * deterministic by a scripted relay (the real controller-only listener and
 * TunnelSlot; the test decides what happens to each controller connection):
 * the old session closes before the controller reads the new session's
 * answer; the new session dies right after the relay took it; stop() comes
 * while the new session waits for its answer.
 */
import assert from "node:assert/strict";
import type tls from "node:tls";
import { createLogger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { RelayPolicy } from "../../core/relay_policy.ts";
import { listenForController } from "../../relay/controller_listener.ts";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import { TunnelSlot } from "../../relay/tunnel.ts";
import { type Fleet, makeFleet } from "../support/pki_fixture.ts";
import { controllerTunnel, waitForCode, withCode } from "../support/tunnel_cycle.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
/** Beyond any wait here: whatever happens in a test does not come from this clock. */
const NEVER_MS = 10 * WAIT_MS;

/** Resolves once `socket` is fully closed. */
function closedSocket(socket: tls.TLSSocket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((r) => socket.once("close", () => r()));
}

/**
 * The relay's tunnel listener and slot; `script(i, socket)` handles the i-th
 * verified controller connection (attach it to the slot, hold it, drop it).
 */
async function scriptedRelay(
  fleet: Fleet,
  script: (i: number, socket: tls.TLSSocket, slot: TunnelSlot) => void | Promise<void>,
) {
  const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
  const logs: string[] = [];
  const log = createLogger("relay", { sink: (l) => logs.push(l) });
  const slot = new TunnelSlot(new RelayPolicy(), log, { drainGraceMs: NEVER_MS });
  const sockets: tls.TLSSocket[] = [];
  const serials: string[] = [];
  const listener = await within(
    listenForController({
      listen: { hostname: "127.0.0.1", port: 0 },
      certPem: relayLeaf.chainPem,
      keyPem: relayLeaf.keyPem,
      fleetCaPem: pki.certPem(fleet.pki.fleet.cert),
      trust: fleet.trust,
      revoked: new RelayPolicy().revoked,
      log,
      onController: (socket, who) => {
        socket.on("error", () => {});
        sockets.push(socket);
        serials.push(who.serial);
        void script(sockets.length - 1, socket, slot);
      },
    }),
    WAIT_MS,
    "the relay's tunnel listener",
  );
  return {
    slot,
    logs,
    sockets,
    serials,
    port: listener.port,
    async close() {
      for (const s of sockets) s.destroy();
      await within(listener.close(), WAIT_MS, "the relay's tunnel listener to close");
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
    },
  };
}

/** Our controller's tunnel client; no redial comes from its backoff within a test. */
async function cyclingController(fleet: Fleet, port: number) {
  const leaf = await fleet.issue({ kind: "controller-client" });
  const logs: string[] = [];
  const { client, accepted, identity } = controllerTunnel(fleet, port, leaf, {
    policy: () => ({ v: 1, revision: 1, revoked_serials: [], egress_allow: [] }),
    logs,
    backoff: { initialMs: NEVER_MS, maxMs: NEVER_MS, stableMs: NEVER_MS },
    keepAliveIntervalMs: 0,
    pingTimeoutMs: NEVER_MS,
  });
  await within(client.whenUp(), WAIT_MS, "the tunnel");
  return {
    client,
    logs,
    accepted,
    /** Renews the certificate in place and tells the client; returns the new serial. */
    async renew(): Promise<string> {
      const renewed = await fleet.issue({ kind: "controller-client" });
      identity.certPem = renewed.chainPem;
      identity.keyPem = renewed.keyPem;
      client.renewed();
      return pki.serialOf(renewed.cert);
    },
  };
}

const msgs = (logs: string[]) => logs.map((l) => JSON.parse(l).msg as string);

Deno.test({
  name:
    "tunnel cycle race: the old session closing before the new one's answer is read does not take the tunnel down; the new session is kept",
  ...opts,
  fn: async () => {
    const fleet = await makeFleet();
    const relay = await scriptedRelay(fleet, async (i, socket, slot) => {
      if (i === 1) {
        // The old session is closed (as the relay's drain closes an idle one)
        // and the controller has seen it end before the new session answers.
        const old = relay.sockets[0];
        old.end();
        await within(closedSocket(old), WAIT_MS, "the old session to close on both ends");
      }
      slot.attach(nodeToWeb(socket), { keepAliveIntervalMs: 0 });
    });
    const c = await cyclingController(fleet, relay.port);
    try {
      const newSerial = await c.renew();
      const cycled = await waitForCode(c.logs, "tunnel-cycled", "the cycle");
      assert.equal(cycled.new_serial, newSerial);
      assert.equal(relay.sockets.length, 2, "no redial");
      assert.ok(!msgs(c.logs).includes("relay tunnel down"), "the controller saw no outage");
      const st = c.client.status;
      assert.equal(st.state, "up");
      assert.equal(st.cycles, 1);
      assert.equal(st.controllerSerial, newSerial);
      // The relay's tunnel is the new session, and it carries new work.
      assert.ok(relay.slot.connected);
      (await within(relay.slot.dial(), WAIT_MS, "a backend dial")).destroy();
      await until(() => c.accepted.length === 1, WAIT_MS, "the controller to get the substream");
      assert.equal(relay.sockets[1].destroyed, false, "the new session stays open");
    } finally {
      await within(c.client.stop(), WAIT_MS, "the tunnel client to stop");
      await relay.close();
    }
  },
});

Deno.test({
  name:
    "tunnel cycle race: the new session dying right after the relay took it makes the controller redial at once (the old one got a go-away)",
  ...opts,
  fn: async () => {
    const fleet = await makeFleet();
    const relay = await scriptedRelay(fleet, (i, socket, slot) => {
      slot.attach(nodeToWeb(socket), { keepAliveIntervalMs: 0 });
      // The relay took the new session, which dies at once: it has no usable tunnel.
      if (i === 1) socket.destroy();
    });
    const c = await cyclingController(fleet, relay.port);
    await until(() => relay.slot.connected, WAIT_MS, "the relay to take the tunnel");
    // A call in flight on the old session: it drains, it is not closed.
    const held = await within(relay.slot.dial(), WAIT_MS, "a backend dial held on the old session");
    held.on("error", () => {});
    try {
      await until(() => c.accepted.length === 1, WAIT_MS, "the held substream");
      const newSerial = await c.renew();
      // Only an immediate redial comes within the wait: the backoff is NEVER_MS.
      await until(() => relay.sockets.length === 3, WAIT_MS, "the controller's redial");
      assert.equal(relay.serials[2], newSerial, "the redial presents the renewed certificate");
      await waitForCode(c.logs, "tunnel-cycle-failed", "the failed cycle");
      await until(() => c.client.state === "up", WAIT_MS, "the tunnel to be up again");
      assert.equal(relay.slot.draining, 1, "the old session still finishes its call");
      (await within(relay.slot.dial(), WAIT_MS, "a backend dial")).destroy();
      await until(() => c.accepted.length === 2, WAIT_MS, "new work on the redialled session");
      assert.equal(c.client.status.controllerSerial, newSerial);
    } finally {
      held.destroy();
      await within(c.client.stop(), WAIT_MS, "the tunnel client to stop");
      await relay.close();
    }
  },
});

Deno.test({
  name:
    "tunnel cycle race: a go-away on the live session after a failed cycle reached the relay makes the controller redial at once",
  ...opts,
  fn: async () => {
    const fleet = await makeFleet();
    let releaseGoAway = () => {};
    const relay = await scriptedRelay(fleet, async (i, socket, slot) => {
      if (i !== 1) return slot.attach(nodeToWeb(socket), { keepAliveIntervalMs: 0 });
      // The cycle's connection dies before the relay answers on it; only then
      // does the relay take it (its go-away reaches the old session late).
      socket.destroy();
      await new Promise<void>((r) => releaseGoAway = r);
      slot.attach(nodeToWeb(socket), { keepAliveIntervalMs: 0 });
    });
    const c = await cyclingController(fleet, relay.port);
    await until(() => relay.slot.connected, WAIT_MS, "the relay to take the tunnel");
    const held = await within(relay.slot.dial(), WAIT_MS, "a backend dial held on the old session");
    held.on("error", () => {});
    try {
      await until(() => c.accepted.length === 1, WAIT_MS, "the held substream");
      await c.renew();
      const failed = await waitForCode(c.logs, "tunnel-cycle-failed", "the failed cycle");
      assert.equal(failed.old_session, undefined, "the relay still used the old session then");
      assert.equal(c.client.state, "up");
      releaseGoAway();
      await waitForCode(c.logs, "tunnel-replaced", "the go-away on the live session");
      await until(() => relay.sockets.length === 3, WAIT_MS, "the controller's redial");
      await until(() => c.client.state === "up" && relay.slot.connected, WAIT_MS, "up again");
      (await within(relay.slot.dial(), WAIT_MS, "a backend dial")).destroy();
      await until(() => c.accepted.length === 2, WAIT_MS, "new work on the redialled session");
    } finally {
      held.destroy();
      await within(c.client.stop(), WAIT_MS, "the tunnel client to stop");
      await relay.close();
    }
  },
});

Deno.test({
  name: "tunnel cycle race: stop() while the new session waits for its answer closes it",
  ...opts,
  fn: async () => {
    const fleet = await makeFleet();
    // The cycle's connection is held and never answered (its ping waits NEVER_MS).
    const relay = await scriptedRelay(fleet, (i, socket, slot) => {
      if (i === 0) slot.attach(nodeToWeb(socket), { keepAliveIntervalMs: 0 });
      else socket.resume(); // read, so that its end is seen
    });
    const c = await cyclingController(fleet, relay.port);
    try {
      await c.renew();
      await until(() => relay.sockets.length === 2, WAIT_MS, "the cycle's connection");
      assert.equal(c.client.status.cycling, true);
      await within(c.client.stop(), WAIT_MS, "the tunnel client to stop");
      await within(closedSocket(relay.sockets[1]), WAIT_MS, "the cycle's connection to close");
      await within(closedSocket(relay.sockets[0]), WAIT_MS, "the live connection to close");
      assert.equal(withCode(c.logs, "tunnel-cycled").length, 0);
    } finally {
      await within(c.client.stop(), WAIT_MS, "the tunnel client to stop");
      await relay.close();
    }
  },
});
