/**
 * Setup links of starts without an admin: each start's link replaces the
 * unused one of the start before (audited), so an old link — left in a
 * terminal's scroll-back or a service manager's log — creates no admin.
 * A link an operator made with `cox admins add` is not touched.
 */
import assert from "node:assert/strict";
import { runCli } from "../../controller/cli/run.ts";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { resolveConfig } from "../../controller/config.ts";
import { type RunningController, startController } from "../../controller/serve.ts";
import { WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const PASSWORD = "correct horse battery staple";

/** Starts the controller, returns it with the token of the setup link it printed. */
async function startPrinting(
  cfg: ReturnType<typeof resolveConfig>,
): Promise<{ ctl: RunningController; token: string }> {
  const printed: string[] = [];
  const ctl = await within(
    startController(cfg, { logSink: () => {}, print: (l) => printed.push(l) }),
    WAIT_MS,
    "the controller to start",
  );
  assert.equal(printed.length, 1, printed.join("\n"));
  const token = printed[0].match(/#token=([A-Za-z0-9_-]+)$/)?.[1];
  assert.ok(token, printed[0]);
  return { ctl, token };
}

/** What the dashboard's /setup page posts, over the controller's real listener. */
async function setup(ctl: RunningController, token: string, email: string) {
  const origin = `http://127.0.0.1:${ctl.uiPort}`;
  const res = await fetch(`${origin}/api/auth/setup`, {
    method: "POST",
    headers: { "content-type": "application/json", origin },
    body: JSON.stringify({ token, email, password: PASSWORD }),
  });
  return { status: res.status, body: await res.json() };
}

Deno.test({
  name:
    "setup link: a restart without an admin revokes the earlier start's link; the new one works",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const cfg = resolveConfig(
      { state: dir, "ui-listen": "127.0.0.1:0", "relay-listen": "off" },
      () => undefined,
    );
    try {
      const first = await startPrinting(cfg);
      await within(first.ctl.shutdown(), WAIT_MS, "the controller to stop");

      // An operator's own link, made between the starts (another process).
      const out: string[] = [];
      const io = { out: (s: string) => void out.push(s), err: (s: string) => void out.push(s) };
      assert.equal(await runCli(["admins", "add", "--state", dir], io, () => undefined), 0);
      const operators = out.join("").match(/#token=([A-Za-z0-9_-]+)/)?.[1];
      assert.ok(operators, out.join(""));

      const second = await startPrinting(cfg);
      try {
        assert.notEqual(second.token, first.token);
        const db = second.ctl.state.db;
        const unused = db.prepare(
          "SELECT COUNT(*) AS n FROM admin_setup_tokens WHERE used_at IS NULL",
        ).get() as { n: number };
        assert.equal(unused.n, 2, "the second start's link and the operator's one");
        const revoked = db.prepare(
          "SELECT actor FROM audit_log WHERE action = 'setup_token.revoke'",
        ).all() as { actor: string }[];
        assert.deepEqual(revoked.map((r) => r.actor), ["system:controller"]);

        // Attack: the first start's link, found later, is refused and creates nobody.
        const old = await setup(second.ctl, first.token, "intruder@example.com");
        assert.equal(old.status, 401, JSON.stringify(old.body));
        assert.equal(old.body.error.code, "bad-setup-token");
        const intruder = db.prepare("SELECT 1 FROM users WHERE email = ?")
          .get("intruder@example.com");
        assert.equal(intruder, undefined);

        const made = await setup(second.ctl, second.token, "ops@example.com");
        assert.equal(made.status, 201, JSON.stringify(made.body));
        assert.equal(made.body.email, "ops@example.com");
        assert.equal(verifyAudit(db).ok, true, "the audit chain holds");
      } finally {
        await within(second.ctl.shutdown(), WAIT_MS, "the controller to stop");
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
