/**
 * The change feed's ring and the service layer's commit hook: events after
 * a position are replayed across the ring's wrap; a lost position or epoch
 * gets a reset; a throwing subscriber is dropped. Listeners hear a change
 * only after COMMIT, never a rolled-back one (nor a rolled-back savepoint's),
 * whichever Service object on the connection made it.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { EventFeed, type FeedEvent } from "../../controller/api/feed.ts";
import { migrate } from "../../controller/db/sqlite.ts";
import { MIGRATIONS } from "../../controller/db/migrations.ts";
import { type CommittedChange, Service } from "../../controller/service/service.ts";
import { Settings } from "../../controller/service/settings.ts";
import { Users } from "../../controller/service/users.ts";

Deno.test("feed: replay after a position across the ring's wrap, reset past it", () => {
  const feed = new EventFeed(4);
  for (let i = 1; i <= 10; i++) feed.publish("node", { i });
  assert.equal(feed.oldest, 7);
  const got: FeedEvent[] = [];
  const sub = feed.subscribe((e) => got.push(e), 7, feed.epoch);
  assert.deepEqual(got.map((e) => e.seq), [8, 9, 10]);
  assert.equal(sub.replayed, 3);
  feed.publish("node", { i: 11 });
  assert.deepEqual(got.map((e) => e.seq), [8, 9, 10, 11]);
  sub.close();
  feed.publish("node", { i: 12 });
  assert.equal(got.length, 4, "closed subscriptions get nothing");

  const exact: FeedEvent[] = [];
  feed.subscribe((e) => exact.push(e), feed.oldest - 1).close();
  assert.deepEqual(
    exact.map((e) => e.seq),
    [9, 10, 11, 12],
    "the oldest held position still replays",
  );

  for (const [after, epoch] of [[3, undefined], [99, undefined], [10, "other"]] as const) {
    const r: FeedEvent[] = [];
    feed.subscribe((e) => r.push(e), after, epoch).close();
    assert.equal(r.length, 1);
    assert.equal(r[0].type, "reset", `after ${after} epoch ${epoch}`);
  }
});

Deno.test("feed: observed batches go to live subscribers only; they never push other events out or force a reset", () => {
  const feed = new EventFeed(3);
  const live: string[] = [];
  feed.subscribe((e) => live.push(`${e.seq}:${e.type}`));
  feed.publish("change", { i: 1 });
  for (let i = 0; i < 50; i++) feed.publish("observed", { node_ids: [], count: 0 });
  feed.publish("change", { i: 2 });
  assert.equal(live.length, 52, "live subscribers hear every batch");
  assert.deepEqual(live.slice(0, 2), ["1:change", "2:observed"]);
  // A tab that was at seq 1 resumes with the change after it; the batches between are not replayed.
  const resumed: FeedEvent[] = [];
  feed.subscribe((e) => resumed.push(e), 1, feed.epoch).close();
  assert.deepEqual(resumed.map((e) => `${e.seq}:${e.type}`), ["52:change"]);
  // Positions inside a run of batches resume too: nothing kept was lost.
  const mid: FeedEvent[] = [];
  feed.subscribe((e) => mid.push(e), 30, feed.epoch).close();
  assert.deepEqual(mid.map((e) => e.seq), [52]);
  // Once kept events are pushed out, a position before them is reset.
  for (let i = 0; i < 3; i++) feed.publish("change", { i });
  const old: FeedEvent[] = [];
  feed.subscribe((e) => old.push(e), 30, feed.epoch).close();
  assert.deepEqual(old.map((e) => e.type), ["reset"]);
});

Deno.test("feed: a throwing subscriber is dropped, others go on", () => {
  const feed = new EventFeed();
  const ok: number[] = [];
  feed.subscribe(() => {
    throw new Error("gone");
  });
  feed.subscribe((e) => ok.push(e.seq));
  feed.publish("a", null);
  feed.publish("b", null);
  assert.deepEqual(ok, [1, 2]);
  assert.equal(feed.subscribers, 1);
});

Deno.test("commit hook: after COMMIT only, savepoint rollbacks excluded, any Service on the connection", () => {
  const db = new DatabaseSync(":memory:");
  migrate(db, MIGRATIONS);
  const a = new Service(db);
  const b = new Service(db);
  const heard: CommittedChange[][] = [];
  const off = a.onCommit((c) => heard.push([...c]));
  new Users(b).add("cli:test", { email: "x@example.com" });
  assert.equal(heard.length, 1);
  assert.equal(heard[0][0].action, "user.create");
  assert.equal(heard[0][0].version, 1);

  // A failing transaction is heard by nobody.
  assert.throws(() =>
    a.transaction(() => {
      new Settings(a).set("cli:test", "audit.retention_days", 10);
      throw new Error("undo");
    })
  );
  assert.equal(heard.length, 1);

  // Inside one transaction: a nested mutation that fails is left out, the rest comes at COMMIT.
  a.transaction(() => {
    new Settings(a).set("cli:test", "audit.retention_days", 11);
    assert.throws(() =>
      a.transaction(() => {
        new Settings(b).set("cli:test", "metrics.retention_days", 12);
        throw new Error("undo inner");
      })
    );
    assert.equal(heard.length, 1, "nothing before COMMIT");
  });
  assert.equal(heard.length, 2);
  assert.deepEqual(heard[1].map((c) => c.target.id), ["audit.retention_days"]);
  off();
  new Settings(a).set("cli:test", "audit.retention_days", 13);
  assert.equal(heard.length, 2, "unsubscribed");
  db.close();
});
