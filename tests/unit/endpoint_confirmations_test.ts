/**
 * What profiles advertise of a node's endpoint pool (CONTRACTS.md §5.7):
 * the pool clipped to the ranges the node confirmed (same IP, port
 * intersection), nothing without a confirmation; how a node's answer is
 * read (checked like any input); how a confirmation is recorded (its own
 * audited row, the node's version untouched); and the coalesced reseal.
 */
import assert from "node:assert/strict";
import { MAX_CONFIRMED_RANGES, MAX_DNAT_RULES } from "../../core/dataplane/mod.ts";
import {
  advertisedRanges,
  clipToConfirmed,
  confirmedAnswer,
  storedRanges,
} from "../../controller/reconcile/endpoint_confirmations.ts";
import { CoalescedRun } from "../../controller/reconcile/coalesced_run.ts";
import { recordConfirmedRanges } from "../../controller/reconcile/writes.ts";
import { openDatabase } from "../../controller/db/sqlite.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const r = (ip: string, portMin: number, portMax = portMin) => ({ ip, portMin, portMax });

Deno.test("clip: a partial overlap advertises only the confirmed ports", () => {
  assert.deepEqual(
    clipToConfirmed([r("198.51.100.7", 2000, 60000)], [r("198.51.100.7", 50000, 65000)]),
    [r("198.51.100.7", 50000, 60000)],
  );
  // Two confirmed pieces inside one pool entry: both, lowest ports first.
  assert.deepEqual(
    clipToConfirmed(
      [r("198.51.100.7", 2000, 60000)],
      [r("198.51.100.7", 40000, 40100), r("198.51.100.7", 3000, 3010)],
    ),
    [r("198.51.100.7", 3000, 3010), r("198.51.100.7", 40000, 40100)],
  );
  // Exactly the pool: the pool.
  const pool = [r("198.51.100.7", 443), r("2001:db8::1", 40000, 40100)];
  assert.deepEqual(clipToConfirmed(pool, [...pool].reverse()), pool, "in pool order");
});

Deno.test("clip: a range on another IP confirms nothing of the pool", () => {
  assert.deepEqual(
    clipToConfirmed([r("198.51.100.7", 2000, 3000)], [r("198.51.100.8", 2000, 3000)]),
    [],
  );
  // Nor does a range of the same IP that shares no port.
  assert.deepEqual(
    clipToConfirmed([r("198.51.100.7", 2000, 3000)], [r("198.51.100.7", 3001, 4000)]),
    [],
  );
});

Deno.test("clip: a pool entry wholly unconfirmed is left out; a confirmation beyond the pool is not advertised", () => {
  assert.deepEqual(
    clipToConfirmed(
      [r("198.51.100.7", 443), r("198.51.100.7", 2000, 3000), r("2001:db8::1", 40000, 40100)],
      [r("198.51.100.7", 443), r("2001:db8::1", 40050, 41000), r("203.0.113.9", 5000, 6000)],
    ),
    [r("198.51.100.7", 443), r("2001:db8::1", 40050, 40100)],
  );
});

Deno.test("advertised: no confirmation (never reached, or an original node) advertises none of the pool", () => {
  const pool = JSON.stringify([r("198.51.100.7", 2000, 3000)]);
  assert.deepEqual(advertisedRanges(pool, null), [], "never answered");
  assert.deepEqual(advertisedRanges(pool, undefined), [], "never answered");
  assert.deepEqual(advertisedRanges(pool, "[]"), [], "an original node answers none");
  assert.deepEqual(
    advertisedRanges("[]", JSON.stringify([r("198.51.100.7", 2000, 3000)])),
    [],
    "no pool",
  );
  assert.deepEqual(
    advertisedRanges(pool, JSON.stringify([r("198.51.100.7", 2500, 2600)])),
    [r("198.51.100.7", 2500, 2600)],
  );
});

Deno.test("stored lists are read leniently and compared in canonical form", () => {
  // An old row: an IPv6 address not canonical, an entry that is not a range, one with a bad IP.
  const json = JSON.stringify([
    r("2001:DB8:0::1", 40000, 40100),
    { ip: "198.51.100.7" },
    r("vpn.example.com", 443),
    "junk",
  ]);
  assert.deepEqual(storedRanges(json), [r("2001:db8::1", 40000, 40100)]);
  assert.deepEqual(storedRanges("not json"), []);
  assert.deepEqual(storedRanges('{"ip":"198.51.100.7"}'), []);
  assert.deepEqual(
    advertisedRanges(json, JSON.stringify([r("2001:db8::1", 40000, 40000)])),
    [r("2001:db8::1", 40000, 40000)],
  );
});

Deno.test("a node's answer: checked and canonical; absent or null is none; a bad list confirms nothing and says why", () => {
  assert.deepEqual(confirmedAnswer({ applied: true }), { ranges: [] });
  assert.deepEqual(confirmedAnswer({ applied: true, endpoint_ranges: null }), { ranges: [] });
  assert.deepEqual(confirmedAnswer({ endpoint_ranges: [] }), { ranges: [] });
  assert.deepEqual(
    confirmedAnswer({
      endpoint_ranges: [
        { ip: "2001:DB8::1", port_min: 40000, port_max: 40100 },
        { ip: "198.51.100.7", port_min: 443, port_max: 443 },
      ],
    }),
    { ranges: [r("2001:db8::1", 40000, 40100), r("198.51.100.7", 443)] },
  );
  const bad: [unknown, RegExp][] = [
    [
      [
        { ip: "198.51.100.7", port_min: 2000, port_max: 3000 },
        { ip: "198.51.100.7", port_min: 2500, port_max: 2500 },
      ],
      /overlap/,
    ],
    [[{ ip: "198.51.100.7; reboot", port_min: 443, port_max: 443 }], /endpoint_ranges\[0\]\.ip/],
    [[{ ip: "198.51.100.7", port_min: 0, port_max: 443 }], /endpoint_ranges\[0\]\.portMin/],
    [[{ ip: "198.51.100.7", port_min: 3000, port_max: 2000 }], /exceeds/],
    [[{ ip: "198.51.100.7", port_min: 1, port_max: 65535 }], /at most/],
    [["198.51.100.7:443"], /endpoint_ranges\[0\]\.ip/],
    [{ ip: "198.51.100.7" }, /not a list/],
    [
      Array.from(
        { length: MAX_CONFIRMED_RANGES + 1 },
        (_, i) => ({ ip: "198.51.100.7", port_min: 2000 + 2 * i, port_max: 2000 + 2 * i }),
      ),
      new RegExp(`at most ${MAX_CONFIRMED_RANGES}`),
    ],
  ];
  // An agent confirms its DNAT runs (a range split around reserved ports): more than a pool holds.
  const runs = Array.from(
    { length: MAX_DNAT_RULES },
    (_, i) => ({ ip: "198.51.100.7", port_min: 2000 + 2 * i, port_max: 2000 + 2 * i }),
  );
  assert.equal(confirmedAnswer({ endpoint_ranges: runs }).ranges.length, MAX_DNAT_RULES);
  for (const [endpoint_ranges, why] of bad) {
    const a = confirmedAnswer({ endpoint_ranges });
    assert.deepEqual(a.ranges, [], JSON.stringify(endpoint_ranges));
    assert.match(a.problem ?? "", why, JSON.stringify(endpoint_ranges));
  }
});

Deno.test("a confirmation is its own audited row: written when it changes, never moving the node's version", async () => {
  const dir = await Deno.makeTempDir();
  const db = openDatabase(`${dir}/pharos.db`);
  try {
    const service = new Service(db);
    const nodes = new Nodes(service);
    const confirmationOf = (id: string) =>
      (db.prepare("SELECT ranges FROM node_endpoint_confirmations WHERE node_id = ?").get(id) as
        | { ranges: string }
        | undefined)?.ranges;
    const node = nodes.create("cli:test", { name: "fra-1", host: "203.0.113.7" });
    const audits = () =>
      (db.prepare(
        "SELECT actor, action, target_id FROM audit_log WHERE target_type = 'node_endpoint_confirmation'",
      ).all() as { actor: string; action: string; target_id: string }[]).map((a) => ({ ...a }));
    const record = (ranges: ReturnType<typeof r>[]) =>
      recordConfirmedRanges(service, "system:reconcile", node.id, ranges);

    assert.equal(confirmationOf(node.id), undefined, "never answered");
    assert.equal(record([]), true, "a first answer, even empty, is recorded");
    assert.equal(confirmationOf(node.id), "[]");
    assert.equal(record([]), false, "the same answer writes nothing");
    assert.equal(record([r("198.51.100.7", 2000, 3000)]), true);
    assert.equal(record([r("198.51.100.7", 2000, 3000)]), false);
    assert.deepEqual(JSON.parse(confirmationOf(node.id)!), [r("198.51.100.7", 2000, 3000)]);
    assert.deepEqual(audits(), [
      {
        actor: "system:reconcile",
        action: "node_endpoint_confirmation.record",
        target_id: node.id,
      },
      {
        actor: "system:reconcile",
        action: "node_endpoint_confirmation.record",
        target_id: node.id,
      },
    ]);
    assert.equal(nodes.require(node.id).version, node.version, "the node's version did not move");
    assert.ok(verifyAudit(db).ok);
    // Removing the node removes its confirmation.
    nodes.remove("cli:test", node.id);
    assert.equal(confirmationOf(node.id), undefined);
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("coalesced run: requests during a run make one more run, not one each; errors are reported; stop aborts", async () => {
  let runs = 0;
  let release: () => void = () => {};
  const errors: unknown[] = [];
  let seen: AbortSignal | null = null;
  const job = new CoalescedRun(async (signal) => {
    runs++;
    seen = signal;
    await new Promise<void>((resolve, reject) => {
      release = resolve;
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    if (runs === 2) throw new Error("second run failed");
  }, (e) => errors.push(e));

  job.request();
  await until(() => runs === 1, WAIT_MS, "the first run");
  for (let i = 0; i < 5; i++) job.request();
  release();
  await until(() => runs === 2, WAIT_MS, "the one follow-up");
  release();
  await within(job.idle(), WAIT_MS, "the runs to end");
  assert.equal(runs, 2, "five requests during a run: one more run");
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /second run failed/);

  // Stopped while running (with a follow-up wanted): aborted, not reported, no follow-up.
  job.request();
  await until(() => runs === 3, WAIT_MS, "the third run");
  job.request();
  await within(job.stop(), WAIT_MS, "the stop");
  assert.equal(seen!.aborted, true);
  assert.equal(runs, 3, "the follow-up was dropped");
  assert.equal(errors.length, 1, "an abort is not an error");
  // Requests after a stop run again.
  job.request();
  await until(() => runs === 4, WAIT_MS, "a run after the stop");
  release();
  await within(job.idle(), WAIT_MS, "the last run");
});

Deno.test("coalesced run: a failed run is retried after each delay in turn until one succeeds", async () => {
  let runs = 0;
  const failUntil = 3;
  const told: (number | null)[] = [];
  const job = new CoalescedRun(
    () => {
      runs++;
      if (runs < failUntil) return Promise.reject(new Error(`run ${runs} failed`));
      return Promise.resolve();
    },
    (_e, next) => told.push(next.retryInMs),
    [5, 5, 5],
  );
  try {
    job.request();
    await until(() => runs === failUntil && !job.retrying, WAIT_MS, "the retries");
    await within(job.idle(), WAIT_MS, "the last run");
    assert.deepEqual(told, [5, 5], "two failures, each followed by a retry");
    assert.equal(job.retrying, false, "succeeded: nothing waits");
  } finally {
    await job.stop();
  }
});

Deno.test("coalesced run: the retries are bounded; a new request starts them over; stop drops a waiting retry", async () => {
  let runs = 0;
  const told: (number | null)[] = [];
  const job = new CoalescedRun(
    () => {
      runs++;
      return Promise.reject(new Error("always fails"));
    },
    (_e, next) => told.push(next.retryInMs),
    [1, 1],
  );
  try {
    job.request();
    await until(() => told.length === 3, WAIT_MS, "the run and its two retries");
    await within(job.idle(), WAIT_MS, "the last run");
    assert.equal(runs, 3);
    assert.deepEqual(told, [1, 1, null], "the third failure: no retry left");
    assert.equal(job.retrying, false);
    // A new request (another confirmation) gets its own retries.
    job.request();
    await until(() => told.length === 6, WAIT_MS, "the new run and its retries");
    assert.deepEqual(told.slice(3), [1, 1, null]);
    assert.equal(runs, 6);

    // A long delay waiting: stop() drops it, nothing runs after.
    const slow = new CoalescedRun(
      () => {
        runs++;
        return Promise.reject(new Error("fails"));
      },
      () => {},
      [3_600_000],
    );
    slow.request();
    await until(() => slow.retrying, WAIT_MS, "the retry to wait");
    await within(slow.stop(), WAIT_MS, "the stop");
    assert.equal(slow.retrying, false);
    assert.equal(runs, 7);
  } finally {
    await job.stop();
  }
});

Deno.test("coalesced run: a request during a failing run is its retry (no delay added)", async () => {
  let runs = 0;
  let release = () => {};
  const told: (number | null)[] = [];
  const job = new CoalescedRun(
    async () => {
      runs++;
      if (runs === 1) {
        await new Promise<void>((resolve) => release = resolve);
        throw new Error("first fails");
      }
    },
    (_e, next) => told.push(next.retryInMs),
    [3_600_000],
  );
  try {
    job.request();
    await until(() => runs === 1, WAIT_MS, "the first run");
    job.request();
    release();
    await until(() => runs === 2, WAIT_MS, "the requested run");
    await within(job.idle(), WAIT_MS, "the runs to end");
    assert.deepEqual(told, [0]);
    assert.equal(job.retrying, false, "no delayed retry on top of the requested run");
  } finally {
    await job.stop();
  }
});
