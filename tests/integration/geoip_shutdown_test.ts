/**
 * A controller stopping during a GeoIP download (started over its API)
 * aborts it before the database closes: `shutdown()` returns after the
 * download ended, with no temporary file left and the failure recorded
 * as `geoip-stopped`; nothing is written into state/geoip afterwards.
 */
import assert from "node:assert/strict";
import { ApiTokens } from "../../controller/api/tokens.ts";
import { resolveConfig } from "../../controller/config.ts";
import { startController } from "../../controller/serve.ts";
import { Service } from "../../controller/service/service.ts";
import { Settings } from "../../controller/service/settings.ts";
import { goCapability } from "../support/go_peer.ts";
import { serveFiles, writeCityDb } from "../support/geoip_fixture.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const cap = goCapability("geoip shutdown");

Deno.test({
  name: "geoip shutdown: stopping the controller aborts a running download first",
  ...cap,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pharos-geoip-shutdown-" });
    const state = `${dir}/state`;
    let release = () => {};
    const hold = { path: "/city.mmdb", release: new Promise<void>((r) => release = r) };
    const server = serveFiles({ "/city.mmdb": await writeCityDb(`${dir}/src.mmdb`) }, [], hold);
    const logs: { msg: string; code?: string }[] = [];
    const cfg = resolveConfig(
      { state, "ui-listen": "127.0.0.1:0", "relay-listen": "off" },
      () => undefined,
    );
    const ctl = await within(
      startController(cfg, { logSink: (l) => logs.push(JSON.parse(l)), print: () => {} }),
      WAIT_MS,
      "the controller to start",
    );
    let stopped = false;
    try {
      const service = new Service(ctl.state.db);
      new Settings(service).set("cli:test", "geoip.url", server.url("/city.mmdb"));
      const { secret } = new ApiTokens(service, () => new Date()).create("cli:test", {
        name: "t",
        scope: "admin",
      });
      const res = await fetch(`http://127.0.0.1:${ctl.uiPort}/api/geoip/download`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: "{}",
      });
      assert.equal(res.status, 202, await res.clone().text());
      await res.body?.cancel();
      const geoip = `${state}/geoip`;
      const temporaries = () =>
        [...Deno.readDirSync(geoip)].filter((e) => e.name.endsWith(".tmp")).map((e) => e.name);
      await until(() => temporaries().length > 0, WAIT_MS, "the download to be writing");

      await within(ctl.shutdown(), WAIT_MS, "the controller to stop");
      stopped = true;
      assert.deepEqual(temporaries(), [], "no temporary file left");
      assert.ok(!Deno.statSync(geoip).isFile && !exists(`${geoip}/city.mmdb`), "nothing installed");
      const last = JSON.parse(Deno.readTextFileSync(`${geoip}/last_download.json`));
      assert.equal(last.code, "geoip-stopped");
      const order = logs.map((l) => l.msg);
      const ended = order.indexOf("operation stopped");
      assert.ok(ended >= 0, order.join("\n"));
      assert.ok(ended < order.lastIndexOf("stopped"), "the download ended before the stop");
      assert.ok(!logs.some((l) => l.code === "stop-failed"), "every part stopped cleanly");
    } finally {
      release();
      if (!stopped) await ctl.shutdown();
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
