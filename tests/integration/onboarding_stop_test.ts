/**
 * An onboarding in progress when the controller stops ends at once instead
 * of holding the stop: against the real sshd of the onboarding tests, with
 * a host command held (onboarding_hold.sh) so that the stop lands inside a
 * step, `Operations.close()` returns before its 10 s limit (no
 * `operation-stop-timeout`), the SSH connection is gone, the operation and
 * the node row say it was stopped and what to run, and nothing after the
 * held step ran. A stop between steps begins no further step. Re-running
 * then onboards the node completely (real agent, NodeControl answering),
 * reusing what the stopped runs left.
 */
import assert from "node:assert/strict";
import { nodeOnboarding } from "../../controller/api/onboard.ts";
import { Operations } from "../../controller/api/operations.ts";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { type OnboardingProgress, onboardNode } from "../../controller/onboarding/mod.ts";
import type { NodeOnboarding } from "../../controller/onboarding/node.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { createLogger } from "../../core/log.ts";
import { agentCapability, Lab } from "../support/agent_harness.ts";
import { ACTOR, alive, DENO, OnboardingLab, ROOT, SUPPORT } from "../support/onboarding_fixture.ts";
import { sshdCapability } from "../support/sshd.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const cap = sshdCapability("onboarding stopped by the controller");
const agentCap = cap.ignore ? cap : agentCapability("onboarding stopped (real agent)");
const FORWARD = `${ROOT}tests/support/ns_forward.ts`;
const NAME = "stop-1";

const statuses = (events: OnboardingProgress[]) => events.map((e) => `${e.step}:${e.status}`);

/** Established TCP connections to (or from) loopback `port`, from /proc/net/tcp. */
function established(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return Deno.readTextFileSync("/proc/net/tcp").split("\n").slice(1).filter((line) => {
    const f = line.trim().split(/\s+/);
    return f[3] === "01" && (f[1]?.endsWith(`:${hex}`) || f[2]?.endsWith(`:${hex}`));
  }).length;
}

Deno.test({
  name: "onboarding stop: a controller stop ends a run at once; a re-run completes it",
  ignore: cap.ignore || agentCap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const o = await OnboardingLab.create();
    const lab = await Lab.create();
    const dir = o.hostDir(NAME);
    const holdPid = `${o.tmp}/hold.pid`;
    try {
      const ns = await lab.ns("stop");
      const [iface] = await lab.names.reserve(1);
      const socket = `${o.tmp}/stop.sock`;
      const fwd = lab.spawn(ns, [
        DENO,
        "run",
        "--allow-net",
        "--allow-read",
        "--allow-write",
        FORWARD,
        socket,
        "127.0.0.1",
        "8444",
      ], { label: "forwarder" });
      await fwd.line(/^ready$/, 60_000);
      const agent = [
        "ip",
        "netns",
        "exec",
        ns,
        DENO,
        "run",
        "-A",
        `${ROOT}agent/main.ts`,
        "run",
        "--state",
        "{dir}",
        "--listen",
        "127.0.0.1:8444",
        "--interface",
        iface,
        "--awg-port",
        "51820",
        "--poll-interval",
        "1s",
      ];
      const genCsr = [DENO, "run", "-A", `${ROOT}agent/main.ts`, "gen-csr", "--dir", "{dir}"];
      const request = (extra: Partial<NodeOnboarding> = {}): NodeOnboarding => ({
        target: { user: "root", host: "127.0.0.1", port: o.sshd.port },
        name: NAME,
        credentials: { kind: "key" },
        sudo: false,
        setup: o.setup(dir, o.background(dir, agent), genCsr),
        nodeControlTarget: `unix:${socket}`,
        ready: { attempts: 120, intervalMs: 500, callTimeoutMs: 5000 },
        ...extra,
      });
      const rerun = `cox nodes add root@127.0.0.1:${o.sshd.port} --name ${NAME}`;

      await t.step("stopped inside a step: the operation ends before the stop limit", async () => {
        // gen-csr is held on the host until a gate file appears (it never does); the shell
        // writes its pid first, so that the test ends exactly that process afterwards.
        const held = [
          "sh",
          "-c",
          'echo $$ > "$0"; exec sh "$@"',
          holdPid,
          `${SUPPORT}/onboarding_hold.sh`,
          `${o.tmp}/never`,
          ...genCsr,
        ];
        const events: OnboardingProgress[] = [];
        const logs: { code?: string; msg: string }[] = [];
        const ops = new Operations(
          (e) => events.push(e as OnboardingProgress),
          createLogger("api", { sink: (l) => logs.push(JSON.parse(l)) }),
        );
        const starter = nodeOnboarding(o.state, () => {
          const base = request();
          return {
            setup: { ...base.setup, genCsr: held },
            nodeControlTarget: base.nodeControlTarget,
            ready: base.ready,
          };
        });
        const op = ops.start(
          "node.onboard",
          starter(ACTOR, { host: "127.0.0.1", sshPort: o.sshd.port, sshUser: "root", name: NAME }),
        );
        await until(
          () => statuses(events).includes("gen-csr:started") && readOr(holdPid, "") !== "",
          WAIT_MS,
          "the gen-csr step to be held on the host",
        );
        assert.equal(established(o.sshd.port) > 0, true, "the SSH session is open meanwhile");

        await within(ops.close(), WAIT_MS, "the operations to close");
        assert.ok(
          !logs.some((l) => l.code === "operation-stop-timeout"),
          "the run ended before the stop's time limit",
        );
        assert.ok(logs.some((l) => l.code === "operation-stopped"), JSON.stringify(logs));

        // The operation's record says it was stopped, at which step, and what to run.
        const rec = ops.get(op.id)!;
        assert.equal(rec.status, "failed");
        assert.match(
          rec.error ?? "",
          /^step "gen-csr" \(4\/8\) on root@127\.0\.0\.1:\d+ stopped: /,
        );
        assert.match(rec.error ?? "", /the controller is shutting down/);
        assert.ok(rec.error!.includes(`run "${rerun}" again`), rec.error!);
        const last = events.at(-1)!;
        assert.deepEqual([last.step, last.status, last.code], [
          "gen-csr",
          "failed",
          "operation-stopped",
        ]);
        assert.deepEqual(statuses(events).filter((s) => !s.endsWith(":progress")), [
          "connect:started",
          "connect:done",
          "privilege:started",
          "privilege:done",
          "install:started",
          "install:done",
          "gen-csr:started",
          "gen-csr:failed",
        ]);
        // So does the node row, which a re-run resumes.
        const node = new Nodes(o.service).require(NAME);
        assert.equal(node.onboarding, "failed");
        assert.equal(node.onboardingStep, "gen-csr");
        assert.match(node.onboardingError ?? "", /^operation-stopped: stopped: the controller/);
        assert.equal(node.certSerial, null, "nothing was signed");

        // The SSH connection was dropped at once, not left to the held command.
        await until(() => established(o.sshd.port) === 0, WAIT_MS, "the SSH connection to close");
        // Nothing after the held step happened on the host: no key, no certificate.
        assert.equal(exists(`${dir}/node.key`), false);
        assert.equal(exists(`${dir}/node.crt`), false);
        assert.equal(verifyAudit(o.state.db).ok, true);

        // The held command is the test's own; end it by its pid.
        const pid = Number(Deno.readTextFileSync(holdPid).trim());
        assert.ok(pid > 1 && alive(pid), "the held command still waits on the host");
        Deno.kill(pid, "SIGKILL");
        await until(() => !alive(pid), WAIT_MS, "the held command to end");
      });

      await t.step("stopped between steps: no further step begins", async () => {
        const events: OnboardingProgress[] = [];
        const stop = new AbortController();
        await assert.rejects(
          onboardNode(
            o.state,
            ACTOR,
            request({
              signal: stop.signal,
              onProgress: (e) => {
                events.push(e);
                // Right after signing: the certificate is recorded, not yet on the host.
                if (e.step === "sign" && e.status === "done") stop.abort(new Error("stop"));
              },
            }),
          ),
          (e: Error & { code?: string; step?: string }) => {
            assert.equal(e.code, "operation-stopped");
            assert.equal(e.step, "upload");
            assert.match(e.message, /stopped: the controller is shutting down/);
            return true;
          },
        );
        assert.deepEqual(statuses(events).slice(-3), [
          "sign:started",
          "sign:done",
          "upload:failed",
        ]);
        const node = new Nodes(o.service).require(NAME);
        assert.equal(node.onboarding, "failed");
        assert.equal(node.onboardingStep, "upload");
        assert.ok(node.certSerial, "the certificate signed before the stop is recorded");
        assert.equal(exists(`${dir}/node.key`), true, "gen-csr ran");
        assert.equal(exists(`${dir}/node.crt`), false, "no certificate was uploaded");
        await until(() => established(o.sshd.port) === 0, WAIT_MS, "the SSH connection to close");
      });

      await t.step("a re-run onboards the node completely, reusing what was done", async () => {
        const signed = new Nodes(o.service).require(NAME).certSerial;
        const r = await onboardNode(o.state, ACTOR, request());
        assert.equal(r.hostKeyDecision, "matches", "the key pinned by the stopped runs");
        assert.equal(r.certificateReused, true, "the certificate signed before the stop");
        assert.equal(r.serial, signed);
        const node = new Nodes(o.service).require(NAME);
        assert.equal(node.onboarding, "done");
        assert.equal(node.status, "active");
        assert.equal(node.onboardingError, null);
        assert.ok(exists(`${dir}/node.crt`));
        const leftovers = [...Deno.readDirSync(dir)].filter((f) => f.name.endsWith(".pharos-new"));
        assert.deepEqual(leftovers, [], "no half-written file on the host");
        assert.equal(verifyAudit(o.state.db).ok, true);
      });
    } finally {
      const pid = Number(readOr(holdPid, "0"));
      if (pid > 1 && alive(pid)) Deno.kill(pid, "SIGKILL");
      await o.stopService(dir);
      await lab.cleanup();
      await o.close();
    }
  },
});

function readOr(path: string, fallback: string): string {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return fallback;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
