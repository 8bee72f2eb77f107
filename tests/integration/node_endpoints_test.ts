/**
 * A node's endpoints (its endpoint-diversity pool: public IPs and UDP port
 * ranges) set with `cox nodes endpoints` and PATCH /api/nodes/{id}/endpoints,
 * both through the one service: checked, written canonically with an audit
 * entry and a raised desired revision (the reconcile loop, following the
 * audit log, pushes it to the node), and every profile resealed. Profiles
 * advertise only the part of the pool the node confirmed (CONTRACTS.md §5.7):
 * until it does, the host at 443. Bad input is refused with a clear message
 * and writes nothing; a stale version is a conflict (CLI exit 1, API 409).
 */
import assert from "node:assert/strict";
import { createApp } from "../../controller/api/app.ts";
import { createLogger } from "../../core/log.ts";
import { withDashboard } from "../../ui/server.ts";
import { runCli } from "../../controller/cli/run.ts";
import { AuditFollower } from "../../controller/reconcile/changes.ts";
import { recordConfirmedRanges } from "../../controller/reconcile/writes.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { type AmneziaWgProtocol, decodeProfileDocument } from "../../core/profile/mod.ts";
import { openProfile } from "../../core/seal/mod.ts";
import {
  type AccountsFixture,
  accountsFixture,
  ADMIN,
  claimOf,
  type ClientKeys,
  clientKeys,
  fingerprintOf,
} from "../support/accounts_fixture.ts";
import { call, login, setupAdmin } from "../support/api_fixture.ts";
import { eventually } from "../support/abuse.ts";
import { WAIT_MS } from "../support/wait.ts";

interface Enrolled {
  fp: string;
  keys: ClientKeys;
  signing: Uint8Array;
}

/** A node whose AmneziaWG key is known (in the table too, as the CLI reads it) and one enrolled device. */
async function nodeAndDevice(f: AccountsFixture): Promise<{ nodeId: string; device: Enrolled }> {
  const nodeId = f.addNode("fra-1");
  await f.accounts.nodeKeyObserved(nodeId, f.nodeKeys.get(nodeId)!);
  f.accounts.createUser(ADMIN, "ann@example.com");
  const t = f.accounts.createTicket("ann@example.com", { actor: ADMIN, unbound: true });
  const keys = await clientKeys();
  const r = await f.accounts.claim(claimOf(new URL(t.url).searchParams.get("token")!, keys));
  return {
    nodeId,
    device: { fp: await fingerprintOf(r.deviceCertPem), keys, signing: r.signingPublicKey },
  };
}

/** The device's current profile: its revision and what it says about node `nodeId`. */
async function profileOf(f: AccountsFixture, d: Enrolled, nodeId: string) {
  const prof = await f.accounts.getProfile({ fingerprint: d.fp });
  const doc = decodeProfileDocument(
    await openProfile(prof.ciphertext, d.keys.encryption.privateKey, d.signing),
  );
  const node = doc.profiles[0].nodes.find((n) => n.id === nodeId)!;
  const awg = node.protocols.find((p) =>
    !("opaque" in p) && p.type === "amneziawg"
  ) as AmneziaWgProtocol;
  return {
    revision: prof.revision,
    ips: node.endpoints,
    pools: awg.params.endpoints?.map((e) => ({
      ip: e.ip,
      port_min: e.port_min,
      port_max: e.port_max,
    })),
  };
}

function auditCount(f: AccountsFixture, action: string): number {
  return (f.state.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE action = ?").get(
    action,
  ) as { n: number }).n;
}

async function cox(f: AccountsFixture, ...args: string[]) {
  const out: string[] = [], err: string[] = [];
  const code = await runCli(
    [...args, "--state", `${f.dir}/state`],
    { out: (s) => void out.push(s), err: (s) => void err.push(s) },
    () => undefined,
  );
  return { code, out: out.join(""), err: err.join("") };
}

Deno.test("cox nodes endpoints: set, shown, pushed and resealed; --clear; bad input and a stale version change nothing", async () => {
  const f = await accountsFixture();
  try {
    const { nodeId, device } = await nodeAndDevice(f);
    const nodes = new Nodes(new Service(f.state.db));
    const before = nodes.require(nodeId);
    const first = await profileOf(f, device, nodeId);
    assert.deepEqual(first.ips, [before.host], "no endpoints: the host");
    // What the running controller's reconcile loop follows.
    const follower = new AuditFollower(f.state.db, "system:reconcile");

    const set = await cox(
      f,
      "nodes",
      "endpoints",
      "fra-1",
      "198.51.100.7:443",
      "[2001:DB8::1]:40000-40100",
    );
    assert.equal(set.code, 0, set.err);
    assert.equal(
      set.out,
      `node fra-1: endpoints 198.51.100.7:443, [2001:db8::1]:40000-40100 (version ${
        before.version + 1
      }, desired revision ${
        before.desiredRevision + 1
      }); 1 device profiles resealed (ranges listed once the node confirms them)\n`,
    );
    const after = nodes.require(nodeId);
    assert.deepEqual(after.endpoints, [
      { ip: "198.51.100.7", portMin: 443, portMax: 443 },
      { ip: "2001:db8::1", portMin: 40000, portMax: 40100 },
    ]);
    assert.equal(after.desiredRevision, before.desiredRevision + 1, "the node must apply it");
    assert.equal(auditCount(f, "node.endpoints"), 1);
    assert.deepEqual([...follower.poll().nodes], [nodeId], "reconcile hears of the node");
    const resealed = await profileOf(f, device, nodeId);
    assert.ok(resealed.revision > first.revision, "a new profile revision");
    assert.deepEqual(resealed.ips, [before.host], "not confirmed by the node yet: the host");
    assert.deepEqual(resealed.pools, [{ ip: before.host, port_min: 443, port_max: 443 }]);
    // The node confirms part of the range (as reconcile records its answer): that part only.
    recordConfirmedRanges(new Service(f.state.db), "system:reconcile", nodeId, [
      { ip: "198.51.100.7", portMin: 443, portMax: 443 },
      { ip: "2001:db8::1", portMin: 40050, portMax: 40200 },
    ]);
    await f.accounts.reprovisionAll();
    const confirmed = await profileOf(f, device, nodeId);
    assert.deepEqual(confirmed.ips, ["198.51.100.7", "2001:db8::1"]);
    assert.deepEqual(confirmed.pools, [
      { ip: "198.51.100.7", port_min: 443, port_max: 443 },
      { ip: "2001:db8::1", port_min: 40050, port_max: 40100 },
    ]);
    const show = await cox(f, "nodes", "show", "fra-1");
    assert.match(show.out, /^endpoints: +198\.51\.100\.7:443, \[2001:db8::1\]:40000-40100$/m);

    // The same list again: nothing written, nothing resealed.
    const same = await cox(
      f,
      "nodes",
      "endpoints",
      "fra-1",
      "198.51.100.7:443",
      "[2001:db8::1]:40000-40100",
    );
    assert.equal(same.code, 0, same.err);
    assert.match(same.out, /; unchanged\n$/);
    assert.equal(auditCount(f, "node.endpoints"), 1);

    // Refused, each in one line, nothing written.
    const bad: [string[], number, RegExp][] = [
      [["vpn.example.com:443"], 1, /must hold an IP address, not a host name/],
      [["2001:db8::1:443"], 1, /IPv6 address without brackets/],
      [["198.51.100.7:0"], 1, /port must be 1-65535/],
      [["198.51.100.7:65536"], 1, /port must be 1-65535/],
      [["198.51.100.7:500-400"], 1, /the range runs backwards/],
      [["198.51.100.7:443", "198.51.100.7:443"], 1, /given twice/],
      [["198.51.100.7:2000-3000", "198.51.100.7:2500"], 1, /2500: .*overlap 2000-3000/],
      [["198.51.100.7:1-65535"], 1, /65535 ports, at most 60000/],
      [["198.51.100.7:100-2000"], 1, /reaches below 1024/],
      [Array.from({ length: 9 }, (_, i) => `198.51.100.${i + 1}:443`), 1, /at most 8/],
      [[], 2, /give the endpoints .* or --clear/],
      [["198.51.100.7:443", "--clear"], 2, /not both/],
      [["198.51.100.8:443", "--expect-version", String(before.version)], 1, /version/],
    ];
    for (const [args, code, message] of bad) {
      const r = await cox(f, "nodes", "endpoints", "fra-1", ...args);
      assert.equal(r.code, code, `${args.join(" ")}: ${r.err}`);
      assert.equal(r.err.trimEnd().split("\n").length, 1, r.err);
      assert.match(r.err, message);
      assert.equal(r.out, "");
    }
    assert.deepEqual(nodes.require(nodeId), after, "nothing changed");
    assert.equal(auditCount(f, "node.endpoints"), 1);

    const cleared = await cox(
      f,
      "nodes",
      "endpoints",
      "fra-1",
      "--clear",
      "--expect-version",
      String(after.version),
    );
    assert.equal(cleared.code, 0, cleared.err);
    assert.match(cleared.out, /endpoints none \(clients dial the host at 443\)/);
    assert.deepEqual(nodes.require(nodeId).endpoints, []);
    assert.deepEqual((await profileOf(f, device, nodeId)).ips, [before.host]);
  } finally {
    await f.close();
  }
});

Deno.test("api PATCH /api/nodes/{id}/endpoints: set with a reseal operation; bad input 400; stale version 409", async () => {
  const f = await accountsFixture();
  // With the dashboard: the node page shows what the API says profiles list.
  const app = await withDashboard((ui) =>
    createApp({
      state: f.state,
      ui,
      accounts: f.accounts,
      passwordCost: { memoryKiB: 1024, iterations: 1 },
    }), { log: createLogger("dashboard", { level: "error", sink: () => {} }) });
  try {
    const { nodeId, device } = await nodeAndDevice(f);
    await setupAdmin(app);
    const s = await login(app);
    const nodes = new Nodes(new Service(f.state.db));
    const before = nodes.require(nodeId);
    const first = await profileOf(f, device, nodeId);
    const patch = (body: unknown) =>
      call(app, "PATCH", `/api/nodes/${nodeId}/endpoints`, { ...s, body });

    const ok = await patch({ endpoints: ["203.0.113.99:51820-51830"], version: before.version });
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal(ok.headers.get("etag"), `"${before.version + 1}"`);
    const body = await ok.json();
    assert.deepEqual(body.node.endpoints, [
      { ip: "203.0.113.99", port_min: 51820, port_max: 51830 },
    ]);
    assert.equal(body.node.version, before.version + 1);
    // Nothing confirmed by the node yet: profiles list none of the pool, and the API says so.
    assert.deepEqual(body.node.endpoints_advertised, []);
    assert.equal(body.node.endpoints_confirmed_at, null);
    assert.equal(typeof body.operation_id, "string");
    const op = async () =>
      await (await call(app, "GET", `/api/operations/${body.operation_id}`, s)).json();
    let status = "running";
    await eventually(() => status !== "running", WAIT_MS, "the reseal to finish", async () => {
      status = (await op()).status;
    });
    assert.equal(status, "done", JSON.stringify(await op()));
    const resealed = await profileOf(f, device, nodeId);
    assert.ok(resealed.revision > first.revision);
    // Not confirmed by the node yet (no node here): the host at 443.
    assert.deepEqual(resealed.pools, [{ ip: before.host, port_min: 443, port_max: 443 }]);
    assert.equal(nodes.require(nodeId).desiredRevision, before.desiredRevision + 1);
    // Once the node confirms part of the range, GET shows the part profiles list.
    recordConfirmedRanges(new Service(f.state.db), "system:reconcile", nodeId, [
      { ip: "203.0.113.99", portMin: 51825, portMax: 51900 },
    ]);
    const shown = await (await call(app, "GET", `/api/nodes/${nodeId}`, s)).json();
    assert.deepEqual(shown.endpoints_advertised, [
      { ip: "203.0.113.99", port_min: 51825, port_max: 51830 },
    ]);
    assert.equal(typeof shown.endpoints_confirmed_at, "string");
    const page = await call(app, "GET", `/nodes/${nodeId}`, { cookie: s.cookie });
    assert.equal(page.status, 200);
    const row =
      (await page.text()).match(/<tr>(?:(?!<\/tr>).)*203\.0\.113\.99(?:(?!<\/tr>).)*<\/tr>/s)
        ?.[0] ?? "";
    assert.match(row, /51820–51830/);
    assert.match(row, /only 51825–51830/, row);
    const audit = f.state.db.prepare(
      "SELECT actor FROM audit_log WHERE action = 'node.endpoints'",
    ).all() as { actor: string }[];
    assert.equal(audit.length, 1);
    assert.match(audit[0].actor, /^api:user:/);

    const now = nodes.require(nodeId);
    const bad: [unknown, RegExp][] = [
      [{ endpoints: ["vpn.example.com:443"] }, /not a host name/],
      [{ endpoints: ["2001:db8::1:443"] }, /without brackets/],
      [{ endpoints: ["203.0.113.99:0"] }, /1-65535/],
      [{ endpoints: ["203.0.113.99:70000"] }, /1-65535/],
      [{ endpoints: ["[2001:db8::1]:443-80"] }, /runs backwards/],
      [{ endpoints: Array.from({ length: 9 }, (_, i) => `203.0.113.${i}:443`) }, /8/],
      [{ endpoints: ["203.0.113.99:443", "203.0.113.99:443"] }, /given twice/],
      [{ endpoints: ["[2001:db8::1]:40000-40100", "[2001:DB8::1]:40100"] }, /overlap 40000-40100/],
      [{ endpoints: ["203.0.113.99:1024-65535"] }, /64512 ports, at most 60000/],
      [{ endpoints: ["203.0.113.99:53-80"] }, /reaches below 1024/],
      [{ endpoints: "203.0.113.99:443" }, /endpoints/],
      [{ endpoints: [], extra: 1 }, /extra|unrecognized/i],
    ];
    for (const [b, message] of bad) {
      const r = await patch({ ...(b as object), version: now.version });
      assert.equal(r.status, 400, JSON.stringify(b));
      const e = (await r.json()).error;
      assert.equal(e.code, "invalid");
      assert.match(e.message, message, JSON.stringify(b));
    }

    // Stale: 409 with the node as it is; without any version: 428.
    const stale = await patch({ endpoints: [], version: before.version });
    assert.equal(stale.status, 409);
    const conflict = await stale.json();
    assert.equal(conflict.error.code, "conflict");
    assert.equal(conflict.current.version, now.version);
    const unversioned = await patch({ endpoints: [] });
    assert.equal(unversioned.status, 428);
    assert.deepEqual(nodes.require(nodeId), now, "nothing changed");
    assert.equal(auditCount(f, "node.endpoints"), 1);

    // The same list: 200, nothing written, no reseal.
    const same = await patch({ endpoints: ["203.0.113.99:51820-51830"], version: now.version });
    assert.equal(same.status, 200);
    assert.equal((await same.json()).operation_id, null);
    assert.equal(nodes.require(nodeId).version, now.version);
  } finally {
    app.close();
    await f.close();
  }
});
