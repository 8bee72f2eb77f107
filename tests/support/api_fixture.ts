/**
 * The admin API on a fresh controller state (temp dir, real SQLite, real
 * keystore and PKI), called in-process through its fetch-style handler.
 * Argon2id runs with a small cost here (real algorithm, test speed).
 */
import { type App, type AppDeps, createApp } from "../../controller/api/app.ts";
import type { ConnInfo } from "../../controller/api/access.ts";
import { type ControllerState, openState } from "../../controller/state.ts";

export const ORIGIN = "http://127.0.0.1:8443";
export const ADMIN_EMAIL = "ops@example.com";
export const ADMIN_PASSWORD = "correct horse battery staple";

/** A clock tests move by hand. */
export class TestClock {
  constructor(public ms = Date.parse("2030-01-01T00:00:00Z")) {}
  now = (): Date => new Date(this.ms);
  advance(ms: number): void {
    this.ms += ms;
  }
}

export interface ApiFixture {
  app: App;
  state: ControllerState;
  clock: TestClock;
  dir: string;
  logs: string[];
  close(): Promise<void>;
}

export async function apiFixture(extra: Partial<AppDeps> = {}): Promise<ApiFixture> {
  const dir = await Deno.makeTempDir({ prefix: "pharos-api-" });
  const state = await openState(dir, { create: true });
  const clock = new TestClock();
  const logs: string[] = [];
  const { createLogger } = await import("../../core/log.ts");
  const app = createApp({
    state,
    clock: clock.now,
    passwordCost: { memoryKiB: 4096, iterations: 1 },
    log: createLogger("api", { level: "debug", sink: (l) => logs.push(l) }),
    ...extra,
  });
  return {
    app,
    state,
    clock,
    dir,
    logs,
    async close() {
      app.close();
      state.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

export interface Call {
  body?: unknown;
  cookie?: string;
  csrf?: string;
  token?: string;
  origin?: string | null;
  headers?: Record<string, string>;
  info?: ConnInfo;
}

/** One request to the handler; Origin defaults to the dashboard's own. */
export async function call(
  app: App,
  method: string,
  path: string,
  c: Call = {},
): Promise<Response> {
  const headers = new Headers(c.headers);
  headers.set("host", "127.0.0.1:8443");
  if (c.origin !== null) headers.set("origin", c.origin ?? ORIGIN);
  if (c.cookie) headers.set("cookie", c.cookie);
  if (c.csrf) headers.set("x-csrf-token", c.csrf);
  if (c.token) headers.set("authorization", `Bearer ${c.token}`);
  let body: string | undefined;
  if (c.body !== undefined) {
    headers.set("content-type", "application/json");
    body = JSON.stringify(c.body);
  }
  return await app(
    new Request(`http://127.0.0.1:8443${path}`, { method, headers, body }),
    c.info ?? { remoteAddr: "127.0.0.1" },
  );
}

export interface Session {
  cookie: string;
  csrf: string;
}

/** The session cookie (name=value) a response set. */
export function sessionCookie(res: Response): string {
  const set = res.headers.getSetCookie().find((c) => c.startsWith("pharos_session="));
  if (!set) throw new Error("no session cookie set");
  return set.split(";")[0];
}

/** Creates the first admin through a setup token. */
export async function setupAdmin(
  app: App,
  email = ADMIN_EMAIL,
  password = ADMIN_PASSWORD,
): Promise<void> {
  const { token } = app.auth.createSetupToken("cli:test");
  const res = await call(app, "POST", "/api/auth/setup", { body: { token, email, password } });
  if (res.status !== 201) throw new Error(`setup: ${res.status} ${await res.text()}`);
}

/** Signs in (password only) and returns the cookie and CSRF token. */
export async function login(
  app: App,
  email = ADMIN_EMAIL,
  password = ADMIN_PASSWORD,
  info?: ConnInfo,
): Promise<Session> {
  const res = await call(app, "POST", "/api/auth/login", { body: { email, password }, info });
  if (res.status !== 200) throw new Error(`login: ${res.status} ${await res.text()}`);
  const body = await res.json();
  return { cookie: sessionCookie(res), csrf: body.csrf_token };
}

/** A signed-in admin on a fresh fixture. */
export async function adminSession(fx: ApiFixture): Promise<Session> {
  await setupAdmin(fx.app);
  return await login(fx.app);
}
