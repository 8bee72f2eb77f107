/**
 * "Reseal all profiles" in a real Chromium against the real admin API and
 * accounts service: the profiles page's form (CSRF, no script needed)
 * starts the operation and leads to its live page, which (the reseal held
 * until the page is live) follows the progress over the feed to "3 of 3
 * devices resealed"; the API's operation and every profile's revision say
 * the same.
 */
import assert from "node:assert/strict";
import type { BrowserContext } from "playwright-core";
import { statement } from "../../controller/db/sqlite.ts";
import { ADMIN, claimOf, clientKeys } from "../support/accounts_fixture.ts";
import { chromiumCap, launch } from "./browser.ts";
import { ADMIN_EMAIL, ADMIN_PASSWORD, startTestController } from "./harness.ts";
import { publishScreenshots, screenshotDir } from "./screenshots.ts";

/** Bound of every wait on the page (a loaded 2-core machine is slow, never this slow). */
const T = 15_000;

Deno.test({
  name: "reseal in Chromium: Reseal all profiles leads to the live operation page",
  ignore: chromiumCap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const ctl = await startTestController();
    const browser = await launch().catch(async (e) => {
      await ctl.close();
      throw e;
    });
    let ctx: BrowserContext | undefined;
    try {
      await ctl.createAdmin();
      ctl.fx.addNode("fra-1");
      ctl.fx.addNode("ams-1");
      const devices: string[] = [];
      for (const email of ["alice@example.net", "alice@example.net", "bob@example.net"]) {
        if (!devices.length || email === "bob@example.net") {
          ctl.fx.accounts.createUser(ADMIN, email);
        }
        const t = ctl.fx.accounts.createTicket(email, { actor: ADMIN, unbound: true });
        const token = new URL(t.url).searchParams.get("token")!;
        devices.push((await ctl.fx.accounts.claim(claimOf(token, await clientKeys()))).deviceId);
      }
      const revision = (id: string) =>
        Number(
          (statement(ctl.fx.state.db, "SELECT revision FROM sealed_profiles WHERE device_id = ?")
            .get(id) as { revision: number }).revision,
        );
      const before = devices.map(revision);

      // The real reseal, held until the operation page is open and live, so the
      // progress is seen arriving over the feed rather than already there.
      const accounts = ctl.fx.accounts;
      const realReseal = accounts.resealProfiles.bind(accounts);
      let release = () => {};
      const gate = new Promise<void>((r) => release = r);
      accounts.resealProfiles = async (opts) => {
        await gate;
        return await realReseal(opts);
      };

      ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
      const errors: string[] = [];
      ctx.on("page", (p) => p.on("pageerror", (e) => errors.push(e.message)));
      const page = await ctx.newPage();
      await page.goto(`${ctl.url}/login`);
      await page.getByLabel("E-mail").fill(ADMIN_EMAIL);
      await page.getByLabel("Password").fill(ADMIN_PASSWORD);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { name: "Fleet" }).waitFor({ timeout: T });

      await page.goto(`${ctl.url}/profiles`);
      await page.waitForSelector("html[data-live=on]", { timeout: T });
      const form = page.getByRole("form", { name: "Reseal all profiles" });
      assert.equal(await form.locator('input[name="_csrf"]').count(), 1);
      await form.getByRole("button", { name: "Reseal all profiles" }).click();
      await page.waitForURL(/\/operations\/[0-9a-f-]{36}$/, { timeout: T });
      await page.getByRole("heading", { name: /Reseal of all profiles/ }).waitFor({ timeout: T });
      await page.waitForSelector("html[data-live=on]", { timeout: T });
      await page.locator("h1 .badge", { hasText: "running" }).waitFor({ timeout: T });
      release();
      const progress = page.locator("[data-reseal-progress]");
      await page.getByText("3 of 3 devices resealed").first().waitFor({ timeout: T }).catch(
        async (e) => {
          throw new Error(`${e}\n${await page.locator("#main").innerHTML()}`);
        },
      );
      assert.equal((await progress.innerText()).trim(), "3 of 3 devices resealed");
      assert.equal(
        await page.getByRole("progressbar", { name: "Devices done" }).getAttribute("value"),
        "3",
      );
      await page.locator("h1 .badge", { hasText: "done" }).waitFor({ timeout: T });
      const shots = await screenshotDir();
      await page.screenshot({ path: `${shots}/reseal.png`, fullPage: true });
      await publishScreenshots(shots);

      // The API agrees: the operation is done with 3 of 3, and each profile has a new revision.
      const id = page.url().split("/").at(-1)!;
      const op = await (await page.request.get(`${ctl.url}/api/operations/${id}`)).json();
      assert.equal(op.status, "done");
      assert.equal(op.kind, "profiles.reseal");
      assert.deepEqual(
        [op.events.at(-1).status, op.events.at(-1).done, op.events.at(-1).total],
        ["finished", 3, 3],
      );
      assert.deepEqual(devices.map(revision), before.map((r) => r + 1));
      assert.deepEqual(errors, []);
    } finally {
      await ctx?.close();
      await browser.close();
      await ctl.close();
    }
  },
});
