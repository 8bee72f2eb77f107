/**
 * Optimistic concurrency over HTTP: two admins race on one node with the
 * version they loaded; exactly one wins, the other gets 409 with the node
 * as it is now. A write naming no version is refused (428).
 */
import assert from "node:assert/strict";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { adminSession, apiFixture, call, login } from "../support/api_fixture.ts";

Deno.test("api conflict: two writers with the same version: one 200, one 409 with current", async () => {
  const fx = await apiFixture();
  try {
    const a = await adminSession(fx);
    const b = await login(fx.app);
    const node = new Nodes(new Service(fx.state.db)).create("cli:test", {
      name: "fra-1",
      host: "203.0.113.7",
    });
    const loaded = await call(fx.app, "GET", `/api/nodes/${node.id}`, { cookie: a.cookie });
    assert.equal(loaded.headers.get("etag"), '"1"');
    const [r1, r2] = await Promise.all([
      call(fx.app, "PATCH", `/api/nodes/${node.id}/policy`, {
        ...a,
        headers: { "if-match": '"1"' },
        body: { isolation: false },
      }),
      call(fx.app, "PATCH", `/api/nodes/${node.id}/policy`, {
        ...b,
        body: { masquerade: false, version: 1 },
      }),
    ]);
    const statuses = [r1.status, r2.status].sort();
    assert.deepEqual(statuses, [200, 409]);
    const [win, lose] = r1.status === 200 ? [r1, r2] : [r2, r1];
    const won = await win.json();
    assert.equal(won.node.version, 2);
    assert.ok(Array.isArray(won.rule_preview.post_up) && won.rule_preview.post_up.length > 0);
    const lost = await lose.json();
    assert.equal(lost.error.code, "conflict");
    assert.equal(lost.current.version, 2, "the 409 carries the node as it is now");
    assert.equal(lost.current.id, node.id);
    // Nothing of the loser was written.
    const now = new Nodes(new Service(fx.state.db)).find(node.id)!;
    assert.equal(now.version, 2);
    assert.equal(
      [now.isolation, now.masquerade].filter((x) => !x).length,
      1,
      "only the winner's toggle changed",
    );
    const noVersion = await call(fx.app, "PATCH", `/api/nodes/${node.id}`, {
      ...a,
      body: { region: "fra1" },
    });
    assert.equal(noVersion.status, 428);
    const renamed = await call(fx.app, "PATCH", `/api/nodes/${node.id}`, {
      ...a,
      body: { region: "fra1", version: 2 },
    });
    assert.equal(renamed.status, 200);
    assert.equal((await renamed.json()).version, 3);
    const staleDelete = await call(fx.app, "DELETE", `/api/nodes/${node.id}`, {
      ...b,
      headers: { "if-match": '"2"' },
    });
    assert.equal(staleDelete.status, 409);
    const del = await call(fx.app, "DELETE", `/api/nodes/${node.id}`, {
      ...b,
      headers: { "if-match": '"3"' },
    });
    assert.equal(del.status, 200);
  } finally {
    await fx.close();
  }
});

Deno.test("api conflict: settings: a stale version is refused, a bad value names the field", async () => {
  const fx = await apiFixture();
  try {
    const s = await adminSession(fx);
    const first = await call(fx.app, "PATCH", "/api/settings", {
      ...s,
      body: { key: "audit.retention_days", value: 60, version: 0 },
    });
    assert.equal(first.status, 200);
    assert.equal((await first.json()).version, 1);
    const stale = await call(fx.app, "PATCH", "/api/settings", {
      ...s,
      body: { key: "audit.retention_days", value: 90, version: 0 },
    });
    assert.equal(stale.status, 409);
    assert.equal((await stale.json()).current.value, 60);
    const bad = await call(fx.app, "PATCH", "/api/settings", {
      ...s,
      body: { key: "audit.retention_days", value: "many", version: 1 },
    });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.field, "value");
    const policy = await call(fx.app, "GET", "/api/nodes/none/policy/preview?forwarding=false");
    assert.equal(policy.status, 401);
  } finally {
    await fx.close();
  }
});
