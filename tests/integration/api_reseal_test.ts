/**
 * POST /api/profiles/reseal runs a reseal of many profiles as an
 * operation on the real accounts service (real keystore, sealing, SQLite):
 * 202 with an id, progress "n of m devices resealed" on GET
 * /api/operations/{id} and on the change feed, every profile's revision
 * one higher at the end, the audit log naming the admin. One user's
 * devices only with user_id; asking again while one runs queues one follow-up. A device
 * whose profile cannot be sealed is reported and does not stop the others.
 * Bad input is refused before anything starts.
 */
import assert from "node:assert/strict";
import { type App, createApp } from "../../controller/api/app.ts";
import type { FeedEvent } from "../../controller/api/feed.ts";
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
import { until } from "../support/wait.ts";

interface Op {
  status: "running" | "done" | "failed";
  kind: string;
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

/** Starts a reseal and waits (bounded) for its operation to end. */
async function reseal(app: App, s: Session, body: unknown): Promise<Op> {
  const res = await call(app, "POST", "/api/profiles/reseal", { ...s, body });
  assert.equal(res.status, 202, await res.clone().text());
  const { operation_id } = await res.json();
  let op: Op = { status: "running", kind: "", error: null, events: [] };
  const ended = await eventually(
    async () => {
      op = await (await call(app, "GET", `/api/operations/${operation_id}`, s)).json();
      return op.status !== "running";
    },
    60_000,
    20,
  );
  assert.ok(ended, `the reseal operation ended: ${JSON.stringify(op)}`);
  return op;
}

Deno.test({
  name: "api reseal: many profiles as an operation with progress; failures reported, rest go on",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const fx = await accountsFixture();
    const app = createApp({
      state: fx.state,
      accounts: fx.accounts,
      log: createLogger("api-reseal-test", { level: "error" }),
      passwordCost: { memoryKiB: 1024, iterations: 1 },
    });
    try {
      fx.addNode("fra-1");
      fx.addNode("ams-1");
      for (const email of ["alice@example.net", "bob@example.net"]) {
        fx.accounts.createUser(ADMIN, email);
      }
      const alice = [await enroll(fx, "alice@example.net"), await enroll(fx, "alice@example.net")];
      const bob = await enroll(fx, "bob@example.net");
      const all = [...alice, bob];
      await setupAdmin(app);
      const s = await login(app);
      const feed: FeedEvent[] = [];
      const sub = app.feed.subscribe((e) => feed.push(e));

      // Bad input starts nothing.
      const noCsrf = await call(app, "POST", "/api/profiles/reseal", {
        cookie: s.cookie,
        body: {},
      });
      assert.equal(noCsrf.status, 403);
      const unknown = await call(app, "POST", "/api/profiles/reseal", {
        ...s,
        body: { user_id: "nobody@example.net" },
      });
      assert.equal(unknown.status, 404);
      const stray = await call(app, "POST", "/api/profiles/reseal", {
        ...s,
        body: { everyone: true },
      });
      assert.equal(stray.status, 400);
      assert.equal((await stray.json()).error.code, "invalid");

      const before = revisions(fx);
      assert.deepEqual([...before.keys()].sort(), [...all].sort(), "each device has a profile");
      const op = await reseal(app, s, {});
      assert.equal(op.status, "done", JSON.stringify(op));
      assert.equal(op.kind, "profiles.reseal");
      assert.ok(op.events.every((e) => e.kind === "reseal" && e.total === 3));
      assert.equal(op.events[0].status, "started");
      const progress = op.events.filter((e) => e.status === "progress");
      assert.deepEqual(progress.map((e) => e.message), [
        "1 of 3 devices resealed",
        "2 of 3 devices resealed",
        "3 of 3 devices resealed",
      ]);
      const finished = op.events.at(-1)!;
      assert.deepEqual([finished.status, finished.done, finished.failed], ["finished", 3, 0]);
      assert.equal(finished.message, "3 of 3 devices resealed");
      const after = revisions(fx);
      for (const d of all) assert.equal(after.get(d), before.get(d)! + 1, `device ${d} resealed`);
      // The audit log names the admin who asked, for each device's new profile.
      const sealedBy = statement(
        fx.state.db,
        "SELECT actor FROM audit_log WHERE action = 'sealed_profile.seal' ORDER BY seq DESC LIMIT 3",
      ).all() as { actor: string }[];
      assert.equal(sealedBy.length, 3);
      for (const r of sealedBy) assert.match(r.actor, /^api:user:/);
      await until(
        () =>
          feed.some((e) =>
            e.type === "operation" && (e.data as ResealProgress).status === "finished"
          ),
        10_000,
        "the finished event on the feed",
      );
      assert.ok(
        feed.filter((e) => e.type === "operation").every((e) =>
          (e.data as ResealProgress).kind === "reseal"
        ),
      );

      // One user's devices only (by e-mail).
      const bobOnly = await reseal(app, s, { user_id: "bob@example.net" });
      assert.equal(bobOnly.status, "done");
      assert.equal(bobOnly.events.at(-1)!.message, "1 of 1 devices resealed");
      const afterBob = revisions(fx);
      assert.equal(afterBob.get(bob), after.get(bob)! + 1);
      for (const d of alice) assert.equal(afterBob.get(d), after.get(d), "alice's untouched");

      // While a reseal of all profiles runs (it may have sealed some users already), asking
      // again queues one follow-up; asking once more joins that follow-up.
      const realReseal = fx.accounts.resealProfiles.bind(fx.accounts);
      let release = () => {};
      const gate = new Promise<void>((r) => release = r);
      fx.accounts.resealProfiles = async (opts) => {
        await gate;
        return await realReseal(opts);
      };
      const first = await call(app, "POST", "/api/profiles/reseal", { ...s, body: {} });
      const again = await call(app, "POST", "/api/profiles/reseal", { ...s, body: {} });
      const more = await call(app, "POST", "/api/profiles/reseal", { ...s, body: {} });
      assert.deepEqual([first.status, again.status, more.status], [202, 202, 202]);
      const held = (await first.json()).operation_id;
      const followUp = (await again.json()).operation_id;
      assert.notEqual(followUp, held);
      assert.equal((await more.json()).operation_id, followUp);
      release();
      fx.accounts.resealProfiles = realReseal;
      for (const id of [held, followUp]) {
        assert.ok(
          await eventually(
            async () =>
              (await (await call(app, "GET", `/api/operations/${id}`, s)).json()).status ===
                "done",
            30_000,
            20,
          ),
        );
      }
      const afterHeld = revisions(fx);
      for (const d of all) assert.equal(afterHeld.get(d), afterBob.get(d)! + 2);

      // A device whose preshared keys no longer open fails; the others are still resealed.
      statement(fx.state.db, "UPDATE node_peers SET psk_sealed = ? WHERE device_id = ?")
        .run(crypto.getRandomValues(new Uint8Array(60)), alice[0]);
      const broken = await reseal(app, s, {});
      assert.equal(broken.status, "failed");
      assert.match(broken.error ?? "", /1 of 3 device profiles could not be resealed/);
      const failed = broken.events.filter((e) => e.status === "failed");
      assert.deepEqual(failed.map((e) => e.device_id), [alice[0]]);
      assert.equal(failed[0].code, "reseal-failed");
      assert.equal(broken.events.at(-1)!.message, "2 of 3 devices resealed, 1 failed");
      const afterBroken = revisions(fx);
      assert.equal(afterBroken.get(alice[0]), afterHeld.get(alice[0]), "the broken one is not");
      assert.equal(afterBroken.get(alice[1]), afterHeld.get(alice[1])! + 1);
      assert.equal(afterBroken.get(bob), afterHeld.get(bob)! + 1);
      sub.close();
    } finally {
      app.close();
      await fx.close();
    }
  },
});
