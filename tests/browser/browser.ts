/**
 * Debian's Chromium driven by playwright-core (no browser download). The
 * suite is gated on /usr/bin/chromium: without it the tests are skipped
 * loudly, and fail under PHAROS_REQUIRE_ALL=1 (CI installs `chromium`).
 */
import { type Browser, chromium } from "playwright-core";
import { capability, isRoot } from "../support/capability.ts";
import { within } from "../support/wait.ts";

export const CHROMIUM = Deno.env.get("PHAROS_CHROMIUM") ?? "/usr/bin/chromium";

function hasChromium(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

export const chromiumCap = capability(
  "dashboard browser tests",
  hasChromium(),
  `${CHROMIUM} is missing (apt-get install -y chromium)`,
);

export async function launch(): Promise<Browser> {
  return await within(
    chromium.launch({
      executablePath: CHROMIUM,
      // Chromium refuses its sandbox as root; CI runs as root.
      args: isRoot() ? ["--no-sandbox"] : [],
    }),
    30_000,
    "Chromium to start",
  );
}
