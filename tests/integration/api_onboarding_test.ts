/**
 * POST /api/nodes runs the real SSH onboarding in the background: a target
 * that refuses the connection ends the operation `failed` at its first
 * step, with the progress events on GET /api/operations/{id} and on the
 * feed, and the node row left to resume. A malformed target is a 400 and
 * starts nothing.
 */
import assert from "node:assert/strict";
import { nodeOnboarding } from "../../controller/api/onboard.ts";
import { adminSession, type ApiFixture, apiFixture, call } from "../support/api_fixture.ts";
import { until } from "../support/wait.ts";

/** A loopback port nothing listens on (bound, then closed). */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("api onboarding: a refused SSH target ends the operation failed at connect", async () => {
  // The starter reads the fixture's state when a request comes, after the fixture exists.
  const fx: ApiFixture = await apiFixture({
    onboard: (actor, input) => nodeOnboarding(fx.state)(actor, input),
  });
  const app = fx.app;
  try {
    const s = await adminSession(fx);
    const feed: { type: string; data: { step?: string; status?: string } }[] = [];
    app.feed.subscribe((e) => feed.push(e as never));
    const bad = await call(app, "POST", "/api/nodes", { ...s, body: { host: "not a host!" } });
    assert.equal(bad.status, 400);
    const started = await call(app, "POST", "/api/nodes", {
      ...s,
      body: { host: "127.0.0.1", ssh_port: closedPort(), name: "lab-1" },
    });
    assert.equal(started.status, 202);
    const { operation_id } = await started.json();
    let op: { status: string; events: { step: string; status: string }[]; error: string | null } = {
      status: "running",
      events: [],
      error: null,
    };
    const poll = async () => {
      op = await (await call(app, "GET", `/api/operations/${operation_id}`, { cookie: s.cookie }))
        .json();
    };
    await poll();
    const deadline = Date.now() + 30_000;
    while (op.status === "running" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      await poll();
    }
    assert.equal(op.status, "failed", JSON.stringify(op));
    assert.ok(op.error);
    const steps = op.events.map((e) => `${e.step}:${e.status}`);
    assert.ok(steps.includes("connect:failed"), steps.join(", "));
    await until(
      () => feed.some((e) => e.type === "onboarding" && e.data.status === "failed"),
      10_000,
      "the failure on the feed",
    );
    const node = await (await call(app, "GET", "/api/nodes/lab-1", { cookie: s.cookie })).json();
    assert.equal(node.onboarding, "failed");
    assert.equal(node.onboarding_step, "connect");
  } finally {
    await fx.close();
  }
});
