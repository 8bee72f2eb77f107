/**
 * `nodes add` against a real OpenSSH sshd on loopback (throwaway host key
 * and users), with the real agent: its `gen-csr` runs over SSH and makes
 * the node key in a temp directory standing for /var/lib/pharos-agent, the
 * controller signs the CSR, installs node.crt and the CA files, and the
 * start step launches the real `agent run` (in a network namespace of the
 * test); onboarding ends when the agent answers NodeControl.GetStatus with
 * exactly the certificate just issued.
 *
 * Also: key and password authentication, sudo with and without password for
 * a non-root user, the host key pinned on first use and a changed one
 * refused before logging in (nothing runs on the host), and a re-run after a
 * failure at each step ending in the same state as an undisturbed run.
 */
import assert from "node:assert/strict";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { type OnboardingProgress, onboardNode } from "../../controller/onboarding/mod.ts";
import type { NodeOnboarding } from "../../controller/onboarding/node.ts";
import { renewDueCertificates } from "../../controller/renewal.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { createLogger } from "../../core/log.ts";
import { parseHostKeyLine } from "../../controller/ssh/host_key.ts";
import * as pki from "../../core/pki/mod.ts";
import { agentCapability, Lab } from "../support/agent_harness.ts";
import { ACTOR, DENO, OnboardingLab, ROOT } from "../support/onboarding_fixture.ts";
import {
  allowSudo,
  ensureTestUser,
  removeTestUser,
  setTestUserPassword,
  sshdCapability,
  TEST_USER,
} from "../support/sshd.ts";

const cap = sshdCapability("SSH onboarding of nodes", { sudo: true });
const agentCap = cap.ignore ? cap : agentCapability("SSH onboarding of nodes (real agent)");
const FORWARD = `${ROOT}tests/support/ns_forward.ts`;

/** One node "host": its directory, the agent's namespace and the NodeControl forwarder. */
interface NodeHost {
  name: string;
  dir: string;
  ns: string;
  socket: string;
  iface: string;
}

async function nodeHost(lab: Lab, o: OnboardingLab, tag: string): Promise<NodeHost> {
  const ns = await lab.ns(tag);
  const [iface] = await lab.names.reserve(1);
  const socket = `${o.tmp}/${tag}.sock`;
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
  ], { label: `forwarder ${tag}` });
  await fwd.line(/^ready$/, 60_000);
  return { name: tag, dir: o.hostDir(tag), ns, socket, iface };
}

/** The onboarding request for `host` as the tests make it. */
function request(
  o: OnboardingLab,
  h: NodeHost,
  extra: Partial<NodeOnboarding> & { events?: OnboardingProgress[] } = {},
): NodeOnboarding {
  const agent = [
    "ip",
    "netns",
    "exec",
    h.ns,
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
    h.iface,
    "--awg-port",
    "51820",
    "--poll-interval",
    "1s",
  ];
  const { events, ...rest } = extra;
  return {
    target: { user: "root", host: "127.0.0.1", port: o.sshd.port },
    name: h.name,
    credentials: { kind: "key" },
    sudo: false,
    setup: o.setup(h.dir, o.background(h.dir, agent)),
    nodeControlTarget: `unix:${h.socket}`,
    ready: { attempts: 120, intervalMs: 500, callTimeoutMs: 5000 },
    onProgress: events ? (e) => events.push(e) : undefined,
    ...rest,
  };
}

/** What a finished onboarding must have left, on the "node" and in the database. */
async function assertOnboarded(o: OnboardingLab, h: NodeHost, name: string) {
  const node = new Nodes(o.service).require(name);
  assert.equal(node.onboarding, "done");
  assert.equal(node.status, "active");
  assert.equal(node.onboardingError, null);
  assert.ok(node.onboardedAt);
  // Host key pinned = the sshd's own key.
  assert.equal(parseHostKeyLine(node.sshHostKey!).fingerprint, await o.sshd.hostFingerprint());
  // The node key was made on the node (gen-csr), and the certificate is for it.
  const keyPem = await Deno.readTextFile(`${h.dir}/node.key`);
  assert.equal((await Deno.stat(`${h.dir}/node.key`)).mode! & 0o777, 0o600);
  const keys = await pki.importKeyPair(keyPem);
  const chain = pki.parseCertificates(await Deno.readTextFile(`${h.dir}/node.crt`));
  assert.equal(chain.length, 2);
  const leaf = chain[0];
  assert.deepEqual(
    new Uint8Array(leaf.publicKey.rawData),
    new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
  );
  // core/pki accepts it as a node's server certificate, chained to the files installed.
  const trust = await pki.TrustStore.create({
    root: pki.parseCertificate(await Deno.readTextFile(`${h.dir}/ca.crt`)),
    fleetCa: pki.parseCertificate(await Deno.readTextFile(`${h.dir}/fleet-ca.crt`)),
    deviceCa: pki.parseCertificate(await Deno.readTextFile(`${h.dir}/device-ca.crt`)),
  });
  const who = await trust.verify(chain, { expect: "node", usage: "serverAuth" });
  assert.equal(who.role, "node");
  assert.equal(pki.serialOf(leaf), node.certSerial);
  assert.equal(pki.certPem(leaf), node.certPem);
  assert.equal(
    await o.state.pki.trust.verify(leaf, { expect: "node" }).then((v) => v.role),
    "node",
  );
  // The controller never saw the key: the database holds no private key of the node.
  assert.equal(
    (o.state.db.prepare("SELECT count(*) AS n FROM nodes WHERE cert_pem LIKE '%PRIVATE%'")
      .get() as {
        n: number;
      }).n,
    0,
  );
  assert.equal(verifyAudit(o.state.db).ok, true);
  return { node, keyPem, leaf };
}

function count(o: OnboardingLab, sql: string): number {
  return (o.state.db.prepare(sql).get() as { n: number }).n;
}

function auditCount(o: OnboardingLab): number {
  const v = verifyAudit(o.state.db);
  assert.ok(v.ok);
  return v.count;
}

const statuses = (events: OnboardingProgress[]) => events.map((e) => `${e.step}:${e.status}`);

Deno.test({
  name: "SSH onboarding of a node: real sshd, real agent, pinning, auth, sudo, resume",
  ignore: cap.ignore || agentCap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const o = await OnboardingLab.create();
    const lab = await Lab.create();
    const user = await ensureTestUser();
    const password = `pw-${crypto.getRandomValues(new Uint8Array(9)).toBase64()}`;
    await setTestUserPassword(password);
    const undo: (() => Promise<void>)[] = [];
    try {
      const a = await nodeHost(lab, o, "a");

      await t.step("key auth as root: every step, the agent answers NodeControl", async () => {
        const events: OnboardingProgress[] = [];
        const r = await onboardNode(o.state, ACTOR, request(o, a, { events }));
        assert.equal(r.hostKeyDecision, "pinned");
        assert.equal(r.certificateReused, false);
        assert.deepEqual(statuses(events).filter((s) => !s.endsWith(":progress")), [
          "connect:started",
          "connect:done",
          "privilege:started",
          "privilege:done",
          "install:started",
          "install:done",
          "gen-csr:started",
          "gen-csr:done",
          "sign:started",
          "sign:done",
          "upload:started",
          "upload:done",
          "start:started",
          "start:done",
          "ready:started",
          "ready:done",
          "ready:finished",
        ]);
        const connect = events.find((e) => e.step === "connect" && e.status === "done")!;
        assert.equal(connect.details?.fingerprint, await o.sshd.hostFingerprint());
        assert.equal(connect.details?.hostKey, "pinned");
        assert.ok(events.every((e) => e.id === r.node.id && e.run === events[0].run));
        assert.match(events.at(-2)!.message, /NodeControl at unix:.* answers/);
        await assertOnboarded(o, a, r.node.name);
        assert.equal(
          (await Deno.readTextFile(`${a.dir}/install.log`)).trim().split("\n").length,
          1,
        );
      });

      await t.step("re-running a finished onboarding changes nothing but re-installs", async () => {
        const before = await assertOnboarded(o, a, "a");
        const r = await onboardNode(o.state, ACTOR, request(o, a, { name: "a" }));
        assert.equal(r.hostKeyDecision, "matches");
        assert.equal(r.certificateReused, true);
        const after = await assertOnboarded(o, a, "a");
        assert.equal(after.keyPem, before.keyPem);
        assert.equal(after.node.certSerial, before.node.certSerial);
        assert.equal(after.node.sshHostKey, before.node.sshHostKey);
      });

      await t.step(
        "renewal: a new certificate for the same key, taken up by the running agent",
        async () => {
          const before = await assertOnboarded(o, a, "a");
          const pid = await Deno.readTextFile(`${a.dir}/service.pid`);
          const installs = await Deno.readTextFile(`${a.dir}/install.log`);
          const log = createLogger("renewal", { sink: () => {} });
          // Nothing is due today.
          assert.deepEqual(await renewDueCertificates(o.state, { log }), []);
          // Ten months on (a one-year leaf has less than a third of its life left).
          const later = new Date(Date.now() + 300 * 86400_000);
          const outcomes = await renewDueCertificates(o.state, {
            log,
            now: () => later,
            nodeRequest: () => request(o, a, { name: "a" }),
          });
          const node = outcomes.find((x) => x.kind === "node")!;
          assert.equal(node.ok, true, node.message ?? "");
          const after = await assertOnboarded(o, a, "a");
          assert.notEqual(after.node.certSerial, before.node.certSerial);
          assert.equal(node.serial, after.node.certSerial);
          assert.equal(after.keyPem, before.keyPem, "the node keeps its key");
          // The ready step saw NodeControl present the new certificate; no restart, no install.
          assert.equal(await Deno.readTextFile(`${a.dir}/service.pid`), pid);
          assert.equal(await Deno.readTextFile(`${a.dir}/install.log`), installs);
          // The controller's own one-year certificates were due too, renewed at today's date
          // (the steps below call the agent with the new client certificate).
          const own = outcomes.filter((x) => x.kind === "controller");
          assert.ok(own.some((x) => x.name === "controller-client"));
          assert.ok(own.every((x) => x.ok), JSON.stringify(own));
          // The superseded node certificate is revoked with the new one's record.
          assert.equal(
            count(
              o,
              `SELECT count(*) AS n FROM revoked_certificates
                      WHERE serial = '${before.node.certSerial}'`,
            ),
            1,
          );
        },
      );

      await t.step(
        "a changed host key is refused before logging in; re-pinning is deliberate",
        async () => {
          const before = new Nodes(o.service).require("a");
          const crt = await Deno.readTextFile(`${a.dir}/node.crt`);
          const installs = await Deno.readTextFile(`${a.dir}/install.log`);
          const auditBefore = auditCount(o);
          await o.sshd.restart({ newHostKey: true });
          const fresh = await o.sshd.hostFingerprint();
          const events: OnboardingProgress[] = [];
          await assert.rejects(
            onboardNode(o.state, ACTOR, request(o, a, { events })),
            (e: Error & { code?: string; step?: string }) => {
              assert.equal(e.code, "host-key-changed");
              assert.equal(e.step, "connect");
              assert.match(e.message, /changed/);
              assert.ok(e.message.includes(`--accept-new-host-key ${fresh}`), e.message);
              assert.ok(e.message.includes(parseHostKeyLine(before.sshHostKey!).fingerprint));
              return true;
            },
          );
          // Nothing ran on the host: no login at all, no file touched, pin and certificate kept.
          assert.doesNotMatch(o.sshd.log, /Accepted /);
          assert.equal(await Deno.readTextFile(`${a.dir}/node.crt`), crt);
          assert.equal(await Deno.readTextFile(`${a.dir}/install.log`), installs);
          const after = new Nodes(o.service).require("a");
          assert.equal(after.sshHostKey, before.sshHostKey);
          assert.equal(after.certSerial, before.certSerial);
          assert.equal(after.status, "active");
          assert.equal(after.onboarding, "failed");
          assert.equal(after.onboardingStep, "connect");
          assert.deepEqual(statuses(events), ["connect:started", "connect:failed"]);
          // Only the attempt and its failure were recorded.
          assert.equal(auditCount(o) - auditBefore, 2);

          // A fingerprint other than the presented one is refused too.
          const wrong = parseHostKeyLine(before.sshHostKey!).fingerprint;
          await assert.rejects(
            onboardNode(o.state, ACTOR, request(o, a, { acceptHostKey: wrong })),
            (e: Error & { code?: string }) => e.code === "host-key-mismatch",
          );
          assert.doesNotMatch(o.sshd.log, /Accepted /);
          assert.equal(new Nodes(o.service).require("a").sshHostKey, before.sshHostKey);

          // The operator checked the new fingerprint: re-pinned, and everything runs again.
          const r = await onboardNode(o.state, ACTOR, request(o, a, { acceptHostKey: fresh }));
          assert.equal(r.hostKeyDecision, "re-pinned");
          assert.equal(r.certificateReused, true);
          const done = await assertOnboarded(o, a, "a");
          assert.notEqual(done.node.sshHostKey, before.sshHostKey);
        },
      );

      await t.step("password authentication as a user with sudo (password on stdin)", async () => {
        undo.push(await allowSudo({ nopasswd: false }));
        const b = await nodeHost(lab, o, "b");
        const target = { user: TEST_USER, host: "127.0.0.1", port: o.sshd.port };
        await assert.rejects(
          onboardNode(
            o.state,
            ACTOR,
            request(o, b, {
              target,
              sudo: true,
              credentials: { kind: "password", password: password + "x" },
            }),
          ),
          (e: Error & { code?: string; step?: string }) =>
            e.code === "auth-failed" && e.step === "connect",
        );
        const events: OnboardingProgress[] = [];
        const r = await onboardNode(
          o.state,
          ACTOR,
          request(o, b, {
            target,
            sudo: true,
            credentials: { kind: "password", password },
            events,
          }),
        );
        assert.equal(
          events.find((e) => e.step === "privilege" && e.status === "done")?.details?.privilege,
          "sudo-password",
        );
        assert.equal(r.node.sshUser, TEST_USER);
        await assertOnboarded(o, b, "b");
        // The install script ran as root, through sudo.
        assert.equal((await Deno.readTextFile(`${b.dir}/install.log`)).trim(), "run by uid 0");
        // No event carries the password.
        assert.ok(!JSON.stringify(events).includes(password));
        await undo.pop()!();
      });

      await t.step("key authentication as a user with passwordless sudo", async () => {
        undo.push(await allowSudo({ nopasswd: true }));
        const c = await nodeHost(lab, o, "c");
        const events: OnboardingProgress[] = [];
        await onboardNode(
          o.state,
          ACTOR,
          request(o, c, {
            target: { user: TEST_USER, host: "127.0.0.1", port: o.sshd.port },
            sudo: true,
            events,
          }),
        );
        assert.equal(
          events.find((e) => e.step === "privilege" && e.status === "done")?.details?.privilege,
          "sudo-nopasswd",
        );
        await assertOnboarded(o, c, "c");
        await undo.pop()!();
      });

      await t.step("a failure at each step, then a re-run: resumed, same end state", async () => {
        const d = await nodeHost(lab, o, "d");
        const target = { user: TEST_USER, host: "127.0.0.1", port: o.sshd.port };
        const nodes = new Nodes(o.service);
        const attempt = async (
          step: string,
          code: string | RegExp,
          extra: Partial<NodeOnboarding> = {},
        ) => {
          const events: OnboardingProgress[] = [];
          await assert.rejects(
            onboardNode(o.state, ACTOR, request(o, d, { target, sudo: true, events, ...extra })),
            (e: Error & { code?: string; step?: string }) => {
              assert.equal(e.step, step, e.message);
              if (typeof code === "string") assert.equal(e.code, code, e.message);
              else assert.match(e.code!, code);
              assert.match(e.message, /run ".*" again: onboarding resumes/);
              return true;
            },
          );
          // Every earlier step passed in this run, this one failed, none ran after it.
          const names = [
            "connect",
            "privilege",
            "install",
            "gen-csr",
            "sign",
            "upload",
            "start",
            "ready",
          ];
          const i = names.indexOf(step);
          assert.deepEqual(
            statuses(events).filter((s) => !s.endsWith(":progress")),
            [
              ...names.slice(0, i).flatMap((n) => [`${n}:started`, `${n}:done`]),
              `${step}:started`,
              `${step}:failed`,
            ],
          );
          const row = nodes.require("d");
          assert.equal(row.onboarding, "failed");
          assert.equal(row.onboardingStep, step);
          assert.equal(row.status, "pending");
          return row;
        };

        await o.sshd.kill();
        await attempt("connect", /^(connect-failed|timeout|disconnected)$/, {
          connectTimeoutMs: 5000,
        });
        await o.sshd.start();

        await attempt("privilege", "sudo-failed"); // no sudoers entry yet
        undo.push(await allowSudo({ nopasswd: true }));

        await o.raise("install");
        await attempt("install", "command-failed");
        await o.clear("install");

        await o.raise("gen-csr");
        await attempt("gen-csr", "command-failed");
        await o.clear("gen-csr");

        await o.raise("rsa-csr");
        await attempt("sign", "unsupported-key");
        await o.clear("rsa-csr");
        assert.equal(nodes.require("d").certSerial, null);

        // upload: node.crt is a directory, so the move over it fails
        await Deno.mkdir(`${d.dir}/node.crt/blocker`, { recursive: true });
        const signed = await attempt("upload", "command-failed");
        await Deno.remove(`${d.dir}/node.crt`, { recursive: true });
        assert.ok(signed.certSerial);
        const key = await Deno.readTextFile(`${d.dir}/node.key`);

        await o.raise("start");
        await attempt("start", "command-failed");
        await o.clear("start");

        await o.raise("no-start");
        await attempt("ready", "not-ready", {
          ready: { attempts: 2, intervalMs: 100, callTimeoutMs: 2000 },
        });
        await o.clear("no-start");

        const r = await onboardNode(o.state, ACTOR, request(o, d, { target, sudo: true }));
        assert.equal(r.certificateReused, true);
        const end = await assertOnboarded(o, d, "d");
        // The key made at the first successful gen-csr and the certificate signed once.
        assert.equal(end.keyPem, key);
        assert.equal(end.node.certSerial, signed.certSerial);
        assert.equal(
          count(o, "SELECT count(*) AS n FROM revoked_certificates WHERE subject = 'node d'"),
          0,
        );
        assert.equal(
          count(o, "SELECT count(*) AS n FROM nodes WHERE name = 'd'"),
          1,
        );
        // Same end state as the undisturbed run of node "b": same row shape, same files.
        const b = nodes.require("b");
        const pick = (n: typeof b) => ({
          onboarding: n.onboarding,
          step: n.onboardingStep,
          error: n.onboardingError,
          status: n.status,
          sshUser: n.sshUser,
          pinned: n.sshHostKey,
          revision: [n.desiredRevision, n.appliedRevision],
        });
        assert.deepEqual(pick(end.node), pick(b));
        const files = async (dir: string) => {
          const out: string[] = [];
          for await (const f of Deno.readDir(dir)) out.push(f.name);
          return out.sort();
        };
        assert.deepEqual(await files(d.dir), await files(o.hostDir("b")));
        await undo.pop()!();
      });
    } finally {
      for (const u of undo.reverse()) await u();
      await lab.cleanup();
      await o.close();
      await removeTestUser(user.created);
    }
  },
});
