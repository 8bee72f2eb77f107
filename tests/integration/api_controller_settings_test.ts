/**
 * The dashboard's proxy and metrics settings on a started controller, over
 * real sockets: --trusted-proxies decides whose X-Forwarded-Proto makes the
 * session cookie Secure (a proxy at 127.0.0.2, a direct client at
 * 127.0.0.1 — both loopback, distinct peers), and --metrics-loopback opens
 * /metrics to loopback peers without a token, but not to requests a trusted
 * proxy on this host brings in from elsewhere.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { AdminAuth } from "../../controller/api/admin_auth.ts";
import { resolveConfig } from "../../controller/config.ts";
import { type RunningController, startController } from "../../controller/serve.ts";
import { Service } from "../../controller/service/service.ts";
import { ADMIN_EMAIL, ADMIN_PASSWORD } from "../support/api_fixture.ts";
import { WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const PROXY = "127.0.0.2";
const DIRECT = "127.0.0.1";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** One HTTP request to the dashboard from the given local address. */
function request(
  port: number,
  from: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const done = new Promise<Answer>((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      method,
      path,
      localAddress: from,
      headers: {
        ...headers,
        ...(payload ? { "content-type": "application/json" } : {}),
      },
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: new TextDecoder().decode(
            chunks.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array()),
          ),
        }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(payload);
  });
  return within(done, WAIT_MS, `${method} ${path} from ${from}`);
}

async function start(dir: string, flags: Record<string, string>, env: Record<string, string>) {
  const cfg = resolveConfig(
    { state: dir, "ui-listen": "127.0.0.1:0", "relay-listen": "off", ...flags },
    (n) => env[n],
  );
  return await within(startController(cfg, { logSink: () => {} }), WAIT_MS, "controller start");
}

function sessionCookieOf(a: Answer): string {
  const set = (a.headers["set-cookie"] ?? []).find((c) => c.startsWith("pharos_session="));
  assert.ok(set, `a session cookie (${a.status} ${a.text})`);
  return set;
}

Deno.test({
  name: "api settings: Secure cookie only via the trusted proxy; /metrics on loopback only when on",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pharos-api-settings-" });
    let ctl: RunningController | undefined;
    try {
      // The proxy list from the environment, the metrics switch as a flag.
      ctl = await start(dir, { "metrics-loopback": "on" }, {
        PHAROS_TRUSTED_PROXIES: `${PROXY}/32,2001:db8::/32`,
      });
      const port = ctl.uiPort;
      const auth = new AdminAuth({
        service: new Service(ctl.state.db),
        keystore: ctl.state.keystore,
      });
      const { token } = auth.createSetupToken("cli:test");
      const made = await request(port, DIRECT, "POST", "/api/auth/setup", {}, {
        token,
        email: ADMIN_EMAIL,
        password: ADMIN_PASSWORD,
      });
      assert.equal(made.status, 201, made.text);

      const signIn = (from: string) =>
        request(port, from, "POST", "/api/auth/login", { "x-forwarded-proto": "https" }, {
          email: ADMIN_EMAIL,
          password: ADMIN_PASSWORD,
        });
      const viaProxy = sessionCookieOf(await signIn(PROXY));
      assert.match(viaProxy, /; Secure/, "https said by the trusted proxy");
      assert.match(viaProxy, /HttpOnly/);
      const direct = sessionCookieOf(await signIn(DIRECT));
      assert.doesNotMatch(direct, /Secure/, "the same header from another peer is ignored");

      const open = await request(port, DIRECT, "GET", "/metrics");
      assert.equal(open.status, 200, "loopback, no token, switched on");
      assert.match(open.text, /# TYPE pharos_api_request_duration_seconds histogram/);
      const proxied = await request(port, PROXY, "GET", "/metrics", {
        "x-forwarded-for": "198.51.100.7",
      });
      assert.equal(proxied.status, 401, "a request the proxy brings in is not a local one");
      await within(ctl.shutdown(), WAIT_MS, "controller stop");
      ctl = undefined;

      // Default (off): loopback needs a token like anyone else.
      ctl = await start(dir, {}, {});
      const closed = await request(ctl.uiPort, DIRECT, "GET", "/metrics");
      assert.equal(closed.status, 401);
      assert.equal(JSON.parse(closed.text).error.code, "unauthenticated");
      // Nor is any proxy trusted by default.
      const plain = sessionCookieOf(
        await request(
          ctl.uiPort,
          PROXY,
          "POST",
          "/api/auth/login",
          { "x-forwarded-proto": "https" },
          { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
        ),
      );
      assert.doesNotMatch(plain, /Secure/);
    } finally {
      if (ctl) await within(ctl.shutdown(), WAIT_MS, "controller stop");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
