/**
 * `deno task controller`: its command line in-process (runControllerCli) and
 * as operators run it (a process). Mistakes end in one line and exit 2 or 1,
 * a failed start in one JSON log line, a signal in a clean stop.
 */
import assert from "node:assert/strict";
import { CONTROLLER_USAGE, runControllerCli } from "../../controller/cli/controller.ts";
import { CONTROLLER_SETTINGS } from "../../controller/config.ts";
import { startController } from "../../controller/serve.ts";
import { openState } from "../../controller/state.ts";
import { run } from "../support/run.ts";
import { decodeText } from "../../core/encoding.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const CONTROLLER = ["task", "--quiet", "controller"];
const noEnv = () => undefined;
const never = new Promise<never>(() => {});
/** Settings that bind nothing fixed: any free dashboard port, no embedded relay. */
const QUIET = ["--ui-listen", "127.0.0.1:0", "--relay-listen", "off"];

function capture(stopped: Promise<unknown> = never) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { out: (t: string) => out.push(t), err: (l: string) => err.push(l), stopped },
    out,
    err,
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

Deno.test("controller cli: --help lists every setting with its flag, variable and default", async () => {
  const c = capture();
  assert.equal(await runControllerCli(["--help"], c.io, noEnv), 0);
  const help = c.out.join("");
  assert.equal(help, CONTROLLER_USAGE);
  assert.equal(c.err.length, 0);
  for (const s of CONTROLLER_SETTINGS) {
    assert.ok(help.includes(`--${s.flag} `), s.flag);
    assert.ok(help.includes(`${s.env}, default ${s.default || "none"}`), s.env);
  }
  assert.ok(help.includes("--config FILE") && help.includes("PHAROS_CONFIG"));
});

Deno.test("controller cli: bad flags, arguments, values and config files end in one line, creating nothing", async () => {
  const dir = await Deno.makeTempDir();
  const state = `${dir}/state`;
  try {
    const hint = `"deno task controller --help" lists the settings`;
    const st = ["--state", state];
    const cases: [string[], Record<string, string>, number, string | RegExp][] = [
      [[...st, "--bogus"], {}, 2, `error: unknown flag "--bogus"; ${hint}`],
      [["--state"], {}, 2, `error: Option '--state <value>' argument missing; ${hint}`],
      [[...st, "run"], {}, 2, `error: unexpected argument "run"; ${hint}`],
      [
        [...st, "--ui-listen", "8443"],
        {},
        1,
        `error: --ui-listen = "8443": expected host:port, e.g. 127.0.0.1:8443 or :443`,
      ],
      [st, { PHAROS_LOG_LEVEL: "loud" }, 1, /^error: PHAROS_LOG_LEVEL = "loud": use debug/],
      [
        ["--config", `${dir}/c.json`],
        {},
        1,
        `error: config file ${dir}/c.json: unknown key "uiListn"; the keys are state, uiListen, logLevel, relayListen, relayHosts, relayTunnels, trustedProxies, allowedOrigins, metricsLoopback, maxConnections, maxConnectionsPerSource, handshakeTimeout, prefaceTimeout, idleTimeout`,
      ],
      [
        st,
        { PHAROS_CONFIG: `${dir}/none.json` },
        1,
        /^error: cannot read config file .*none\.json/,
      ],
    ];
    await Deno.writeTextFile(`${dir}/c.json`, JSON.stringify({ state, uiListn: ":1" }));
    for (const [args, env, code, line] of cases) {
      const c = capture();
      assert.equal(await runControllerCli(args, c.io, (n) => env[n]), code, args.join(" "));
      assert.equal(c.err.length, 1, c.err.join("\n"));
      assert.equal(c.err[0].includes("\n"), false, c.err[0]);
      if (typeof line === "string") assert.equal(c.err[0], line);
      else assert.match(c.err[0], line);
      assert.equal(await exists(state), false, `${args.join(" ")} created the state`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("controller cli: a signal during start-up still ends in a clean stop; a restart reloads the state", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let signal!: (name: string) => void;
    const first = capture(new Promise((resolve) => (signal = resolve)));
    const io = {
      ...first.io,
      // The signal arrives while the controller is starting.
      start: (...a: Parameters<typeof startController>) => {
        signal("SIGTERM");
        return startController(...a);
      },
    };
    assert.equal(await runControllerCli(["--state", dir, ...QUIET], io, noEnv), 0);
    const logs = first.err.map((l) => JSON.parse(l));
    const msgs = logs.map((l) => l.msg);
    assert.equal(msgs[0], "created a new certificate authority");
    assert.deepEqual(msgs.slice(-2), ["stopping", "stopped"]);
    assert.deepEqual(logs.filter((l) => l.level === "error"), [], "a clean start and stop");
    assert.equal(logs.find((l) => l.msg === "stopping").signal, "SIGTERM");

    const again = capture(Promise.resolve());
    assert.equal(await runControllerCli(["--state", dir, ...QUIET], again.io, noEnv), 0);
    const reload = JSON.parse(again.err[0]);
    assert.equal(reload.msg, "loaded state");
    assert.equal(reload.root_ca_fingerprint, logs[0].root_ca_fingerprint);
    assert.equal(JSON.parse(again.err.at(-1)!).msg, "stopped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "controller cli: an unusable state or dashboard address fails the start in one JSON line",
  // A start that fails after opening the state leaves what serve.ts opened to the process exit.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const fails = async (args: string[], code: string) => {
        const c = capture();
        assert.equal(await runControllerCli(args, c.io, noEnv), 1);
        // Start-up may have logged progress; the failure is one line, the last.
        const logs = c.err.map((l) => JSON.parse(l));
        assert.equal(logs.filter((l) => l.level === "error").length, 1, c.err.join("\n"));
        const line = logs.at(-1);
        assert.equal(line.level, "error");
        assert.equal(line.msg, "controller not started");
        assert.equal(line.code, code);
        return line;
      };
      await Deno.writeTextFile(`${dir}/file`, "x");
      const file = await fails(["--state", `${dir}/file`, ...QUIET], "not-a-directory");
      assert.match(file.error.message, /is a file; check --state/);

      // A database whose secret.key is gone: no new key, a pointer to the backup.
      const state = `${dir}/state`;
      (await openState(state, { create: true })).close();
      await Deno.remove(`${state}/secret.key`);
      const lost = await fails(["--state", state, ...QUIET], "missing-secret");
      assert.match(lost.error.message, /restore secret\.key from your backup/);
      assert.equal(await exists(`${state}/secret.key`), false);

      const port = (busy.addr as Deno.NetAddr).port;
      const taken = await fails(
        ["--state", `${dir}/other`, "--ui-listen", `127.0.0.1:${port}`, "--relay-listen", "off"],
        "listen-failed",
      );
      assert.match(taken.hint, new RegExp(`127\\.0\\.0\\.1:${port}: change --ui-listen`));
    } finally {
      busy.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("controller process: a bad flag or unusable state ends in one line, never a stack trace", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = await run(Deno.execPath(), [...CONTROLLER, "--bogus"], { cwd: ROOT });
    assert.equal(bad.code, 2);
    assert.equal(
      bad.stderr,
      `error: unknown flag "--bogus"; "deno task controller --help" lists the settings\n`,
    );
    assert.equal(bad.stdout, "");

    await Deno.writeTextFile(`${dir}/file`, "x");
    const unusable = await run(
      Deno.execPath(),
      [...CONTROLLER, "--state", `${dir}/file`, ...QUIET],
      { cwd: ROOT },
    );
    assert.equal(unusable.code, 1);
    const lines = unusable.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, unusable.stderr);
    assert.equal(JSON.parse(lines[0]).code, "not-a-directory");
    for (const out of [bad, unusable]) assert.ok(!out.stderr.includes("Uncaught"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("controller process: SIGINT during start-up stops it cleanly with exit code 0", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [...CONTROLLER, "--state", dir, ...QUIET],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const lines: string[] = [];
    let buf = "";
    for await (const chunk of decodeText(child.stderr)) {
      buf += chunk;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      for (const p of parts) {
        lines.push(p);
        // The first log line comes from inside start-up (the state is open,
        // the listeners are not): signal then.
        if (lines.length === 1) child.kill("SIGINT");
      }
    }
    const status = await child.status;
    assert.equal(status.code, 0, lines.join("\n"));
    const logs = lines.map((l) => JSON.parse(l));
    assert.equal(logs[0].msg, "created a new certificate authority");
    assert.equal(logs.find((l) => l.msg === "stopping")?.signal, "SIGINT");
    assert.equal(logs.at(-1).msg, "stopped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
