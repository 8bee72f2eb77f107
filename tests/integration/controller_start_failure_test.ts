/**
 * A start-up step that fails after the fleet driver's worker process, the
 * gRPC server and the embedded relay are up (here: the dashboard port is
 * taken) stops all of them again: no worker process, no listener and no
 * open database are left, the error keeps its kind, and the process ends
 * in one JSON line with exit code 1.
 */
import assert from "node:assert/strict";
import { resolveConfig } from "../../controller/config.ts";
import { PharosError } from "../../core/errors.ts";
import { startController } from "../../controller/serve.ts";
import { openState } from "../../controller/state.ts";
import { eventually } from "../support/abuse.ts";
import { WAIT_MS, within } from "../support/wait.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Where this process's open file descriptors point. */
function openFds(): string[] {
  const links: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      links.push(Deno.readLinkSync(`/proc/self/fd/${e.name}`));
    } catch {
      // closed meanwhile (the readDir's own fd)
    }
  }
  return links;
}

const sockets = () => openFds().filter((l) => l.startsWith("socket:")).length;

function cmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/** Live processes (not zombies) with `which` of their /proc stat fields. */
function processes(which: (f: { ppid: number; pgrp: number }) => boolean): string[] {
  const found: string[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      // pid (comm) state ppid pgrp …; comm may hold spaces, so split after ")".
      const [procState, ppid, pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (procState !== "Z" && which({ ppid: Number(ppid), pgrp: Number(pgrp) })) {
        found.push(`${e.name}: ${cmdline(+e.name)}`);
      }
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** This test process's children (any thread's: /proc/PID/task/PID/children lists one thread's). */
const fleetWorkers = () =>
  processes((f) => f.ppid === Deno.pid).filter((p) => p.includes("worker_main.ts"));
const groupMembers = (pgid: number) => processes((f) => f.pgrp === pgid);

async function integrityOf(dir: string): Promise<string> {
  const st = await openState(dir);
  try {
    return (st.db.prepare("PRAGMA integrity_check").get() as { integrity_check: string })
      .integrity_check;
  } finally {
    st.close();
  }
}

/**
 * Starts a controller that fails late (settings `late`: a step after the
 * fleet driver's worker process started) and checks that nothing it
 * started is left: the worker, sockets, the database. `logged`: a line
 * that shows how far the start got.
 */
async function failsCleanly(
  late: (busyPort: number) => Record<string, string>,
  rejects: (e: unknown) => boolean,
  logged?: string,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const socketsBefore = sockets();
    const cfg = resolveConfig({
      state: dir,
      "ui-listen": "127.0.0.1:0",
      // The embedded relay listens (any port) before the dashboard is tried.
      "relay-listen": "127.0.0.1:0",
      ...late((busy.addr as Deno.NetAddr).port),
    }, () => undefined);
    const logs: string[] = [];
    await assert.rejects(
      within(startController(cfg, { logSink: (l) => logs.push(l) }), WAIT_MS, "the start"),
      rejects,
    );
    if (logged) assert.ok(logs.some((l) => l.includes(logged)), logs.join("\n"));
    assert.deepEqual(fleetWorkers(), [], "the fleet worker process was stopped");
    assert.deepEqual(
      openFds().filter((l) => l.startsWith(dir)),
      [],
      "the state database is closed",
    );
    // Listeners and connections of the relay and gRPC server are closed (bounded wait).
    await eventually(
      () => sockets() <= socketsBefore,
      WAIT_MS,
      () => `the sockets to close: ${sockets()} open, ${socketsBefore} before the start`,
    );
    assert.equal(await integrityOf(dir), "ok");
  } finally {
    busy.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const opts = {
  // The fleet worker's bounded stop timer may still be pending (worker.ts); the checks are explicit.
  sanitizeOps: false,
  sanitizeResources: false,
};

Deno.test({
  name:
    "controller start failure: the dashboard port taken — all stopped, the error keeps its kind",
  ...opts,
  fn: () =>
    failsCleanly(
      (port) => ({ "ui-listen": `127.0.0.1:${port}` }),
      (e) => e instanceof Deno.errors.AddrInUse,
      // The embedded relay listened (it starts after the fleet driver).
      "client listener ready",
    ),
});

Deno.test({
  name:
    "controller start failure: relay links that cannot start — all stopped, the error keeps its code",
  ...opts,
  // A relay host no certificate can name fails inside startRelayLinks.
  fn: () =>
    failsCleanly(
      () => ({ "relay-hosts": "not a host" }),
      (e) => e instanceof PharosError && e.code === "malformed" && /not a host/.test(e.message),
    ),
});

Deno.test("controller process: a late start-up failure exits 1 in one JSON line and leaves no process", async () => {
  const dir = await Deno.makeTempDir();
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  const cases: [string, string[], string, RegExp][] = [
    ["dashboard port taken", ["--ui-listen", `127.0.0.1:${port}`], "listen-failed", /./],
    ["relay links", ["--relay-hosts", "not a host"], "malformed", /"not a host" is neither/],
  ];
  try {
    for (const [what, late, code, message] of cases) {
      // Its own process group: whatever it starts (the fleet worker) can be found after it ends.
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          ...["task", "--quiet", "controller", "--state", `${dir}/${code}`],
          ...["--ui-listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0", ...late],
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
        detached: true,
      }).spawn();
      const out = await within(child.output(), WAIT_MS * 2, `the controller to give up (${what})`);
      // At its exit nothing it started runs on (an orphaned worker would, until it saw EOF).
      assert.deepEqual(groupMembers(child.pid), [], what);
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 1, stderr);
      assert.ok(!stderr.includes("Uncaught"), stderr);
      const logs = stderr.trimEnd().split("\n").map((l) => JSON.parse(l));
      const errors = logs.filter((l) => l.level === "error");
      assert.equal(errors.length, 1, stderr);
      assert.equal(logs.at(-1), errors[0], "the failure is the last line");
      assert.equal(errors[0].msg, "controller not started");
      assert.equal(errors[0].code, code, what);
      assert.match(errors[0].error.message, message, what);
      assert.equal(new TextDecoder().decode(out.stdout), "", "no setup link for a failed start");
      assert.equal(await integrityOf(`${dir}/${code}`), "ok");
    }
  } finally {
    busy.close();
    await Deno.remove(dir, { recursive: true });
  }
});
