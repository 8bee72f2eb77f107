/**
 * A node marked "via relay" is driven through that relay's control-plane
 * egress (a real relay process, a real agent): the relay gets the
 * allow-list built from the node table (only that relay's nodes), the
 * call goes through, and when the node is disabled the relay is told at
 * once — a dial to the node's address through its egress is then refused.
 */
import assert from "node:assert/strict";
import { createLogger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { type FleetDriver, startFleetDriver } from "../../controller/fleet/driver.ts";
import { EgressClient } from "../../controller/relay/egress_client.ts";
import { egressAllowFromNodes } from "../../controller/relay/policy_source.ts";
import { Service } from "../../controller/service/service.ts";
import { serviceCert } from "../../controller/service_certs.ts";
import { agentCapability, eventually, labTest } from "../support/agent_harness.ts";
import {
  closeForwarders,
  controllerState,
  registerNode,
  registerRelay,
  startFleetNode,
  startRelayProcess,
  stateFleet,
  TEST_ACTOR,
} from "../support/fleet.ts";

const cap = agentCapability("integration fleet via relay egress");
const WAIT = 30_000;

labTest(
  "integration fleet: a node via a relay is reached through its egress; the allow-list follows the node table",
  cap.ignore,
  async (lab) => {
    const state = await controllerState(lab.tmp);
    let driver: FleetDriver | undefined;
    let probe: EgressClient | undefined;
    try {
      const fleet = await stateFleet(state);
      const relay = await startRelayProcess(lab, fleet);
      const relayId = registerRelay(state, {
        host: "127.0.0.1",
        cert: relay.leaf.cert,
        egressPort: relay.egressPort,
      });
      const node = await startFleetNode(lab, state, fleet, "r", { viaRelay: relayId });
      // A node dialled directly: never on the relay's list.
      const direct = await fleet.fleet.issue({ kind: "node", host: "localhost" });
      registerNode(state, {
        name: `direct-${lab.id}`,
        host: "192.0.2.77",
        port: 8444,
        cert: direct.cert,
      });
      const target = `127.0.0.1:${node.port}`;
      assert.deepEqual(egressAllowFromNodes(state.db, relayId), [target]);

      driver = await startFleetDriver(state, { pollIntervalMs: 500 });
      const status = await driver.call(node.id, "GetStatus", {});
      assert.equal(typeof status.agent_version, "string");
      await relay.proc.line(new RegExp(`"msg":"egress connected".*"target":"${target}"`), WAIT);
      assert.ok(
        await eventually(() => driver!.status(node.id)?.health === "healthy", WAIT),
        "the relayed node is healthy",
      );

      // The node is disabled: the driver lets it go and the relay hears its new (empty) list.
      const cert = await serviceCert(state, "controller-client");
      probe = new EgressClient(
        { host: "127.0.0.1", port: relay.egressPort },
        {
          certPem: cert.chainPem,
          keyPem: cert.keyPem,
          caPem: pki.certPem(state.pki.cas.root.cert) + pki.certPem(state.pki.cas.fleet.cert),
          trust: state.pki.trust,
        },
        createLogger("probe", { level: "error" }),
      );
      new Service(state.db).mutate(
        { actor: TEST_ACTOR, action: "node.disable", target: { type: "node", id: node.id } },
        (tx) => tx.update({ status: "disabled" }),
      );
      assert.deepEqual(egressAllowFromNodes(state.db, relayId), []);
      assert.ok(
        await eventually(() => !driver!.nodeIds().includes(node.id), WAIT),
        "the driver dropped the disabled node",
      );
      const refusedBefore = relay.proc.err.concat(relay.proc.out)
        .filter((l) => l.includes("not in the controller's allow-list")).length;
      assert.ok(
        await eventually(async () => {
          const s = await probe!.dial("127.0.0.1", node.port);
          await s.readable.cancel().catch(() => {});
          return relay.proc.err.concat(relay.proc.out)
            .filter((l) => l.includes("not in the controller's allow-list")).length >
            refusedBefore;
        }, WAIT),
        "the relay refuses the disabled node's address",
      );
    } finally {
      await probe?.close();
      await driver?.stop();
      closeForwarders();
      state.close();
    }
  },
);
