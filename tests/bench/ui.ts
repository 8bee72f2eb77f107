/**
 * "Dashboard": server render time of each page for a 1,000-node fleet
 * (p50/p99, the real admin API answering in-process, against the API call
 * the fleet page needs as baseline), the size of the dashboard's
 * JavaScript (gzipped, against the 150 KB budget), and the time from a
 * change to three open tabs having fetched their updated page (against
 * the change feed's own delivery to them).
 */
import WebSocket from "ws";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { ensureBuilt } from "../../ui/build.ts";
import { ADMIN } from "../support/accounts_fixture.ts";
import { ADMIN_EMAIL, ADMIN_PASSWORD, startTestController } from "../browser/harness.ts";
import { WAIT_MS, within } from "../support/wait.ts";
import { type BenchModule, type Figure, figure, percentile } from "./harness.ts";

const NODES = 1000;
const REGIONS = ["fra1", "nyc1", "sgp1", "eu-west-2", "us-west-2", "ap-northeast-1", "syd1", null];
const TABS = 3;
const CHANGES = 20;

async function timed(fn: () => Promise<unknown>, n: number): Promise<number[]> {
  await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

export const uiBench: BenchModule = {
  section: "Dashboard",
  notes: `${NODES} nodes. Render = the dashboard's whole answer (its API calls in-process, ` +
    "Preact render to string); baseline = GET /api/nodes?limit=1000 alone. Tab update = change " +
    "committed → each of three feed subscribers has the event and has fetched the page's new " +
    "content (what the browser script does), baseline = the event alone reaching all three.",
  async run(): Promise<Figure[]> {
    const info = await ensureBuilt();
    const ctl = await startTestController();
    try {
      const nodes = new Nodes(new Service(ctl.fx.state.db));
      for (let i = 0; i < NODES; i++) {
        nodes.create(ADMIN, {
          name: `node-${i}`,
          host: `node-${i}.example.net`,
          region: REGIONS[i % REGIONS.length] ?? undefined,
        });
      }
      await ctl.createAdmin();
      const login = await ctl.app(
        new Request(`${ctl.url}/api/auth/login`, {
          method: "POST",
          headers: { "content-type": "application/json", origin: ctl.url },
          body: JSON.stringify({ email: ADMIN_EMAIL, password: ADMIN_PASSWORD }),
        }),
      );
      const cookie = login.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
      const get = async (path: string, extra: Record<string, string> = {}) => {
        const r = await ctl.app(
          new Request(`${ctl.url}${path}`, { headers: { cookie, ...extra } }),
        );
        if (r.status !== 200) throw new Error(`${path}: HTTP ${r.status}`);
        return await r.text();
      };
      const some = nodes.list()[500].id;
      const figures: Figure[] = [];
      const api = await timed(() => get("/api/nodes?limit=1000"), 30);
      const apiP50 = percentile(api, 50);
      const pages: [string, string, number][] = [
        ["fleet (map + list)", "/", 30],
        ["node detail", `/nodes/${some}`, 100],
        ["audit log", "/audit", 100],
        ["settings", "/settings", 100],
      ];
      for (const [label, path, n] of pages) {
        const samples = await timed(() => get(path), n);
        figures.push(
          figure(
            `render ${label} p50`,
            percentile(samples, 50),
            "ms",
            "API node list p50",
            apiP50,
            {
              lowerIsBetter: true,
            },
          ),
          figure(
            `render ${label} p99`,
            percentile(samples, 99),
            "ms",
            "API node list p50",
            apiP50,
            {
              lowerIsBetter: true,
            },
          ),
        );
      }
      const all = info.jsGzipBytes + info.cssGzipBytes + info.worldGzipBytes;
      figures.push(
        figure("dashboard JavaScript gzipped", info.jsGzipBytes / 1024, "KiB", "budget", 150, {
          lowerIsBetter: true,
          target: "<= 150 KB",
        }),
        figure("all static assets (JS, CSS, map) gzipped", all / 1024, "KiB", "budget", 150, {
          lowerIsBetter: true,
        }),
      );

      // Three subscribers, as three open tabs.
      const wsUrl = `${ctl.url.replace("http", "ws")}/api/events`;
      const sockets = await Promise.all(
        Array.from({ length: TABS }, () =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(wsUrl, { headers: { cookie, origin: ctl.url } });
            ws.once("message", () => resolve(ws)); // the hello
            ws.once("error", reject);
          })),
      );
      const delivery: number[] = [];
      const updated: number[] = [];
      try {
        for (let i = 0; i < CHANGES; i++) {
          const t0 = performance.now();
          const seen = sockets.map((ws) =>
            new Promise<number>((resolve) => ws.once("message", () => resolve(performance.now())))
          );
          const pages = seen.map(async (s) => {
            await s;
            await get("/", { "x-pharos-partial": "1" });
            return performance.now();
          });
          nodes.setPolicy(ADMIN, some, { isolation: !nodes.require(some).isolation });
          delivery.push(Math.max(...await within(Promise.all(seen), WAIT_MS, "the feed")) - t0);
          updated.push(Math.max(...await within(Promise.all(pages), WAIT_MS, "the pages")) - t0);
        }
      } finally {
        for (const ws of sockets) ws.close();
      }
      const deliveryP50 = percentile(delivery, 50);
      figures.push(
        figure(
          "change → 3 tabs updated p50",
          percentile(updated, 50),
          "ms",
          "feed delivery p50",
          deliveryP50,
          {
            lowerIsBetter: true,
            target: "<= 1 s",
          },
        ),
        figure(
          "change → 3 tabs updated p99",
          percentile(updated, 99),
          "ms",
          "feed delivery p50",
          deliveryP50,
          {
            lowerIsBetter: true,
            target: "<= 1 s",
          },
        ),
      );
      return figures;
    } finally {
      await ctl.close();
    }
  },
};

if (import.meta.main) {
  for (const f of await uiBench.run()) {
    console.log(
      `${f.name}: ${f.value.toFixed(2)} ${f.unit} (${f.baselineName} ${
        f.baselineValue.toFixed(2)
      }, ratio ${f.ratio.toFixed(3)})`,
    );
  }
  Deno.exit(0);
}
