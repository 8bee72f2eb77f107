/** Connection caps: budgets, source keys, caps from the fd limit, duration settings. */
import assert from "node:assert/strict";
import {
  checkCount,
  checkDuration,
  ConnectionBudget,
  ConnectionPlan,
  connectionSettingSpecs,
  deriveCaps,
  parseDuration,
  smallPool,
  sourceKey,
  timeLimitsOf,
} from "../../core/conn_limits.ts";
import { resolveSettings } from "../../core/settings.ts";
import { parseNofile } from "../../relay/host/fd_limit.ts";

Deno.test("conn limits: a budget refuses beyond its per-source cap, then beyond its total", () => {
  const b = new ConnectionBudget({ total: 5, perSource: 2 });
  const a1 = b.admit("10.0.0.1");
  const a2 = b.admit("10.0.0.1");
  assert.ok(a1.ok && a2.ok);
  assert.deepEqual(b.admit("10.0.0.1"), { ok: false, reason: "per-source" });
  // Another address still gets in, up to the total.
  const others = ["10.0.0.2", "10.0.0.2", "10.0.0.3"].map((a) => b.admit(a));
  assert.ok(others.every((o) => o.ok));
  assert.equal(b.open, 5);
  assert.deepEqual(b.admit("10.0.0.4"), { ok: false, reason: "total" });
  // A release (idempotent) gives exactly one slot back.
  if (a1.ok) {
    a1.release();
    a1.release();
  }
  assert.equal(b.open, 4);
  assert.equal(b.openFrom("10.0.0.1"), 1);
  assert.ok(b.admit("10.0.0.4").ok);
  assert.deepEqual(b.admit("10.0.0.5"), { ok: false, reason: "total" });
});

Deno.test("conn limits: a child budget also counts against its parent's total", () => {
  const global = new ConnectionBudget({ total: 3, perSource: 3 });
  const client = new ConnectionBudget({ total: 3, perSource: 3 }, global);
  const tunnel = new ConnectionBudget({ total: 2, perSource: 1 }, global);
  assert.ok(client.admit("1.1.1.1").ok);
  assert.ok(client.admit("1.1.1.2").ok);
  const t = tunnel.admit("2.2.2.2");
  assert.ok(t.ok);
  assert.equal(global.open, 3);
  assert.deepEqual(client.admit("1.1.1.3"), { ok: false, reason: "total" });
  assert.deepEqual(tunnel.admit("2.2.2.2"), { ok: false, reason: "per-source" });
  if (t.ok) t.release();
  assert.equal(global.open, 2);
  assert.equal(tunnel.open, 0);
  assert.ok(client.admit("1.1.1.3").ok);
  assert.throws(() => new ConnectionBudget({ total: 0, perSource: 1 }), /positive integer/);
});

Deno.test("conn limits: sources are IPv4 addresses (also mapped) and IPv6 /64 prefixes", () => {
  assert.equal(sourceKey("203.0.113.9"), "203.0.113.9");
  assert.equal(sourceKey("::ffff:203.0.113.9"), "203.0.113.9");
  assert.equal(sourceKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(sourceKey("2001:0db8:0001:0002:ffff:0:0:9"), "2001:db8:1:2::/64");
  assert.equal(sourceKey("[2001:db8:1:2::7]"), "2001:db8:1:2::/64");
  assert.equal(sourceKey("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.equal(sourceKey("::1"), "0:0:0:0::/64");
  assert.equal(sourceKey("64:ff9b::192.0.2.1"), "64:ff9b:0:0::/64");
  // One /64 shares one per-source cap.
  const b = new ConnectionBudget({ total: 10, perSource: 1 });
  assert.ok(b.admit("2001:db8:1:2::1").ok);
  assert.deepEqual(b.admit("2001:db8:1:2::2"), { ok: false, reason: "per-source" });
  assert.ok(b.admit("2001:db8:1:3::1").ok);
});

Deno.test("conn limits: caps derive from the fd limit and leave headroom below it", () => {
  assert.deepEqual(deriveCaps(1024), { total: 640, perSource: 40 });
  assert.deepEqual(deriveCaps(65536), { total: 40960, perSource: 1024 });
  assert.deepEqual(deriveCaps(null), deriveCaps(1024), "unknown: the usual 1024");
  assert.equal(deriveCaps(10_000_000).total, 50_000, "a ceiling for huge limits");
  assert.deepEqual(deriveCaps(64), { total: 40, perSource: 4 });
  for (const fds of [256, 1024, 4096, 65536]) {
    const caps = deriveCaps(fds);
    assert.ok(caps.total <= fds * 0.625 && caps.perSource <= caps.total);
  }
  assert.deepEqual(deriveCaps(1024, { total: 100 }), { total: 100, perSource: 6 });
  assert.deepEqual(deriveCaps(1024, { perSource: 5000 }), { total: 640, perSource: 640 });
  assert.equal(smallPool(640), 40);
  assert.equal(smallPool(40960), 64);
  assert.equal(smallPool(40), 8);
});

Deno.test("conn limits: a plan sets small pools apart and keeps every listener under one total", () => {
  const plan = new ConnectionPlan({ total: 640, perSource: 40 }, 2);
  const client = plan.publicBudget();
  const tunnel = plan.controllerOnlyBudget();
  const egress = plan.controllerOnlyBudget();
  assert.deepEqual(client.caps, { total: 560, perSource: 40 });
  assert.deepEqual(tunnel.caps, { total: 40, perSource: 16 });
  // The client port full: the controller-only ports keep their slots.
  for (let i = 0; i < 560; i++) assert.ok(client.admit(`10.0.${i >> 8}.${i & 255}`).ok);
  assert.deepEqual(client.admit("10.9.9.9"), { ok: false, reason: "total" });
  assert.ok(tunnel.admit("192.0.2.1").ok);
  assert.ok(egress.admit("192.0.2.1").ok);
  assert.equal(plan.global.open, 562);
  const local = plan.localBudget();
  assert.deepEqual(local.caps, { total: 40, perSource: 40 });
});

Deno.test("conn limits: settings take counts or auto, and durations with a unit", () => {
  assert.equal(checkCount("auto"), undefined);
  assert.equal(checkCount("640"), undefined);
  for (const bad of ["0", "-1", "1.5", "", "lots"]) assert.ok(checkCount(bad), bad);
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("10s"), 10_000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  for (const bad of ["10", "0s", "25h", "s", "1 s", "-1s"]) assert.ok(checkDuration(bad), bad);
  assert.throws(() => parseDuration("10"), /duration/);

  const specs = connectionSettingSpecs("PHAROS_RELAY_");
  const env: Record<string, string> = { PHAROS_RELAY_IDLE_TIMEOUT: "30s" };
  const v = resolveSettings(specs, { "handshake-timeout": "2s" }, (n) => env[n], {
    maxConnections: "900",
  }) as unknown as Parameters<typeof timeLimitsOf>[0];
  assert.equal(v.maxConnections, "900");
  assert.equal(v.maxConnectionsPerSource, "auto");
  assert.deepEqual(timeLimitsOf(v), { handshakeMs: 2000, prefaceMs: 10_000, idleMs: 30_000 });
  assert.throws(
    () => resolveSettings(specs, { "idle-timeout": "forever" }, () => undefined),
    /--idle-timeout = "forever": expected a duration/,
  );
});

Deno.test("fd limit: the Max open files row of /proc/<pid>/limits", () => {
  const limits = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;
  assert.deepEqual(parseNofile(limits), { soft: 1024, hard: 524288 });
  assert.deepEqual(
    parseNofile("Max open files            unlimited            unlimited            files"),
    { soft: null, hard: null },
  );
  assert.equal(parseNofile("nothing here"), null);
});
