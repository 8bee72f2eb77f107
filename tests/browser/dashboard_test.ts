/**
 * The dashboard in a real Chromium against the real admin API: first-admin
 * setup, sign-in with TOTP, the policy toggles and their preview, a ticket
 * QR read back from the page's pixels, three tabs updated together, a 409
 * conflict shown and resolved, a device revoked, pages readable without
 * JavaScript, and a screenshot of every page (screenshots.ts says where).
 * The onboarding runs the real engine against a real sshd and agent
 * (onboarding_host.ts) and is watched step by step on the page.
 */
import assert from "node:assert/strict";
import * as OTPAuth from "otpauth";
import type { BrowserContext, Page } from "playwright-core";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { Users } from "../../controller/service/users.ts";
import { ADMIN, claimOf, clientKeys } from "../support/accounts_fixture.ts";
import { chromiumCap, launch } from "./browser.ts";
import {
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  startTestController,
  type TestController,
} from "./harness.ts";
import { decodeQrPng } from "./qr.ts";
import { nodeOnboarding } from "../../controller/api/onboard.ts";
import { STEPS } from "../../controller/onboarding/events.ts";
import { OnboardingHost, onboardingHostCapability } from "./onboarding_host.ts";
import { eventually } from "../support/agent_harness.ts";
import { publishScreenshots, screenshotDir } from "./screenshots.ts";
import { observedEvent } from "../../controller/api/feed.ts";

const hostCap = onboardingHostCapability();
/** Bound of every wait on the page (a loaded 2-core machine is slow, never this slow). */
const T = 15_000;

async function signIn(page: Page, base: string, code?: () => string): Promise<void> {
  await page.goto(`${base}/login`);
  await page.getByLabel("E-mail").fill(ADMIN_EMAIL);
  await page.getByLabel("Password").fill(ADMIN_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  if (code) {
    await page.getByRole("heading", { name: "Two-factor code" }).waitFor({ timeout: T });
    await page.getByLabel(/authenticator app/).fill(code());
    await page.getByRole("button", { name: "Continue" }).click();
  }
  await page.getByRole("heading", { name: "Fleet" }).waitFor({ timeout: T });
}

async function live(page: Page): Promise<void> {
  await page.waitForSelector("html[data-live=on]", { timeout: T });
}

/** Where this run's screenshots go (outside the repository; see screenshots.ts). */
const SHOTS = await screenshotDir();

async function shot(page: Page, name: string, fullPage = true): Promise<void> {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage });
}

Deno.test({
  name: "dashboard in Chromium",
  ignore: chromiumCap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    // The starter reads the controller's state when a request comes, after it exists.
    const late: { ctl?: TestController; host?: OnboardingHost } = {};
    const ctl = late.ctl = await startTestController({
      onboard: (actor, input) =>
        nodeOnboarding(late.ctl!.fx.state, late.host?.overrides)(actor, input),
    });
    const abort = async (e: unknown): Promise<never> => {
      await late.host?.close();
      await ctl.close();
      throw e;
    };
    const host = late.host = hostCap.ignore
      ? undefined
      : await OnboardingHost.start(ctl.fx.state).catch(abort);
    const browser = await launch().catch(abort);
    const nodes = new Nodes(new Service(ctl.fx.state.db));
    const fra = ctl.fx.addNode("fra-1");
    nodes.setPolicy(ADMIN, fra, { forwarding: false, masquerade: false, isolation: false });
    nodes.create(ADMIN, { name: "nyc-1", host: "203.0.113.40", region: "nyc1" });
    const sgp =
      nodes.create(ADMIN, { name: "sgp-1", host: "203.0.113.41", region: "ap-southeast-1" })
        .id;
    const nyc = nodes.list().find((n) => n.name === "nyc-1")!.id;
    const alice = new Users(new Service(ctl.fx.state.db)).add(ADMIN, {
      email: "alice@example.net",
    });
    const errors: string[] = [];
    const watch = (p: Page) => {
      p.on("pageerror", (e) => errors.push(`${p.url()}: ${e.message}`));
      p.on("console", (m) => {
        if (m.type() === "error" && /Content Security Policy|Refused/.test(m.text())) {
          errors.push(`${p.url()}: ${m.text()}`);
        }
      });
    };
    let ctx: BrowserContext | undefined;
    try {
      ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
      ctx.on("page", watch);
      const page = await ctx.newPage();
      let totp: OTPAuth.TOTP | undefined;

      await t.step("first-admin setup from the one-time link, then sign-in with TOTP", async () => {
        await page.goto(`${ctl.url}/setup?token=${encodeURIComponent(ctl.setupToken())}`);
        await shot(page, "setup");
        await page.getByLabel("E-mail").fill(ADMIN_EMAIL);
        await page.getByLabel(/^Password/).fill(ADMIN_PASSWORD);
        await page.getByRole("button", { name: "Create admin" }).click();
        await page.getByRole("heading", { name: "Sign in" }).waitFor({ timeout: T });
        await shot(page, "login");
        await signIn(page, ctl.url);
        // Enrol TOTP on the settings page.
        await page.goto(`${ctl.url}/settings`);
        await page.waitForSelector("html[data-hydrated]");
        await page.getByRole("button", { name: "Set up two-factor sign-in" }).click();
        const uri = await page.locator("input[data-otpauth]").inputValue();
        assert.equal(await page.locator("[data-recovery] li").count() > 0, true);
        await shot(page, "settings-totp");
        totp = OTPAuth.URI.parse(uri) as OTPAuth.TOTP;
        await page.getByLabel("First code from the app").fill(totp.generate());
        await page.getByRole("button", { name: "Turn on" }).click();
        await page.getByText(/Two-factor sign-in is on/).waitFor({ timeout: T });
        await page.getByRole("button", { name: "Sign out", exact: true }).click();
        await page.getByRole("heading", { name: "Sign in" }).waitFor({ timeout: T });
        // The next time step's code: the confirming one may not be used twice.
        const next = () => totp!.generate({ timestamp: Date.now() + 30_000 });
        await page.goto(`${ctl.url}/login`);
        await page.getByLabel("E-mail").fill(ADMIN_EMAIL);
        await page.getByLabel("Password").fill(ADMIN_PASSWORD);
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.getByRole("heading", { name: "Two-factor code" }).waitFor({ timeout: T });
        await shot(page, "login-totp");
        await page.getByLabel(/authenticator app/).fill(next());
        await page.getByRole("button", { name: "Continue" }).click();
        await page.getByRole("heading", { name: "Fleet" }).waitFor({ timeout: T });
        assert.match(await page.locator("header").innerText(), /Signed in as\s+admin@example\.net/);
        assert.equal(await page.locator(".map a").count(), 3, "three nodes on the map");
      });

      await t.step({
        name: "onboarding a node over the real sshd: each step appears live, the agent answers",
        ignore: hostCap.ignore,
        fn: async () => {
          const h = host!;
          // Every render of the operation page, from its first paint: the server's, then
          // each live re-render. A reload would start the list afresh.
          await page.addInitScript(() => {
            if (!location.pathname.startsWith("/operations/")) return;
            const w = window as unknown as { seen: string[] };
            w.seen = [];
            const note = () => {
              const snap = [...document.querySelectorAll("li[data-step]")]
                .map((li) => `${li.getAttribute("data-step")}:${li.textContent}`).join("|");
              if (w.seen.at(-1) !== snap) w.seen.push(snap);
            };
            document.addEventListener("DOMContentLoaded", () => {
              note();
              new MutationObserver(note).observe(document.getElementById("main")!, {
                childList: true,
                subtree: true,
                characterData: true,
              });
            });
          });
          await page.goto(`${ctl.url}/`);
          const form = page.getByRole("form", { name: "Onboard a node" });
          await form.getByLabel(/^Host/).fill("127.0.0.1");
          await form.getByLabel(/^Name/).fill("lab-1");
          await form.getByLabel(/^SSH port/).fill(String(h.port));
          await form.getByLabel(/^SSH user/).fill("root");
          await form.getByLabel(/^Region/).fill("hel1");
          await form.getByRole("button", { name: "Onboard" }).click();
          await page.waitForURL(/\/operations\//, { timeout: T });
          await live(page);
          const step = (name: string) => page.locator(`li[data-step="${name}"]`);
          // Connect, privilege and install really run over SSH; gen-csr is held on the host.
          await step("gen-csr").getByText(/started/).waitFor({ timeout: 60_000 });
          for (const s of ["connect", "privilege", "install"]) {
            assert.match(await step(s).innerText(), /\bdone\b/, s);
          }
          assert.match(await step("connect").innerText(), /SHA256:/, "the pinned host key");
          assert.equal(await step("sign").count(), 0, "nothing past the held step");
          await page.getByText(`3 of ${STEPS.length} steps done`).waitFor({ timeout: T });
          await h.releaseGenCsr();
          // The real agent makes the key, the controller signs, uploads and starts the agent;
          // "ready" then waits for NodeControl, which the test has not let through yet.
          await step("ready").getByText(/NodeControl not answering yet/).waitFor({
            timeout: 60_000,
          });
          for (const s of STEPS.slice(0, -1)) {
            assert.match(await step(s).innerText(), /\bdone\b/, s);
          }
          assert.match(await step("sign").innerText(), /serial [0-9a-f]+/);
          await page.getByText(`${STEPS.length - 1} of ${STEPS.length} steps done`).waitFor({
            timeout: T,
          });
          await shot(page, "onboarding-running");
          await h.openNodeControl();
          await step("ready").getByText(/NodeControl at unix:.* answers/).waitFor({
            timeout: 60_000,
          }).catch(async (e) => {
            const shown = await page.locator("main").innerText();
            throw new Error(`${e.message}\npage:\n${shown}\nagent log:\n${await h.agentLog()}`);
          });
          await page.getByText(`${STEPS.length} of ${STEPS.length} steps done`).waitFor({
            timeout: T,
          });
          await page.locator("h1", { hasText: /done/ }).waitFor({ timeout: T });
          await page.getByText(/node lab-1 is onboarded \(certificate serial [0-9a-f]+\)/)
            .waitFor({ timeout: T });
          await shot(page, "onboarding");
          // The one document saw it all arrive: each render shows the steps so far in
          // order; gen-csr running with nothing after it, then ready waiting, then done.
          const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
          // (A render before the first step arrived shows none: nothing to order.)
          for (const snap of seen.filter((s) => s !== "")) {
            const names = snap.split("|").map((x) => x.slice(0, x.indexOf(":")));
            assert.deepEqual(names, STEPS.slice(0, names.length), snap);
          }
          const at = (re: RegExp) => seen.findIndex((snap) => re.test(snap));
          const held = at(/gen-csr:[^|]*started[^|]*$/);
          const waiting = at(/ready:[^|]*not answering yet/);
          const answered = at(/ready:[^|]*answers/);
          assert.ok(0 <= held && held < waiting && waiting < answered, seen.join("\n"));
          const lab = nodes.require("lab-1");
          assert.equal(lab.onboarding, "done");
          assert.equal(lab.status, "active");
          assert.equal(lab.sshPort, h.port);
          assert.match(await h.agentLog(), /NodeControl listening/, "the real agent runs");
          await page.getByRole("link", { name: "Open the node" }).click();
          await page.getByRole("heading", { name: /Node lab-1/ }).waitFor({ timeout: T });
        },
      });

      await t.step("policy toggle changes the rule preview, apply persists it", async () => {
        await page.goto(`${ctl.url}/nodes/${fra}`);
        await page.waitForSelector("html[data-hydrated]");
        const preview = page.locator("pre[data-preview]");
        const before = await preview.innerText();
        const fwd = page.getByLabel(/^Forwarding/);
        const masq = page.getByLabel(/^Masquerade/);
        assert.equal(await fwd.isChecked(), false);
        assert.equal(await masq.isDisabled(), true, "masquerade needs forwarding");
        await fwd.check();
        await page.waitForFunction(
          (b) => document.querySelector("pre[data-preview]")!.textContent !== b,
          before,
          { timeout: T },
        );
        const withFwd = await preview.innerText();
        assert.match(withFwd, /FORWARD/);
        await masq.check();
        await page.waitForFunction(
          () => /MASQUERADE/.test(document.querySelector("pre[data-preview]")!.textContent!),
          undefined,
          { timeout: T },
        );
        await page.getByRole("button", { name: "Apply policy" }).click();
        await page.getByText(/Policy applied \(version \d+\)/).waitFor({ timeout: T });
        await shot(page, "node");
        const saved = nodes.require(fra);
        assert.equal(saved.forwarding, true);
        assert.equal(saved.masquerade, true);
        await page.reload();
        assert.equal(await page.getByLabel(/^Masquerade/).isChecked(), true);
      });

      await t.step(
        "keyboard only: skip link, tab to a toggle, space changes the preview",
        async () => {
          nodes.setPolicy(ADMIN, nyc, { forwarding: true, masquerade: false, isolation: false });
          await page.goto(`${ctl.url}/nodes/${nyc}`);
          await page.waitForSelector("html[data-hydrated]");
          await page.keyboard.press("Tab");
          assert.equal(
            await page.evaluate(() => document.activeElement?.textContent),
            "Skip to content",
          );
          await page.keyboard.press("Enter");
          const before = await page.locator("pre[data-preview]").innerText();
          let reached = false;
          for (let i = 0; i < 40 && !reached; i++) {
            await page.keyboard.press("Tab");
            reached = await page.evaluate(() =>
              (document.activeElement as HTMLInputElement | null)?.name === "isolation"
            );
          }
          assert.ok(reached, "the isolation toggle is reachable with Tab");
          await page.keyboard.press("Space");
          await page.waitForFunction(
            (b) => document.querySelector("pre[data-preview]")!.textContent !== b,
            before,
            { timeout: T },
          );
          assert.equal(await page.getByLabel(/^Client isolation/).isChecked(), true);
        },
      );

      await t.step(
        "a ticket's QR code, read back from the page's pixels, is its deep link",
        async () => {
          await page.goto(`${ctl.url}/tickets`);
          await page.waitForSelector("html[data-hydrated]");
          await page.getByLabel("For user").selectOption("alice@example.net");
          await page.getByRole("button", { name: "Create ticket" }).click();
          const img = page.locator("img.qr");
          await img.waitFor({ timeout: T });
          await page.waitForFunction(
            () => (document.querySelector("img.qr") as HTMLImageElement)?.naturalWidth > 0,
            undefined,
            { timeout: T },
          );
          const link = await page.locator("input[data-deeplink]").inputValue();
          assert.match(link, /^pharosvpn:\/\/enroll\?/);
          // A live refresh of the page may catch the image mid-repaint: read until readable.
          let decoded: string | null = null;
          await eventually(async () => (decoded = decodeQrPng(await img.screenshot())) !== null, T);
          assert.equal(decoded, link);
          // The copy button works once hydrated.
          await ctx!.grantPermissions(["clipboard-read", "clipboard-write"], { origin: ctl.url });
          await page.getByRole("button", { name: "Copy link" }).click();
          await page.getByText("Copied.").waitFor({ timeout: T });
          assert.equal(await page.evaluate(() => navigator.clipboard.readText()), link);
          await shot(page, "tickets");
          // The ticket is listed; its link is not (shown once).
          await page.reload();
          assert.match(await page.locator("table").innerText(), /alice@example\.net/);
          assert.equal(
            (await page.content()).includes(new URL(link).searchParams.get("token")!),
            false,
          );
        },
      );

      await t.step("three tabs update together, after the CLI and after another tab", async () => {
        const tabs = [page, await ctx!.newPage(), await ctx!.newPage()];
        for (const p of tabs) {
          await p.goto(`${ctl.url}/nodes/${nyc}`);
          await live(p);
        }
        const legend = (p: Page) => p.locator("legend").innerText();
        const v0 = nodes.require(nyc).version;
        // A change outside the dashboard (the service layer, as `cox` makes it).
        nodes.setPolicy(ADMIN, nyc, { forwarding: true, masquerade: false, isolation: true });
        for (const p of tabs) {
          await p.getByText(`Network policy (version ${v0 + 1})`).waitFor({ timeout: T });
          assert.equal(await p.getByLabel(/^Client isolation/).isChecked(), true);
        }
        // A change in one tab reaches the other two.
        await tabs[0].getByLabel(/^Masquerade/).check();
        await tabs[0].getByRole("button", { name: "Apply policy" }).click();
        for (const p of tabs) {
          await p.getByText(`Network policy (version ${v0 + 2})`).waitFor({ timeout: T });
          assert.equal(await p.getByLabel(/^Masquerade/).isChecked(), true);
          assert.match(await legend(p), new RegExp(`version ${v0 + 2}`));
        }
        await tabs[1].close();
        await tabs[2].close();
      });

      await t.step(
        "observed-state batches refresh only the pages that show that node",
        async () => {
          const nodePage = page;
          const other = await ctx!.newPage();
          await nodePage.goto(`${ctl.url}/nodes/${nyc}`);
          await other.goto(`${ctl.url}/settings`);
          for (const p of [nodePage, other]) await live(p);
          const state = (p: Page) =>
            p.evaluate(() => ({
              seq: Number(document.documentElement.dataset.seq ?? 0),
              refreshes: Number(document.documentElement.dataset.refreshes ?? 0),
            }));
          const [n0, o0] = [await state(nodePage), await state(other)];
          // A batch naming another node, then one naming this node: once the node page has
          // refreshed for the second, both tabs have seen both events.
          ctl.app.feed.publish("observed", observedEvent([crypto.randomUUID()]));
          const mine = ctl.app.feed.publish("observed", observedEvent([nodes.require(nyc).id]));
          await nodePage.waitForFunction(
            (n) => Number(document.documentElement.dataset.refreshes ?? 0) > n,
            n0.refreshes,
            { timeout: T },
          );
          await other.waitForFunction(
            (seq) => Number(document.documentElement.dataset.seq ?? 0) >= seq,
            mine.seq,
            { timeout: T },
          );
          const [n1, o1] = [await state(nodePage), await state(other)];
          assert.ok(n1.seq >= mine.seq && n1.refreshes > n0.refreshes, JSON.stringify({ n0, n1 }));
          assert.equal(o1.refreshes, o0.refreshes, "the settings page shows no observed state");
          await other.close();
        },
      );

      await t.step(
        "a stale edit shows the 409 with the current values and re-applies",
        async () => {
          const a = page;
          const b = await ctx!.newPage();
          nodes.setPolicy(ADMIN, sgp, { forwarding: true, masquerade: false, isolation: false });
          for (const p of [a, b]) {
            await p.goto(`${ctl.url}/nodes/${sgp}`);
            await live(p);
          }
          const loaded = nodes.require(sgp).version;
          await a.getByLabel(/^Client isolation/).check(); // A edits, does not apply yet
          await b.getByLabel(/^Masquerade/).check();
          await b.getByRole("button", { name: "Apply policy" }).click();
          await b.getByText(`Policy applied (version ${loaded + 1})`).waitFor({ timeout: T });
          await a.getByRole("button", { name: "Apply policy" }).click();
          const conflict = a.locator("[data-conflict]");
          await conflict.waitFor({ timeout: T });
          const text = await conflict.innerText();
          assert.match(text, new RegExp(`Current policy \\(version ${loaded + 1}\\)`));
          assert.match(text, /forwarding on, masquerade on, isolation off/);
          assert.match(text, /Your change: forwarding on, masquerade off, isolation on/);
          await shot(a, "conflict");
          await a.getByRole("button", { name: "Re-apply my change" }).click();
          await a.getByText(`Policy applied (version ${loaded + 2})`).waitFor({ timeout: T });
          const now = nodes.require(sgp);
          assert.equal(now.isolation, true);
          assert.equal(now.version, loaded + 2);
          await b.close();
        },
      );

      await t.step("revoke a device", async () => {
        // Claimed here without the link's bind key: this step is about revoking.
        const ticket = ctl.fx.accounts.createTicket("alice@example.net", {
          actor: ADMIN,
          unbound: true,
        });
        const token = new URL(ticket.url).searchParams.get("token")!;
        const claimed = await ctl.fx.accounts.claim(claimOf(token, await clientKeys()));
        await page.goto(`${ctl.url}/devices`);
        const row = page.locator("tr", { hasText: claimed.deviceId });
        assert.match(await row.innerText(), /active/);
        await shot(page, "devices");
        await row.getByRole("button", { name: `Revoke device ${claimed.deviceId}` }).click();
        await page.getByRole("heading", { name: "Devices" }).waitFor({ timeout: T });
        await page.locator("tr", { hasText: claimed.deviceId }).getByText("revoked").first()
          .waitFor({ timeout: T });
        assert.equal(ctl.fx.devices.get(claimed.deviceId)?.status, "revoked");
      });

      await t.step("API token: the secret is shown once, never again", async () => {
        await page.goto(`${ctl.url}/tokens`);
        await page.waitForSelector("html[data-hydrated]");
        await page.getByLabel("Name").fill("monitoring");
        await page.getByLabel("Scope").selectOption("monitor");
        await page.getByRole("button", { name: "Create token" }).click();
        const secret = await page.locator("[data-secret]").innerText();
        assert.match(secret, /^pht_/);
        await shot(page, "tokens");
        await page.reload();
        assert.match(await page.locator("table").innerText(), /monitoring/);
        assert.equal((await page.content()).includes(secret), false);
      });

      await t.step("audit chain verifies from the page", async () => {
        await page.goto(`${ctl.url}/audit`);
        assert.match(await page.locator("table").innerText(), /node\.policy|policy/);
        await shot(page, "audit", false);
        await page.getByRole("button", { name: "Verify chain" }).click();
        await page.getByRole("heading", { name: "Done" }).waitFor({ timeout: T });
        assert.match(await page.locator("main").innerText(), /ok\s+yes/);
      });

      await t.step("every page renders; screenshots for the README", async () => {
        const pages: [string, string, RegExp][] = [
          ["/", "fleet", /Nodes/],
          ["/relays", "relays", /Relays/],
          ["/paths", "paths", /Paths/],
          ["/users", "users", /alice@example\.net/],
          ["/profiles", "profiles", /alice@example\.net/],
          [`/profiles/${alice.id}`, "profile", /Profiles of alice@example\.net/],
          ["/sessions", "sessions", /Sessions/],
          ["/alerts", "alerts", /Alerts/],
          ["/settings", "settings", /Settings/],
        ];
        for (const [path, name, expect] of pages) {
          const res = await page.goto(`${ctl.url}${path}`);
          assert.equal(res?.status(), 200, path);
          assert.match(await page.locator("main").innerText(), expect, path);
          await shot(page, name);
        }
        await page.setViewportSize({ width: 390, height: 844 });
        await page.goto(`${ctl.url}/`);
        const overflow = await page.evaluate(() =>
          document.documentElement.scrollWidth - document.documentElement.clientWidth
        );
        assert.ok(overflow <= 1, `no sideways scrolling at phone width (${overflow}px)`);
        await page.screenshot({ path: `${SHOTS}/fleet-phone.png` });
        await page.setViewportSize({ width: 1200, height: 900 });
      });

      await t.step("readable and usable without JavaScript", async () => {
        const state = await ctx!.storageState();
        const nojs = await browser.newContext({ javaScriptEnabled: false, storageState: state });
        try {
          const p = await nojs.newPage();
          await p.goto(`${ctl.url}/`);
          assert.match(await p.locator("table").innerText(), /fra-1[\s\S]*nyc-1|nyc-1[\s\S]*fra-1/);
          await p.goto(`${ctl.url}/nodes/${fra}`);
          assert.match(await p.locator("pre").innerText(), /MASQUERADE/);
          const v = nodes.require(fra).version;
          await p.getByLabel(/^Masquerade/).uncheck();
          await p.getByRole("button", { name: "Apply policy" }).click();
          await p.getByText(`Network policy (version ${v + 1})`).waitFor({ timeout: T });
          assert.equal(nodes.require(fra).masquerade, false);
        } finally {
          await nojs.close();
        }
      });

      await t.step("security headers; cross-site and token-less posts are refused", async () => {
        const res = await ctx!.request.get(`${ctl.url}/`);
        const csp = res.headers()["content-security-policy"];
        assert.match(csp, /script-src 'self'/);
        assert.match(csp, /frame-ancestors 'none'/);
        assert.doesNotMatch(csp, /unsafe-inline|https?:/);
        assert.equal(res.headers()["x-frame-options"], "DENY");
        const html = await res.text();
        assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "no inline script");
        const form = {
          _api: `/api/devices/x/revoke`,
          _method: "POST",
          _back: "/devices",
        };
        const foreign = await ctx!.request.post(`${ctl.url}/_form`, {
          form: form,
          headers: { origin: "http://evil.example" },
          maxRedirects: 0,
        });
        assert.equal(foreign.status(), 403);
        const noToken = await ctx!.request.post(`${ctl.url}/_form`, {
          form: { ...form, _api: "/api/users", email: "mallory@example.net" },
          headers: { origin: ctl.url },
          maxRedirects: 0,
        });
        assert.equal(noToken.status(), 403);
        assert.equal(
          new Users(new Service(ctl.fx.state.db)).find("mallory@example.net"),
          undefined,
        );
      });
    } finally {
      await ctx?.close();
      await browser.close();
      await ctl.close();
      await host?.close();
    }
    assert.deepEqual(errors, [], "no script error and no CSP refusal on any page");
    await publishScreenshots(SHOTS);
  },
});
