// deno-lint-ignore-file no-explicit-any
/**
 * Endpoint diversity end to end (CONTRACTS.md §5.7): PATCH
 * /api/nodes/{id}/endpoints on the controller → reconcile (following the
 * audit log) pushes NetworkConfig.endpoint_ranges → the agent in its
 * namespace holds one DNAT rule per range in its real nat table and says
 * which ranges it serves. The pushed ranges replace the agent's own
 * --endpoint-ips/--endpoint-ports, which come back when the controller
 * clears the pool; a bad push changes nothing; a killed agent restarted
 * with no controller re-applies the pushed ranges from disk. Profiles
 * advertise a range only once the agent confirmed it: a pool changed while
 * no reconcile runs is not in them until the agent has it.
 */
import assert from "node:assert/strict";
import { createApp } from "../../controller/api/app.ts";
import { Reconciler } from "../../controller/reconcile/reconciler.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { accountsFixture } from "../support/accounts_fixture.ts";
import { advertisedEndpoints, enrollDevice } from "../support/advertised_endpoints.ts";
import { agentCapability, eventually, labTest, startNodeAgent } from "../support/agent_harness.ts";
import { call, login, setupAdmin } from "../support/api_fixture.ts";
import { DirectNodeCaller } from "../support/direct_node_caller.ts";

const cap = agentCapability("e2e agent endpoint ranges");
const WAIT_MS = 60_000;
const ACTOR = "cli:test";

/** A DNAT rule of the nat table as iptables-save prints it. */
const dnat = (ip: string, ports: string) =>
  `-A PREROUTING -d ${ip}/32 -p udp -m udp --dport ${ports} -m addrtype --dst-type LOCAL -j DNAT --to-destination ${ip}:443`;

labTest(
  "e2e endpoints: PATCH …/endpoints puts DNAT rules in the node's nat table; flags are the fallback; cold start keeps them",
  cap.ignore,
  async (lab) => {
    const ns = await lab.ns("ep");
    // The node's own addresses: the agent forwards (and confirms) ranges only on these.
    for (const ip of ["192.0.2.1", "192.0.2.5", "192.0.2.6", "192.0.2.9"]) {
      await lab.exec(ns, ["ip", "addr", "add", `${ip}/32`, "dev", "lo"]);
    }
    // The agent's own flags: the fallback while the controller sends no ranges.
    const { agent, pki } = await startNodeAgent(lab, ns, {
      extra: ["--endpoint-ips", "192.0.2.9", "--endpoint-ports", "3000-3010"],
    });
    const natRules = async () =>
      (await lab.exec(ns, ["iptables-save", "-t", "nat"])).split("\n")
        .filter((l) => l.includes("DNAT")).sort();
    const detail = async () => (await agent.call("GetStatus", {})).services[0].detail as string;
    assert.deepEqual(await natRules(), [dnat("192.0.2.9", "3000:3010")], "flags at start");

    const f = await accountsFixture();
    const app = createApp({
      state: f.state,
      accounts: f.accounts,
      passwordCost: { memoryKiB: 1024, iterations: 1 },
    });
    const service = new Service(f.state.db);
    const caller = new DirectNodeCaller({
      rootPem: pki.fleet.rootPem,
      chainPem: pki.controller.chainPem,
      keyPem: pki.controller.keyPem,
    });
    let rec: Reconciler | null = null;
    try {
      const nodeId = f.addNode("ep-1");
      // Onboarded (as SSH onboarding leaves it); no default route in the namespace: no masquerade.
      service.mutate(
        { actor: ACTOR, action: "node.onboard", target: { type: "node", id: nodeId } },
        (tx) => tx.update({ status: "active", onboarding: "done", cert_pem: "(test)" }),
      );
      new Nodes(service).setPolicy(ACTOR, nodeId, { masquerade: false });
      caller.set(nodeId, { target: `unix:${agent.socket}`, serverName: "localhost" });
      // Profiles advertise what the agent confirmed: reconcile reseals them when that changes.
      const reconciler = () =>
        new Reconciler({
          service,
          caller,
          sealer: f.state.keystore,
          intervalMs: 3_600_000,
          followAuditMs: 200,
          resealProfiles: (signal) => f.accounts.reprovisionAll(signal),
        });
      const device = await enrollDevice(f);
      const host = new Nodes(service).require(nodeId).host;
      const advertised = async () => (await advertisedEndpoints(f, device)).nodes.get(nodeId);
      /** Waits (bounded) until the profile advertises `want`; fails with what it shows. */
      const advertises = async (want: string[], why: string) => {
        let seen: string[] | undefined;
        assert.ok(
          await eventually(async () => {
            seen = await advertised();
            return JSON.stringify(seen) === JSON.stringify(want);
          }, WAIT_MS),
          `${why}: the profile advertises ${JSON.stringify(seen)}`,
        );
      };
      rec = reconciler();
      rec.start();
      await rec.idle();
      assert.deepEqual(await natRules(), [dnat("192.0.2.9", "3000:3010")], "none pushed: flags");
      assert.match(
        await detail(),
        /UDP 3000-3010 on 192\.0\.2\.9 forwarded to :443 \(from local flags\)/,
      );

      await setupAdmin(app);
      const s = await login(app);
      const patch = async (endpoints: string[]) => {
        const version = new Nodes(service).require(nodeId).version;
        const r = await call(app, "PATCH", `/api/nodes/${nodeId}/endpoints`, {
          ...s,
          body: { endpoints, version },
        });
        assert.equal(r.status, 200, await r.clone().text());
        return await r.json();
      };
      await patch(["192.0.2.1:443", "192.0.2.1:2000-60000", "192.0.2.5:40000-40100"]);
      // 192.0.2.1:443 is the listener itself: no rule. The flags' range is gone.
      const pushed = [dnat("192.0.2.1", "2000:60000"), dnat("192.0.2.5", "40000:40100")].sort();
      let seen: string[] = [];
      assert.ok(
        await eventually(async () => {
          seen = await natRules();
          return JSON.stringify(seen) === JSON.stringify(pushed);
        }, WAIT_MS),
        `nat table: ${seen.join("\n")}`,
      );
      assert.match(
        await detail(),
        /UDP 2000-60000 on 192\.0\.2\.1, UDP 40000-40100 on 192\.0\.2\.5.* \(from the controller\)/,
      );
      assert.equal(rec.stats().sweeps, 1, "pushed by the change, not by a sweep");
      // The agent confirmed all three (the listener's own 192.0.2.1:443 too): all advertised.
      await advertises(
        ["192.0.2.1:443", "192.0.2.1:2000-60000", "192.0.2.5:40000-40100"],
        "confirmed by the agent",
      );

      // A bad push straight to the node (two ranges sharing ports): INVALID_ARGUMENT, nothing changes.
      const bad = await agent.call("SetNetworkConfig", {
        config: {
          forwarding: true,
          endpoint_ranges: [
            { ip: "192.0.2.1", port_min: 2000, port_max: 3000 },
            { ip: "192.0.2.1", port_min: 2500, port_max: 2600 },
          ],
        },
      }).then(() => null, (e: any) => e);
      assert.equal(bad?.code, 3, String(bad?.details));
      assert.match(bad.details, /config\.endpoint_ranges\[1\]: .*overlap 2000-3000/);
      assert.deepEqual(await natRules(), pushed, "a refused push changes nothing");

      // Killed and restarted with no controller: the pushed ranges come back from disk.
      await rec.stop();
      rec = null;
      caller.drop(nodeId);
      await agent.crash();
      await lab.exec(ns, ["iptables", "-t", "nat", "-F", "PREROUTING"]); // as after a reboot
      await agent.start();
      assert.deepEqual(await natRules(), pushed, "re-applied at start");

      // A range added while no reconcile runs: the PATCH's reseal leaves it out (the agent
      // has not confirmed it), and the agent has no rule for it. 198.51.100.77 is not the
      // node's address (a typo, or an attack like 1.1.1.1:53): never DNATed nor confirmed.
      const added = await patch([
        "192.0.2.1:443",
        "192.0.2.1:2000-60000",
        "192.0.2.5:40000-40100",
        "192.0.2.6:7000-7100",
        "198.51.100.77:5000-5010",
      ]);
      let op = "running";
      assert.ok(
        await eventually(async () => {
          const r = await call(app, "GET", `/api/operations/${added.operation_id}`, s);
          op = (await r.json()).status;
          return op !== "running";
        }, WAIT_MS),
        "the PATCH's reseal to end",
      );
      assert.equal(op, "done");
      assert.deepEqual(
        await advertised(),
        ["192.0.2.1:443", "192.0.2.1:2000-60000", "192.0.2.5:40000-40100"],
        "192.0.2.6 not confirmed yet: not advertised",
      );
      assert.deepEqual(await natRules(), pushed);
      // Reconcile runs again: the agent gets the range, DNATs it, confirms it, profiles follow.
      rec = reconciler();
      rec.start();
      await rec.idle();
      assert.ok(
        (await natRules()).includes(dnat("192.0.2.6", "7000:7100")),
        "the agent has the added range",
      );
      await advertises(
        ["192.0.2.1:443", "192.0.2.1:2000-60000", "192.0.2.5:40000-40100", "192.0.2.6:7000-7100"],
        "confirmed after the push; the foreign address not advertised",
      );
      assert.deepEqual(
        (await natRules()).filter((l) => l.includes("198.51.100.77")),
        [],
        "no rule for an address that is not the node's",
      );
      const row = f.state.db.prepare(
        "SELECT ranges FROM node_endpoint_confirmations WHERE node_id = ?",
      ).get(nodeId) as { ranges: string };
      assert.ok(!row.ranges.includes("198.51.100.77"), `confirmed: ${row.ranges}`);

      // Cleared on the controller: an empty list is pushed and the flags apply again.
      await patch([]);
      assert.ok(
        await eventually(
          async () =>
            JSON.stringify(await natRules()) === JSON.stringify([dnat("192.0.2.9", "3000:3010")]),
          WAIT_MS,
        ),
        "cleared: the flags' range again",
      );
      // No pool: the host at 443 (the flags' range the agent confirms is not the pool's).
      await advertises([`${host}:443`], "no pool");

      // The attack straight to the node: `1.1.1.1:53` on a forwarding node would send every
      // client's DNS to the listener. Not the node's address: no rule, not confirmed, shown.
      const res = await agent.call("SetNetworkConfig", {
        config: {
          forwarding: true,
          endpoint_ranges: [
            { ip: "1.1.1.1", port_min: 53, port_max: 53 },
            { ip: "192.0.2.1", port_min: 443, port_max: 443 },
          ],
        },
      });
      assert.deepEqual(
        res.endpoint_ranges.map((r: any) => `${r.ip}:${r.port_min}-${r.port_max}`),
        ["192.0.2.1:443-443"],
      );
      assert.deepEqual(await natRules(), [], "no DNAT rule at all (443 is the listener itself)");
      assert.match(await detail(), /endpoints on 1\.1\.1\.1 not forwarded \(not this host's/);
    } finally {
      await rec?.stop();
      caller.close();
      app.close();
      await f.close();
    }
  },
);
