/**
 * GeoIP in a real Chromium: the settings page's "Download now" starts the
 * download and the operation page shows it live (the server holds half of
 * the file until the page has shown the download running, then the page
 * updates itself to "in use"); afterwards the fleet map places a node with
 * an IP host by GeoIP (Paris, not its region's Virginia) and a named host
 * by its region, each marker saying which, in words.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { GeoipStore } from "../../controller/geoip/store.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Settings } from "../../controller/service/settings.ts";
import { ADMIN } from "../support/accounts_fixture.ts";
import { PARIS, serveFiles, tarGz, TOKYO, writeCityDb } from "../support/geoip_fixture.ts";
import { goCapability } from "../support/go_peer.ts";
import { chromiumCap, launch } from "./browser.ts";
import { ADMIN_EMAIL, ADMIN_PASSWORD, startTestController } from "./harness.ts";
import { publishScreenshots, screenshotDir } from "./screenshots.ts";

const goCap = goCapability("geoip dashboard");
/** Bound of every wait on the page. */
const T = 15_000;

async function signIn(page: Page, base: string): Promise<void> {
  await page.goto(`${base}/login`);
  await page.getByLabel("E-mail").fill(ADMIN_EMAIL);
  await page.getByLabel("Password").fill(ADMIN_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet" }).waitFor({ timeout: T });
}

const markerLabel = (page: Page, name: string) =>
  page.locator(`svg.map a[aria-label^="${name}:"]`).getAttribute("aria-label", { timeout: T });

Deno.test({
  name: "geoip in Chromium: download from settings shown live, then markers placed by GeoIP",
  ignore: chromiumCap.ignore || goCap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const ctl = await startTestController({
      geoip: (fx) => new GeoipStore(`${fx.dir}/state`),
    });
    const { fx, app } = ctl;
    const db = await writeCityDb(`${fx.dir}/src.mmdb`, [PARIS, TOKYO]);
    let release = () => {};
    const held = new Promise<void>((r) => release = r);
    const files = serveFiles(
      { "/GeoLite2-City.tar.gz": await tarGz({ "GeoLite2-City.mmdb": db }) },
      [],
      { path: "/GeoLite2-City.tar.gz", release: held },
    );
    const base = ctl.url;
    const browser = await launch();
    const shots = await screenshotDir();
    try {
      await ctl.createAdmin();
      const nodes = new Nodes(app.service);
      nodes.create(ADMIN, { name: "paris-1", host: "192.0.2.10", region: "us-east-1" });
      nodes.create(ADMIN, { name: "named-1", host: "node.example.net", region: "ap-northeast-1" });
      // This loopback server is plain http: taken only as the configured source (a mirror).
      new Settings(app.service).set(ADMIN, "geoip.url", files.url("/GeoLite2-City.tar.gz"));
      const page = await browser.newPage();
      await signIn(page, base);
      assert.match((await markerLabel(page, "paris-1"))!, /placed by region us-east-1$/);

      await page.goto(`${base}/settings`);
      const card = page.locator("[data-geoip]");
      assert.equal(await card.getAttribute("data-geoip", { timeout: T }), "none");
      assert.match(await card.innerText(), /none: hosts are placed by their region code/);
      await page.getByLabel(/^URL for this download only/).fill(
        files.url("/GeoLite2-City.tar.gz"),
      );
      await page.getByRole("button", { name: "Download now" }).click();
      await page.waitForURL(/\/operations\//, { timeout: T });
      // Half the file is in: the page shows the download running...
      await page.locator('li[data-step="download"]').waitFor({ timeout: T });
      assert.match(await page.locator("h1").innerText(), /running/);
      await page.screenshot({ path: `${shots}/geoip-download-running.png`, fullPage: true });
      // ...and, without a reload, the rest of it once the server sends the rest.
      await page.evaluate(() => (globalThis as unknown as { kept: number }).kept = 1);
      await page.waitForSelector("html[data-live=on]", { timeout: T });
      release();
      await page.getByText(/GeoIP database GeoLite2-City of .* in use/).waitFor({ timeout: T });
      assert.equal(await page.evaluate(() => (globalThis as unknown as { kept: number }).kept), 1);
      const steps = await page.locator("ol.steps li").evaluateAll((els) =>
        els.map((e) => e.getAttribute("data-step"))
      );
      assert.deepEqual(steps, ["download", "validate", "install"]);
      await page.screenshot({ path: `${shots}/geoip-download-done.png`, fullPage: true });

      await page.goto(`${base}/settings`);
      assert.equal(await card.getAttribute("data-geoip", { timeout: T }), "loaded");
      assert.match(await card.innerText(), /GeoLite2-City of \d{4}-\d\d-\d\d/);

      await page.goto(`${base}/`);
      assert.match((await markerLabel(page, "paris-1"))!, /placed by GeoIP \(Paris, FR\)$/);
      assert.match((await markerLabel(page, "named-1"))!, /placed by region ap-northeast-1$/);
      const paris = page.locator('svg.map a[aria-label^="paris-1:"] > *');
      assert.equal(await paris.getAttribute("data-source"), "geoip");
      // Pending: a square centred on (lon + 180, 90 - lat).
      const x = Number(await paris.getAttribute("x")) + 1.9;
      const y = Number(await paris.getAttribute("y")) + 1.9;
      assert.ok(Math.abs(x - (PARIS.lon + 180)) < 0.1 && Math.abs(y - (90 - PARIS.lat)) < 0.1);
      assert.match(
        await page.locator("[data-placed-by]").innerText(),
        /placed by GeoIP: 1, by region code \(faded\): 1/,
      );
      assert.ok(await page.getByRole("cell", { name: "GeoIP: Paris, FR" }).isVisible());
      await page.screenshot({ path: `${shots}/fleet-geoip.png`, fullPage: true });
      await publishScreenshots(shots);
    } finally {
      release();
      await browser.close();
      await files.close();
      await ctl.close();
    }
  },
});
