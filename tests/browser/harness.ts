/**
 * A controller-like server for the dashboard tests and benchmark: the real
 * admin API (controller/api/app.ts) over a real state (database, keystore,
 * CA) with the accounts service, the dashboard mounted as its `ui`
 * handler, served by the controller's own listener (node:http, WebSocket
 * feed included) on 127.0.0.1:0.
 */
import { createApp } from "../../controller/api/app.ts";
import { startDashboard } from "../../controller/api/listener.ts";
import type { OnboardStarter } from "../../controller/api/onboard.ts";
import type { GeoipStore } from "../../controller/geoip/store.ts";
import { ConnectionBudget } from "../../core/conn_limits.ts";
import { createLogger } from "../../core/log.ts";
import { withDashboard } from "../../ui/server.ts";
import { type AccountsFixture, accountsFixture, ADMIN } from "../support/accounts_fixture.ts";

export const ADMIN_EMAIL = "admin@example.net";
export const ADMIN_PASSWORD = "correct horse battery staple";

export interface TestController {
  url: string;
  fx: AccountsFixture;
  app: ReturnType<typeof createApp>;
  /** A one-time first-admin setup token (as the controller's first start prints). */
  setupToken(): string;
  /** Creates the first admin directly (tests that do not exercise /setup). */
  createAdmin(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestController(
  opts: {
    onboard?: OnboardStarter;
    /** The GeoIP store the API serves (made over the fixture's state directory). */
    geoip?: (fx: AccountsFixture) => GeoipStore;
  } = {},
): Promise<TestController> {
  const fx = await accountsFixture();
  const log = createLogger("dashboard-test", { level: "error" });
  const app = await withDashboard((ui) =>
    createApp({
      state: fx.state,
      ui,
      accounts: fx.accounts,
      onboard: opts.onboard,
      geoip: opts.geoip?.(fx),
      log,
      // Argon2id at its lowest cost: these tests are about the dashboard, not hashing.
      passwordCost: { memoryKiB: 64, iterations: 1 },
    }), { log });
  const server = await startDashboard({
    listen: { hostname: "127.0.0.1", port: 0 },
    handler: app,
    budget: new ConnectionBudget({ total: 256, perSource: 256 }),
    log,
    noisy: log,
  });
  const a = app;
  return {
    url: `http://127.0.0.1:${server.port}`,
    fx,
    app: a,
    setupToken: () => a.auth.createSetupToken(ADMIN).token,
    async createAdmin() {
      await a.auth.setup(a.auth.createSetupToken(ADMIN).token, ADMIN_EMAIL, ADMIN_PASSWORD);
    },
    async close() {
      await server.close(1000);
      a.close();
      await fx.close();
    },
  };
}
