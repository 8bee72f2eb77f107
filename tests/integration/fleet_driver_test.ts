/**
 * The fleet driver against real agents (each in its own namespace, reached
 * over loopback TCP like a node's control port):
 * - calls reach the agent over mTLS, and its WatchEvents events arrive;
 * - a server presenting another valid Fleet-CA node certificate than the
 *   pinned one is refused (identity-mismatch), and a node whose pinned
 *   certificate is a relay's or a device's is never dialled (bad-certificate,
 *   with an alert); a server offering only TLS 1.2 gets no connection;
 *   removing a node resolves the alerts the driver raised about it;
 * - 3 missed polls make a node `unreachable` with an open alert; when it
 *   answers again it is `active` and the alert resolved; every write is in
 *   the audit log as `system:fleet` and the chain verifies;
 * - a worker process that dies is restarted and calls work again.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { Alerts } from "../../controller/fleet/alerts.ts";
import {
  CERTIFICATE_ALERT,
  type FleetDriver,
  startFleetDriver,
  UNREACHABLE_ALERT,
} from "../../controller/fleet/driver.ts";
import { FleetError } from "../../controller/fleet/errors.ts";
import type { FleetEvent } from "../../controller/fleet/types.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import {
  agentCapability,
  eventually,
  labTest,
  psk,
  singleNodeClient,
  wgKeyPair,
} from "../support/agent_harness.ts";
import {
  closeForwarders,
  controllerState,
  registerNode,
  startFleetNode,
  stateFleet,
} from "../support/fleet.ts";
import { within } from "../support/wait.ts";

const cap = agentCapability("integration fleet driver");
const WAIT = 30_000;

async function failure(p: Promise<unknown>): Promise<FleetError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FleetError, `a FleetError, got ${e}`);
    return e;
  }
  assert.fail("the call succeeded");
}

function nodeStatus(
  driverDb: { prepare(s: string): { get(...a: unknown[]): unknown } },
  id: string,
) {
  return (driverDb.prepare("SELECT status FROM nodes WHERE id = ?").get(id) as { status: string })
    .status;
}

labTest(
  "integration fleet: calls reach a real agent; another certificate, a relay's or a device's is refused",
  cap.ignore,
  async (lab) => {
    const state = await controllerState(lab.tmp);
    let driver: FleetDriver | undefined;
    try {
      const fleet = await stateFleet(state);
      const node = await startFleetNode(lab, state, fleet, "a");
      // Same address, but the table pins another (valid, same CA) node certificate.
      const other = await fleet.fleet.issue({ kind: "node", host: "localhost" });
      const impostor = registerNode(state, {
        name: `impostor-${lab.id}`,
        host: "127.0.0.1",
        port: node.port,
        cert: other.cert,
      });
      const relayLeaf = await fleet.fleet.issue({ kind: "relay", hosts: ["localhost"] });
      const asRelay = registerNode(state, {
        name: `relay-cert-${lab.id}`,
        host: "127.0.0.1",
        port: node.port,
        cert: relayLeaf.cert,
      });
      const deviceLeaf = await fleet.fleet.issue({ kind: "device", name: "phone" });
      const asDevice = registerNode(state, {
        name: `device-cert-${lab.id}`,
        host: "127.0.0.1",
        port: node.port,
        cert: deviceLeaf.cert,
      });

      const events: FleetEvent[] = [];
      driver = await startFleetDriver(state, { pollIntervalMs: 300 });
      driver.subscribe((e) => events.push(e));

      const status = await driver.call(node.id, "GetStatus", {});
      assert.equal(typeof status.agent_version, "string");
      assert.ok((status.agent_version as string).length > 0);
      const peers = await driver.call(node.id, "ListPeers", {});
      assert.ok(Array.isArray(peers.peers));
      assert.ok(
        await eventually(
          () =>
            events.some((e) =>
              e.kind === "health" && e.nodeId === node.id && e.health === "healthy"
            ),
          WAIT,
        ),
        "a health event for the node",
      );
      // A WireGuard client handshakes with a peer added through the driver: the
      // agent's WatchEvents event reaches the driver's listeners.
      const c1 = await lab.ns("c1");
      await lab.link(c1, "192.0.2.2/30", node.ns, "192.0.2.1/30");
      const key = wgKeyPair(), secret = psk();
      const added = await driver.call(node.id, "AddPeer", {
        peer: {
          id: "peer-1",
          protocol: "PROTOCOL_AMNEZIAWG",
          public_key: key.pub,
          allowed_ips: ["10.8.0.2/32"],
          preshared_key: secret,
        },
      });
      assert.equal(added.applied, true);
      const serverKey = (status.amneziawg as { public_key: string }).public_key;
      await singleNodeClient(lab, c1, 1, { key, psk: secret, serverKey, routes: ["10.8.0.0/24"] });
      assert.ok(
        await eventually(async () => {
          await lab.ping(c1, "10.8.0.1"); // traffic into the tunnel starts a handshake
          return events.some((e) =>
            e.kind === "node-event" && e.nodeId === node.id && e.event.peer_id === key.pub
          );
        }, WAIT),
        "a WatchEvents event for the peer arrived",
      );

      const mismatch = await failure(driver.call(impostor, "GetStatus", {}, { timeoutMs: 5000 }));
      assert.equal(mismatch.code, "identity-mismatch", mismatch.message);
      for (const id of [asRelay, asDevice]) {
        const refused = await failure(driver.call(id, "GetStatus", {}));
        assert.equal(refused.code, "bad-certificate", refused.message);
        const alert = new Alerts(new Service(state.db)).open({
          kind: CERTIFICATE_ALERT,
          targetType: "node",
          targetId: id,
        });
        assert.ok(alert, "the refused node has an open alert");
      }
      assert.ok(!driver.nodeIds().includes(asRelay) && !driver.nodeIds().includes(asDevice));
      const unknown = await failure(driver.call(crypto.randomUUID(), "GetStatus", {}));
      assert.equal(unknown.code, "unknown-node");

      // The right certificate, but only TLS 1.2 on offer: no connection.
      const tls12Leaf = await fleet.fleet.issue({ kind: "node", host: "localhost" });
      const handshakeErrors: string[] = [];
      const tls12 = tls.createServer({
        key: tls12Leaf.keyPem,
        cert: tls12Leaf.chainPem,
        ca: fleet.fleet.rootPem,
        requestCert: true,
        maxVersion: "TLSv1.2",
      });
      tls12.on("tlsClientError", (e) => handshakeErrors.push(e.message));
      await new Promise<void>((r) => tls12.listen(0, "127.0.0.1", r));
      try {
        const old = registerNode(state, {
          name: `tls12-${lab.id}`,
          host: "127.0.0.1",
          port: (tls12.address() as { port: number }).port,
          cert: tls12Leaf.cert,
        });
        const refused = await failure(driver.call(old, "GetStatus", {}, { timeoutMs: 5000 }));
        assert.equal(refused.code, "unreachable", refused.message);
        assert.ok(handshakeErrors.length > 0, "the server saw the handshake fail");
      } finally {
        await new Promise((r) => tls12.close(r));
      }

      // Removing a node resolves what the driver raised about it.
      const alerts = new Alerts(new Service(state.db));
      const mismatchAlert = {
        kind: UNREACHABLE_ALERT,
        targetType: "node",
        targetId: impostor,
      } as const;
      assert.ok(
        await eventually(() => alerts.open(mismatchAlert) !== undefined, WAIT),
        "the impostor's address counts as unreachable",
      );
      new Nodes(new Service(state.db)).remove("cli:fleet-test", impostor);
      new Nodes(new Service(state.db)).remove("cli:fleet-test", asRelay);
      assert.ok(
        await eventually(
          () =>
            alerts.open(mismatchAlert) === undefined &&
            alerts.open({ kind: CERTIFICATE_ALERT, targetType: "node", targetId: asRelay }) ===
              undefined,
          WAIT,
        ),
        "the removed nodes' alerts are resolved",
      );

      // The worker dies: calls in flight get a retryable error, the next one works.
      const before = driver.workerStats.starts;
      driver.crashWorker();
      assert.ok(
        await eventually(async () => {
          try {
            await driver!.call(node.id, "GetStatus", {}, { timeoutMs: 5000 });
            return driver!.workerStats.starts > before;
          } catch (e) {
            assert.ok(e instanceof FleetError && e.retryable, String(e));
            return false;
          }
        }, WAIT),
        "calls work again after the worker was restarted",
      );
      assert.equal(driver.workerStats.crashes, 1);
    } finally {
      await driver?.stop();
      closeForwarders();
      state.close();
    }
  },
);

labTest(
  "integration fleet: 3 missed polls → unreachable + alert → active again, alert resolved",
  cap.ignore,
  async (lab) => {
    const state = await controllerState(lab.tmp);
    let driver: FleetDriver | undefined;
    try {
      const fleet = await stateFleet(state);
      const node = await startFleetNode(lab, state, fleet, "b");
      const events: FleetEvent[] = [];
      driver = await startFleetDriver(state, {
        pollIntervalMs: 200,
        pollTimeoutMs: 3000,
        backoffMaxMs: 800,
      });
      driver.subscribe((e) => events.push(e));
      const alerts = new Alerts(new Service(state.db));
      const subject = { kind: UNREACHABLE_ALERT, targetType: "node", targetId: node.id } as const;
      assert.ok(
        await eventually(() => driver!.status(node.id)?.health === "healthy", WAIT),
        "healthy first",
      );

      await within(node.agent.stop(), WAIT, "the agent to stop");
      assert.ok(
        await eventually(() => driver!.status(node.id)?.health === "unreachable", WAIT),
        "unreachable after the agent stopped",
      );
      assert.ok((driver.status(node.id)?.missed ?? 0) >= 3, "only after 3 missed polls");
      assert.equal(nodeStatus(state.db, node.id), "unreachable");
      const alert = alerts.open(subject);
      assert.ok(alert, "an open alert");
      assert.equal(alert.severity, "critical");
      assert.match(alert.message, /did not answer 3 polls/);

      await within(node.agent.start(), WAIT * 2, "the agent to start again");
      assert.ok(
        await eventually(() => driver!.status(node.id)?.health === "healthy", WAIT),
        "healthy again after the agent came back",
      );
      assert.equal(nodeStatus(state.db, node.id), "active");
      assert.equal(alerts.open(subject), undefined, "the alert is resolved");
      const all = alerts.list({ targetId: node.id, openOnly: false });
      assert.equal(all.length, 1);
      assert.ok(all[0].resolvedAt !== null);

      const healths = events.filter((e) => e.kind === "health" && e.nodeId === node.id)
        .map((e) => (e as { health: string }).health);
      assert.deepEqual(healths, ["healthy", "unreachable", "healthy"]);
      const fleetWrites = state.db.prepare(
        "SELECT action FROM audit_log WHERE actor = 'system:fleet' ORDER BY seq",
      ).all() as { action: string }[];
      const actions = fleetWrites.map((r) => r.action);
      for (const a of ["node.unreachable", "alert.open", "node.observe", "alert.resolve"]) {
        assert.ok(actions.includes(a), `audit has ${a}: ${actions.join(",")}`);
      }
      assert.equal(verifyAudit(state.db).ok, true);
    } finally {
      await driver?.stop();
      closeForwarders();
      state.close();
    }
  },
);
