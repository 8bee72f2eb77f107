/**
 * Reseals of many profiles asked for while one runs, on the real accounts
 * service: the running one may already have sealed some users with the
 * state from before the request, so one follow-up is queued (and further
 * requests, from POST /api/profiles/reseal or a node's endpoints PATCH,
 * join it); the audit names the admin who asked. Stopping the operations
 * (the controller shutting down) ends a reseal between two devices.
 * Counting: active devices without a user are not planned; every failure
 * of reprovisionAll is logged, past the progress events' cap.
 */
import assert from "node:assert/strict";
import { type App, createApp } from "../../controller/api/app.ts";
import { statement } from "../../controller/db/sqlite.ts";
import type { ResealProgress } from "../../controller/onboarding/events.ts";
import { createLogger } from "../../core/log.ts";
import {
  type AccountsFixture,
  accountsFixture,
  ADMIN,
  claimOf,
  clientKeys,
} from "../support/accounts_fixture.ts";
import { call, login, type Session, setupAdmin } from "../support/api_fixture.ts";
import { eventually } from "../support/agent_harness.ts";

interface Op {
  id?: string;
  status: "running" | "done" | "failed";
  error: string | null;
  events: ResealProgress[];
}

async function enroll(fx: AccountsFixture, email: string): Promise<string> {
  const t = fx.accounts.createTicket(email, { actor: ADMIN, unbound: true });
  const token = new URL(t.url).searchParams.get("token")!;
  return (await fx.accounts.claim(claimOf(token, await clientKeys()))).deviceId;
}

function revisions(fx: AccountsFixture): Map<string, number> {
  const rows = statement(fx.state.db, "SELECT device_id, revision FROM sealed_profiles")
    .all() as { device_id: string; revision: number }[];
  return new Map(rows.map((r) => [r.device_id, Number(r.revision)]));
}

async function opOf(app: App, s: Session, id: string): Promise<Op> {
  return await (await call(app, "GET", `/api/operations/${id}`, s)).json();
}

async function ended(app: App, s: Session, id: string): Promise<Op> {
  let op = await opOf(app, s, id);
  const ok = await eventually(
    async () => (op = await opOf(app, s, id)).status !== "running",
    60_000,
    20,
  );
  assert.ok(ok, `operation ${id} ended: ${JSON.stringify(op)}`);
  return op;
}

async function setup(logs?: string[]) {
  const fx = await accountsFixture(
    logs ? { log: createLogger("accounts", { level: "debug", sink: (l) => logs.push(l) }) } : {},
  );
  const app = createApp({
    state: fx.state,
    accounts: fx.accounts,
    log: createLogger("api-reseal-queue-test", { level: "error", sink: () => {} }),
    passwordCost: { memoryKiB: 1024, iterations: 1 },
  });
  await setupAdmin(app);
  const s = await login(app);
  return { fx, app, s };
}

/** Holds every reseal of many profiles until released (each call gets the next gate). */
function gateReseals(fx: AccountsFixture) {
  const real = fx.accounts.resealProfiles.bind(fx.accounts);
  const releases: (() => void)[] = [];
  let began = 0;
  fx.accounts.resealProfiles = async (opts) => {
    began++;
    await new Promise<void>((r) => releases.push(r));
    return await real(opts);
  };
  return {
    get began() {
      return began;
    },
    release: () => releases.shift()?.(),
    restore: () => fx.accounts.resealProfiles = real,
  };
}

Deno.test({
  name: "api reseal queue: a request while one runs queues one follow-up; more join it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { fx, app, s } = await setup();
    try {
      const nodeId = fx.addNode("fra-1");
      fx.accounts.createUser(ADMIN, "alice@example.net");
      const alice = await enroll(fx, "alice@example.net");
      const before = revisions(fx).get(alice)!;
      const gate = gateReseals(fx);
      const post = async () => {
        const r = await call(app, "POST", "/api/profiles/reseal", { ...s, body: {} });
        assert.equal(r.status, 202);
        return (await r.json()).operation_id as string;
      };
      const first = await post();
      const second = await post();
      const third = await post();
      assert.notEqual(second, first, "asked while one runs: a follow-up");
      assert.equal(third, second, "asked again: joins the queued follow-up");
      // A node's endpoints change (every profile lists every node) joins it too.
      const node = await (await call(app, "GET", `/api/nodes/${nodeId}`, s)).json();
      const patched = await call(app, "PATCH", `/api/nodes/${nodeId}/endpoints`, {
        ...s,
        body: { endpoints: ["203.0.113.99:51820"], version: node.version },
      });
      assert.equal(patched.status, 200, await patched.clone().text());
      assert.equal((await patched.json()).operation_id, second);
      const queued = await opOf(app, s, second);
      assert.equal(queued.status, "running");
      assert.deepEqual(queued.events, [], "the follow-up has not begun");
      assert.equal(gate.began, 1, "one reseal at a time");

      gate.release();
      assert.equal((await ended(app, s, first)).status, "done");
      assert.ok(await eventually(() => Promise.resolve(gate.began === 2), 30_000, 20));
      gate.release();
      gate.restore();
      const follow = await ended(app, s, second);
      assert.equal(follow.status, "done", JSON.stringify(follow));
      assert.equal(revisions(fx).get(alice), before + 2, "resealed twice, not four times");
      // The audit names the admin, whoever's request (the PATCH too) the follow-up served.
      const actors = statement(
        fx.state.db,
        "SELECT actor FROM audit_log WHERE action = 'sealed_profile.seal' ORDER BY seq DESC LIMIT 2",
      ).all() as { actor: string }[];
      assert.equal(actors.length, 2);
      for (const a of actors) assert.match(a.actor, /^api:user:/);
    } finally {
      app.close();
      await app.operations.close();
      await fx.close();
    }
  },
});

Deno.test({
  name: "api reseal queue: the endpoints PATCH reseal is audited as the admin",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { fx, app, s } = await setup();
    try {
      const nodeId = fx.addNode("fra-1");
      fx.accounts.createUser(ADMIN, "bob@example.net");
      await enroll(fx, "bob@example.net");
      const node = await (await call(app, "GET", `/api/nodes/${nodeId}`, s)).json();
      const patched = await call(app, "PATCH", `/api/nodes/${nodeId}/endpoints`, {
        ...s,
        body: { endpoints: ["203.0.113.99:51820"], version: node.version },
      });
      assert.equal(patched.status, 200);
      const op = await ended(app, s, (await patched.json()).operation_id);
      assert.equal(op.status, "done");
      const last = statement(
        fx.state.db,
        "SELECT actor FROM audit_log WHERE action = 'sealed_profile.seal' ORDER BY seq DESC LIMIT 1",
      ).get() as { actor: string };
      assert.match(last.actor, /^api:user:/, "not system:accounts");
    } finally {
      app.close();
      await fx.close();
    }
  },
});

Deno.test({
  name: "api reseal queue: stopping the operations ends a reseal between two devices",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { fx, app, s } = await setup();
    try {
      fx.addNode("fra-1");
      fx.accounts.createUser(ADMIN, "alice@example.net");
      fx.accounts.createUser(ADMIN, "bob@example.net");
      const devices = [
        await enroll(fx, "alice@example.net"),
        await enroll(fx, "alice@example.net"),
        await enroll(fx, "bob@example.net"),
      ];
      const before = revisions(fx);
      // The controller stops while the first device is being reported.
      const real = fx.accounts.resealProfiles.bind(fx.accounts);
      let closing: Promise<void> | undefined;
      fx.accounts.resealProfiles = (opts = {}) =>
        real({
          ...opts,
          emit: (e) => {
            opts.emit?.(e);
            if (e.status === "progress" && !closing) closing = app.operations.close();
          },
        });
      const r = await call(app, "POST", "/api/profiles/reseal", { ...s, body: {} });
      const id = (await r.json()).operation_id;
      assert.ok(await eventually(() => Promise.resolve(closing !== undefined), 30_000, 20));
      await closing;
      const op = app.operations.get(id)!;
      assert.equal(op.status, "failed", "ended before close() returned");
      assert.match(op.error ?? "", /controller shut down/);
      const after = revisions(fx);
      const resealed = devices.filter((d) => after.get(d) === before.get(d)! + 1);
      assert.equal(resealed.length, 1, "only the device before the stop was resealed");
      // Asked after the stop: fails at once.
      const late = await call(app, "POST", "/api/profiles/reseal", { ...s, body: {} });
      assert.equal(app.operations.get((await late.json()).operation_id)!.status, "failed");
    } finally {
      app.close();
      await fx.close();
    }
  },
});

Deno.test({
  name: "reseal counting: devices without a user are not planned; every failure is logged",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const logs: string[] = [];
    const { fx, app } = await setup(logs);
    try {
      fx.addNode("fra-1");
      fx.accounts.createUser(ADMIN, "alice@example.net");
      const many = 22; // more than the progress events name (MAX_FAILED_EVENTS = 20)
      const devices: string[] = [];
      for (let i = 0; i < many; i++) devices.push(await enroll(fx, "alice@example.net"));
      // One device loses its user (as after a user's removal): active, but nobody's.
      const orphan = devices.pop()!;
      statement(fx.state.db, "UPDATE devices SET user_id = NULL WHERE id = ?").run(orphan);
      const events: ResealProgress[] = [];
      const r = await fx.accounts.resealProfiles({ emit: (e) => events.push(e) });
      assert.deepEqual(r, { total: many - 1, failed: 0 }, "the orphan is not counted");
      assert.equal(events.at(-1)!.message, `${many - 1} of ${many - 1} devices resealed`);

      // Every device's preshared keys broken: each failure logged, not only the first 20.
      statement(fx.state.db, "UPDATE node_peers SET psk_sealed = ? WHERE device_id != ?")
        .run(crypto.getRandomValues(new Uint8Array(60)), orphan);
      logs.length = 0;
      await assert.rejects(fx.accounts.reprovisionAll(), /21 of 21 device profiles/);
      const failures = logs.map((l) => JSON.parse(l)).filter((l) => l.code === "reseal-failed");
      assert.deepEqual(
        failures.map((l) => l.device).sort(),
        [...devices].sort(),
        "one log line per failed device",
      );
    } finally {
      app.close();
      await fx.close();
    }
  },
});
