/**
 * Renewing the controller's client certificate cycles the live relay tunnel
 * make-before-break (issue 12, item 9): the controller dials a second
 * session with the new certificate while the old one serves, the relay
 * switches new calls to it at once and drains the old one (calls in flight
 * finish), then closes the old one when its last call ended or its grace
 * is over. Real controller, real relay parts, real gRPC over loopback.
 */
import assert from "node:assert/strict";
import { renewDueCertificates } from "../../controller/renewal.ts";
import { issueServiceCert } from "../../controller/service_certs.ts";
import { createLogger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { unary } from "../support/relay_harness.ts";
import {
  openBidi,
  startCycleRig,
  unaryLoad,
  waitForCode,
  withCode,
} from "../support/tunnel_cycle.ts";
import { until, WAIT_MS } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
/** Ten months on: a one-year leaf has less than a third of its life left. */
const LATER = () => new Date(Date.now() + 300 * 86400_000);

const msgs = (logs: string[]) => logs.map((l) => JSON.parse(l).msg as string);

Deno.test({
  name:
    "tunnel cycle: calls through a remote relay keep working across a certificate renewal, none fails; the relay holds the new certificate",
  ...opts,
  fn: async () => {
    // A grace far beyond the test: the old session must close because its calls ended.
    const rig = await startCycleRig({ drainGraceMs: 10 * WAIT_MS });
    const load = unaryLoad(rig.client());
    let held: ReturnType<typeof openBidi> | undefined;
    try {
      const oldSerial = await rig.clientSerial();
      assert.deepEqual(rig.controllerSerials, [oldSerial]);
      await until(() => load.ok >= 20, WAIT_MS, "calls through the relay before the renewal");
      // A call that stays open across the renewal, on the old session.
      held = openBidi(rig.client());
      await held.say("before");

      // The renewal check, as the controller runs it, finds its certificates due.
      const outcomes = await renewDueCertificates(rig.ctl.state, {
        log: createLogger("renewal", { sink: () => {} }),
        now: LATER,
        reload: rig.ctl.certificates.renewed,
      });
      const renewed = outcomes.find((o) => o.name === "controller-client");
      assert.ok(renewed?.ok, JSON.stringify(outcomes));
      const newSerial = renewed.serial!;
      assert.notEqual(newSerial, oldSerial);

      const cycled = await waitForCode(rig.ctlLogs, "tunnel-cycled", "the controller's cycle");
      assert.equal(cycled.old_serial, oldSerial);
      assert.equal(cycled.new_serial, newSerial);
      assert.equal(cycled.policy, "ok", "the policy is pushed on the new session");
      // The relay verified the new certificate on a second session and drains the first.
      assert.deepEqual(rig.controllerSerials, [oldSerial, newSerial]);
      const start = await waitForCode(rig.relayLogs, "tunnel-drain-start", "the relay's drain");
      assert.equal(start.serial, oldSerial);
      assert.equal(start.new_serial, newSerial);

      // New calls go through the new session; the call held open goes on on the old one.
      const okAtCycle = load.ok;
      await until(() => load.ok >= okAtCycle + 20, WAIT_MS, "calls after the cycle");
      await held.say("after");
      assert.equal(rig.slot.draining, 1, "the old session drains while a call is on it");
      assert.equal((await held.end()).code, 0);
      held = undefined;

      // Its last call done, the old session is closed at once, nothing cut.
      const end = await waitForCode(rig.relayLogs, "tunnel-drain-end", "the drain's end");
      assert.equal(end.reason, "drained");
      assert.equal(end.streams_cut, 0);
      assert.equal(rig.slot.draining, 0);

      await load.stop();
      assert.deepEqual(load.failures.map(String), [], "no call failed");
      // Never down on either side: one cycle, two sessions, the new certificate live.
      const st = rig.tunnel.status;
      assert.equal(st.state, "up");
      assert.equal(st.cycles, 1);
      assert.equal(st.sessions, 2);
      assert.equal(st.controllerSerial, newSerial);
      assert.ok(!msgs(rig.ctlLogs).includes("relay tunnel down"), "the controller saw no outage");
      assert.ok(!msgs(rig.relayLogs).includes("controller tunnel down"), "the relay saw none");
      assert.equal(withCode(rig.ctlLogs, "tunnel-cycled").length, 1);
    } finally {
      held?.cancel();
      await load.stop();
      await rig.close();
    }
  },
});

Deno.test({
  name:
    "tunnel cycle: a call still open when the drain grace ends is cut and the old session closed; new calls go on",
  ...opts,
  fn: async () => {
    const rig = await startCycleRig({ drainGraceMs: 1000 });
    let held: ReturnType<typeof openBidi> | undefined;
    try {
      const client = rig.client();
      assert.equal((await unary(client, "Unary", { text: "first" })).res.text, "first");
      held = openBidi(client);
      await held.say("held");

      const cert = await issueServiceCert(rig.ctl.state, "controller-client");
      assert.ok(await rig.ctl.certificates.renewed("controller-client", cert));
      const newSerial = pki.serialOf(cert.leaf);
      await waitForCode(rig.ctlLogs, "tunnel-cycled", "the controller's cycle");

      // The held call outlives the grace: the old session is closed, the call with it.
      const end = await waitForCode(rig.relayLogs, "tunnel-drain-end", "the grace to end");
      assert.equal(end.reason, "grace-over");
      assert.ok(end.streams_cut >= 1, JSON.stringify(end));
      const status = await held.ended();
      assert.notEqual(status.code, 0, "the cut call does not end as a success");
      held = undefined;
      assert.equal(rig.slot.draining, 0);

      // The tunnel itself never went down: a new call goes through the new session.
      assert.equal((await unary(client, "Unary", { text: "next" })).res.text, "next");
      assert.equal(rig.tunnel.status.state, "up");
      assert.equal(rig.tunnel.status.controllerSerial, newSerial);
      assert.ok(rig.slot.connected);
      assert.ok(!msgs(rig.ctlLogs).includes("relay tunnel down"));
    } finally {
      held?.cancel();
      await rig.close();
    }
  },
});

Deno.test({
  name:
    "tunnel cycle: revoking the old controller certificate after a renewal closes the draining session at once; new calls go on",
  ...opts,
  fn: async () => {
    const rig = await startCycleRig({ drainGraceMs: 10 * WAIT_MS });
    let held: ReturnType<typeof openBidi> | undefined;
    try {
      const client = rig.client();
      const oldClient = await rig.clientSerial();
      held = openBidi(client);
      await held.say("held");

      const cert = await issueServiceCert(rig.ctl.state, "controller-client");
      assert.ok(await rig.ctl.certificates.renewed("controller-client", cert));
      await waitForCode(rig.ctlLogs, "tunnel-cycled", "the controller's cycle");
      assert.equal((await unary(client, "Unary", { text: "new" })).res.text, "new");
      await held.say("still on the old session");

      // The old certificate is revoked (pushed to the relay on the new session): the
      // session that presented it is closed at once, not at the end of its grace.
      rig.ctl.revocations.revoke(oldClient, "controller");
      const end = await waitForCode(rig.relayLogs, "tunnel-drain-end", "the old session to close");
      assert.equal(end.serial, oldClient);
      assert.notEqual(end.reason, "grace-over");
      assert.notEqual((await held.ended()).code, 0, "the call on the revoked session ends");
      held = undefined;
      assert.ok(rig.slot.connected);
      assert.equal((await unary(client, "Unary", { text: "after" })).res.text, "after");
      assert.equal(rig.tunnel.status.state, "up");
      assert.equal(rig.tunnel.status.controllerSerial, pki.serialOf(cert.leaf));
    } finally {
      held?.cancel();
      await rig.close();
    }
  },
});
