/**
 * "Admin API": listing a 1,000-node fleet through the API handler (routing,
 * session or token check, validation, JSON) against the same listing on
 * the service layer (Nodes.list + JSON), as p50/p99 latency and requests/s;
 * and change-feed delivery latency to 100 WebSocket subscribers at 1,000
 * events/s over the controller's listener, against a bare `ws` broadcast of
 * the same messages to 100 clients.
 */
import { createApp } from "../../controller/api/app.ts";
import { startDashboard } from "../../controller/api/listener.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { openState } from "../../controller/state.ts";
import { ConnectionBudget } from "../../core/conn_limits.ts";
import { createLogger } from "../../core/log.ts";
// @ts-types="npm:@types/ws@^8.18.1"
import { WebSocketServer } from "ws";
import { type BenchModule, type Figure, figure, percentile } from "./harness.ts";

const NODES = 1000;
const SUBSCRIBERS = 100;
const RATE = 1000;
const FEED_SECONDS = 3;

interface Timing {
  samples: number[];
  secs: number;
}

async function timed(fn: () => Promise<unknown> | unknown, n: number): Promise<Timing> {
  for (let i = 0; i < 3; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  return { samples, secs: (performance.now() - start) / 1000 };
}

function merge(runs: Timing[]) {
  const samples = runs.flatMap((r) => r.samples);
  const secs = runs.reduce((a, r) => a + r.secs, 0);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), rps: samples.length / secs };
}

const WORKERS = 2;
const wallNow = () => performance.timeOrigin + performance.now();

/** Opens `n` WebSocket clients in WORKERS workers; they record each message's delay. */
async function subscribers(url: string, n: number, headers: Record<string, string>) {
  const workers = Array.from(
    { length: WORKERS },
    () => new Worker(new URL("./api_feed_worker.ts", import.meta.url), { type: "module" }),
  );
  const request = (w: Worker, msg: unknown, reply: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker: no ${reply}`)), 60_000);
      w.onmessage = (m) => {
        if (m.data.cmd === reply) {
          clearTimeout(timer);
          resolve(m.data);
        }
      };
      w.postMessage(msg);
    });
  await Promise.all(
    workers.map((w) => request(w, { cmd: "open", url, n: n / WORKERS, headers }, "opened")),
  );
  return {
    /** Messages received so far (asked of the workers). */
    async count(): Promise<number> {
      const ns = await Promise.all(workers.map((w) => request(w, { cmd: "count" }, "count")));
      return ns.reduce((a, r) => a + Number(r.n), 0);
    },
    async close(): Promise<number[]> {
      const all = await Promise.all(workers.map((w) => request(w, { cmd: "report" }, "report")));
      workers.forEach((w) => w.terminate());
      return all.flatMap((r) => r.delays as number[]);
    },
  };
}

/** Sends RATE messages a second for FEED_SECONDS; waits (bounded) for delivery. */
async function paced(
  send: (t: number) => void,
  delivered: () => Promise<number>,
  expected: number,
) {
  const total = RATE * FEED_SECONDS;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    send(wallNow());
  }
  const end = performance.now() + 30_000;
  while (await delivered() < expected && performance.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const apiBench: BenchModule = {
  section: "Admin API",
  notes: `Fleet listing: ${NODES} nodes, GET /api/nodes?limit=${NODES} through the in-process ` +
    "handler with an admin cookie session, and with an API token (each token request is an " +
    "audited write of its last use). Feed: events published at 1,000/s for " +
    `${FEED_SECONDS} s to ${SUBSCRIBERS} WebSocket clients in the same process (both ends on ` +
    "this machine's cores), latency from publish to receipt.",
  async run(): Promise<Figure[]> {
    const dir = await Deno.makeTempDir({ prefix: "pharos-api-bench-" });
    const state = await openState(dir, { create: true });
    const log = createLogger("bench", { level: "error" });
    const app = createApp({ state, log, passwordCost: { memoryKiB: 1024, iterations: 1 } });
    const figures: Figure[] = [];
    try {
      const service = new Service(state.db);
      const nodes = new Nodes(service);
      const first = nodes.create("cli:bench", { name: "node-0000", host: "198.51.100.1" });
      const row = state.db.prepare("SELECT obfuscation FROM nodes WHERE id = ?").get(first.id) as {
        obfuscation: string;
      };
      const now = new Date().toISOString();
      state.db.exec("BEGIN");
      const ins = state.db.prepare(
        "INSERT INTO nodes (id, name, host, obfuscation, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
      );
      for (let i = 1; i < NODES; i++) {
        ins.run(
          crypto.randomUUID(),
          `node-${String(i).padStart(4, "0")}`,
          `198.51.100.${i % 250}`,
          row.obfuscation,
          now,
          now,
        );
      }
      state.db.exec("COMMIT");

      await app.auth.setup(
        app.auth.createSetupToken("cli:bench").token,
        "bench@example.com",
        "bench password 123",
      );
      const signed = await app.auth.login(
        "bench@example.com",
        "bench password 123",
        "127.0.0.1",
        null,
      );
      const cookie = `pharos_session=${signed.cookie}`;
      const token = app.tokens.create("cli:bench", { name: "bench", scope: "readonly" }).secret;
      const get = (headers: Record<string, string>) => async () => {
        const res = await app(
          new Request(`http://127.0.0.1:8443/api/nodes?limit=${NODES}`, { headers }),
          { remoteAddr: "127.0.0.1" },
        );
        if (res.status !== 200) throw new Error(`listing: ${res.status}`);
        await res.arrayBuffer();
      };
      // Rounds alternate the three, so load changes on the machine hit each alike.
      const runs = { direct: [] as Timing[], session: [] as Timing[], token: [] as Timing[] };
      for (let round = 0; round < 4; round++) {
        runs.direct.push(await timed(() => JSON.stringify(nodes.list()), 50));
        runs.session.push(await timed(get({ cookie }), 50));
        runs.token.push(await timed(get({ authorization: `Bearer ${token}` }), 50));
      }
      const direct = merge(runs.direct);
      const viaSession = merge(runs.session);
      const viaToken = merge(runs.token);
      const base = `service layer (Nodes.list + JSON)`;
      figures.push(
        figure(
          `fleet listing p50, session (${NODES} nodes)`,
          viaSession.p50,
          "ms",
          base,
          direct.p50,
          { lowerIsBetter: true },
        ),
        figure(`fleet listing p99, session`, viaSession.p99, "ms", base, direct.p99, {
          lowerIsBetter: true,
        }),
        figure(`fleet listing, session`, viaSession.rps, "req/s", base, direct.rps),
        figure(`fleet listing, API token (audited)`, viaToken.rps, "req/s", base, direct.rps),
      );

      // Feed: 100 subscribers over the real listener vs a bare ws broadcast.
      const server = await startDashboard({
        listen: { hostname: "127.0.0.1", port: 0 },
        handler: app,
        budget: new ConnectionBudget({ total: 512, perSource: 512 }),
        log,
        noisy: log,
      });
      const feedSubs = await subscribers(
        `ws://127.0.0.1:${server.port}/api/events`,
        SUBSCRIBERS,
        { authorization: `Bearer ${token}` },
      );
      const expected = RATE * FEED_SECONDS * SUBSCRIBERS;
      await paced((t) => app.publish("node", { t }), () => feedSubs.count(), expected);
      const feedDelays = await feedSubs.close();
      const feedP50 = percentile(feedDelays, 50);
      const feedP99 = percentile(feedDelays, 99);
      const delivered = feedDelays.length;
      await server.close(1000);

      const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
      await new Promise((r) => wss.once("listening", r));
      const port = (wss.address() as { port: number }).port;
      const rawSubs = await subscribers(`ws://127.0.0.1:${port}/`, SUBSCRIBERS, {});
      await paced(
        (t) => {
          const text = JSON.stringify({ t });
          for (const c of wss.clients) c.send(text);
        },
        () => rawSubs.count(),
        expected,
      );
      const rawDelays = await rawSubs.close();
      const rawP50 = percentile(rawDelays, 50);
      const rawP99 = percentile(rawDelays, 99);
      await new Promise((r) => wss.close(r));
      figures.push(
        figure(
          `feed delivery p50 (${SUBSCRIBERS} subscribers, ${RATE} events/s)`,
          feedP50,
          "ms",
          "bare ws broadcast",
          rawP50,
          { lowerIsBetter: true },
        ),
        figure(`feed delivery p99`, feedP99, "ms", "bare ws broadcast", rawP99, {
          lowerIsBetter: true,
          target: "<= 100 ms",
        }),
        figure(`feed events delivered`, delivered, "messages", "sent", expected),
      );
    } finally {
      app.close();
      state.close();
      await Deno.remove(dir, { recursive: true });
    }
    return figures;
  },
};
