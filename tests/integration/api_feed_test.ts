/**
 * The live change feed over the real listener (node:http + ws): three
 * subscribers get the same committed change; one reconnects with ?after=
 * and gets what it missed, in order; a position older than the ring gets a
 * `reset`. A WebSocket without credentials, or with the admin's cookie from
 * a foreign page, is refused.
 */
import assert from "node:assert/strict";
import { startDashboard } from "../../controller/api/listener.ts";
import { ConnectionBudget } from "../../core/conn_limits.ts";
import { createLogger } from "../../core/log.ts";
import { adminSession, type ApiFixture, apiFixture, call } from "../support/api_fixture.ts";
import { within } from "../support/wait.ts";

interface Client {
  ws: WebSocket;
  events: Record<string, unknown>[];
  /** Resolves when `n` events (not counting hello) have arrived. */
  next(n: number): Promise<Record<string, unknown>[]>;
  closed: Promise<{ code: number }>;
}

function connect(url: string, headers: Record<string, string>): Promise<Client> {
  const ws = new WebSocket(url, { headers } as unknown as string[]);
  const events: Record<string, unknown>[] = [];
  const waiters: { n: number; resolve: (e: Record<string, unknown>[]) => void }[] = [];
  let closedResolve: (v: { code: number }) => void;
  const closed = new Promise<{ code: number }>((r) => closedResolve = r);
  ws.onclose = (e) => closedResolve({ code: e.code });
  return new Promise((resolve, reject) => {
    ws.onerror = () => reject(new Error("websocket refused"));
    ws.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.type === "hello") {
        resolve(client);
        return;
      }
      events.push(e);
      for (const w of [...waiters]) {
        if (events.length >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(events.slice(0, w.n));
        }
      }
    };
    const client: Client = {
      ws,
      events,
      closed,
      next: (n) =>
        within(
          events.length >= n
            ? Promise.resolve(events.slice(0, n))
            : new Promise((r) => waiters.push({ n, resolve: r })),
          10_000,
          `${n} feed events`,
        ),
    };
  });
}

async function served(fx: ApiFixture) {
  const log = createLogger("feed-test", { level: "error" });
  const server = await startDashboard({
    listen: { hostname: "127.0.0.1", port: 0 },
    handler: fx.app,
    budget: new ConnectionBudget({ total: 64, perSource: 64 }),
    log,
    noisy: log,
  });
  return {
    url: `ws://127.0.0.1:${server.port}/api/events`,
    origin: `http://127.0.0.1:${server.port}`,
    server,
  };
}

Deno.test("api feed: three subscribers get each change; a reconnect resumes after its seq", async () => {
  const fx = await apiFixture({ feedCapacity: 5 });
  const { url, origin, server } = await served(fx);
  const clients: Client[] = [];
  try {
    const s = await adminSession(fx);
    const token = fx.app.tokens.create("cli:test", { name: "feed", scope: "monitor" }).secret;
    const byCookie = { cookie: s.cookie, origin };
    clients.push(await connect(url, byCookie));
    clients.push(await connect(url, byCookie));
    clients.push(await connect(url, { authorization: `Bearer ${token}` }));
    const made = await call(fx.app, "POST", "/api/users", {
      ...s,
      body: { email: "first@example.com" },
    });
    assert.equal(made.status, 201);
    const user = await made.json();
    const got = await Promise.all(clients.map((c) => c.next(1)));
    for (const [e] of got) {
      assert.equal(e.type, "change");
      const data = e.data as {
        action: string;
        target: { type: string; id: string };
        version: number;
      };
      assert.equal(data.action, "user.create");
      assert.deepEqual(data.target, { type: "user", id: user.id });
      assert.equal(data.version, 1);
    }
    const seq = got[0][0].seq as number;
    assert.ok(got.every(([e]) => e.seq === seq), "one sequence number for all subscribers");

    // Subscriber 3 drops; two more changes and a fleet event happen meanwhile.
    clients[2].ws.close();
    await within(clients[2].closed, 10_000, "close");
    await call(fx.app, "POST", "/api/users", { ...s, body: { email: "second@example.com" } });
    fx.app.publish("node", { id: "n1", status: "unreachable" });
    const live = await clients[0].next(3);
    const again = await connect(`${url}?after=${seq}&epoch=${fx.app.feed.epoch}`, {
      authorization: `Bearer ${token}`,
    });
    clients.push(again);
    const missed = await again.next(2);
    assert.deepEqual(missed.map((e) => e.seq), [live[1].seq, live[2].seq]);
    assert.equal((missed[1].data as { status: string }).status, "unreachable");

    // Older than the ring (capacity 5): one reset tells the client to reload.
    for (let i = 0; i < 6; i++) fx.app.publish("node", { id: "n1", i });
    const late = await connect(`${url}?after=${seq}`, { authorization: `Bearer ${token}` });
    clients.push(late);
    const [reset] = await late.next(1);
    assert.equal(reset.type, "reset");
    // From another process run (epoch): reset too.
    const other = await connect(`${url}?after=1&epoch=elsewhere`, {
      authorization: `Bearer ${token}`,
    });
    clients.push(other);
    assert.equal((await other.next(1))[0].type, "reset");
  } finally {
    for (const c of clients) c.ws.close();
    await Promise.all(clients.map((c) => within(c.closed, 10_000, "close")));
    await server.close(1000);
    await fx.close();
  }
});

Deno.test("api feed: no credentials, or the cookie from a foreign page, is refused", async () => {
  const fx = await apiFixture();
  const { url, server } = await served(fx);
  try {
    const s = await adminSession(fx);
    await assert.rejects(connect(url, {}), /refused/);
    await assert.rejects(
      connect(url, { cookie: s.cookie, origin: "http://evil.example" }),
      /refused/,
    );
    const plain = await call(fx.app, "GET", "/api/events", { cookie: s.cookie });
    assert.equal(plain.status, 426);
  } finally {
    await server.close(1000);
    await fx.close();
  }
});
