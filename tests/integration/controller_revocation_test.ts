// deno-lint-ignore-file no-explicit-any
/**
 * Device revocation that no relay can skip (issue 9, §4): the controller
 * checks every relayed device itself; an original relay (no policy channel)
 * is recognised by ALPN and never made to wait; relays answer "stale" to an
 * old policy and the controller numbers policies from a database counter;
 * revoking a relay certificate at the controller, or the controller's
 * certificate at a relay, closes live sessions and refuses new ones.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { resolveConfig } from "../../controller/config.ts";
import { type Db, openDatabase } from "../../controller/db/sqlite.ts";
import { Devices } from "../../controller/devices.ts";
import { DEVICE_REFUSED } from "../../controller/grpc/device_guard.ts";
import { type ControllerGrpc, createControllerGrpc } from "../../controller/grpc/server.ts";
import { EgressClient } from "../../controller/relay/egress_client.ts";
import {
  catchUpPolicyRevision,
  currentPolicyRevision,
  MAX_CATCH_UP,
  nextPolicyRevision,
  PolicySource,
} from "../../controller/relay/policy_source.ts";
import { pushPolicy } from "../../controller/relay/policy_push.ts";
import { ORIGINAL_RELAY_NOTE } from "../../controller/relay/tunnel_client.ts";
import { Revocations } from "../../controller/revocation.ts";
import { startController } from "../../controller/serve.ts";
import { type ControllerState, openState } from "../../controller/state.ts";
import { createLogger } from "../../core/log.ts";
import { memoryDuplexPair, MuxSession } from "../../core/mux/mod.ts";
import * as pki from "../../core/pki/mod.ts";
import { RelayPolicy } from "../../core/relay_policy.ts";
import { ACCOUNT_PROTO, loadProto } from "../../proto/load.ts";
import { serveEgress } from "../../relay/egress.ts";
import { startRelay } from "../../relay/relay.ts";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import { echoPkg } from "../support/echo_backend.ts";
import { echoRequest, startOriginalRelay } from "../support/original_relay.ts";
import { type Fleet, type IssuedLeaf, makeFleet } from "../support/pki_fixture.ts";
import { unary } from "../support/relay_harness.ts";
import { startTunnel, testControllerListener } from "../support/tunnel_fixture.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const accountPkg = (grpc.loadPackageDefinition(loadProto(ACCOUNT_PROTO)) as any).pharos.account.v1;

/** The controller's services in these tests: Echo (reports the metadata it got) and a claim stub. */
function services(): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation][] {
  const metadataOf = (md: grpc.Metadata) => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(md.getMap())) out[k] = String(v);
    return out;
  };
  return [
    [echoPkg.Echo.service, {
      Unary(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
        cb(null, { text: call.request.text, metadata: metadataOf(call.metadata) });
      },
    }],
    [accountPkg.AccountSync.service, {
      ClaimEnrollment(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
        cb(null, { ca_fingerprint: JSON.stringify(metadataOf(call.metadata)) });
      },
    }],
  ];
}

interface Registry {
  dir: string;
  db: Db;
  revocations: Revocations;
  devices: Devices;
  close(): Promise<void>;
}

async function registry(): Promise<Registry> {
  const dir = await Deno.makeTempDir();
  const db = openDatabase(`${dir}/pharos.db`);
  const revocations = new Revocations(db);
  return {
    dir,
    db,
    revocations,
    devices: new Devices(db, revocations),
    async close() {
      db.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The controller's tunnel-side gRPC server (real guards, real registry) for `fleet`. */
async function controllerGrpc(
  fleet: Fleet,
  reg: Registry,
  logs: string[],
  now?: () => Date,
): Promise<{ grpc: ControllerGrpc; server: IssuedLeaf }> {
  const server = await fleet.issue({ kind: "controller-server" });
  const g = createControllerGrpc({
    certPem: server.chainPem,
    keyPem: server.keyPem,
    fleetCaPem: pki.certPem(fleet.pki.fleet.cert),
    trust: fleet.trust,
    revoked: reg.revocations.list,
    devices: reg.devices,
    now,
    log: createLogger("grpc", { sink: (l) => logs.push(l) }),
    services: services(),
  });
  return { grpc: g, server };
}

/**
 * Our relay in front of the controller's gRPC server over a real tunnel,
 * wired as `relay run` wires it: one RelayPolicy whose revocation list the
 * client listener, the backend leg and the tunnel listener all consult.
 */
async function relayedController(
  reg: Registry,
  tunnelOpts: Parameters<typeof startTunnel>[3] = {},
  now?: () => Date,
) {
  const fleet = await makeFleet();
  const grpcLogs: string[] = [];
  const { grpc: g, server } = await controllerGrpc(fleet, reg, grpcLogs, now);
  const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["localhost", "127.0.0.1"] });
  const device = await fleet.issue({ kind: "device", name: "test phone" });
  const t = await startTunnel((c) => g.accept(c), fleet, relayLeaf, tunnelOpts);
  const logs: string[] = [];
  const relay = await within(
    startRelay({
      listen: { hostname: "127.0.0.1", port: 0 },
      certPem: relayLeaf.chainPem,
      keyPem: relayLeaf.keyPem,
      caPem: fleet.rootPem + pki.certPem(fleet.pki.fleet.cert),
      deviceCaPem: pki.certPem(fleet.pki.device.cert),
      trust: fleet.trust,
      revoked: t.policy.revoked,
      transport: t.transport,
      log: createLogger("relay", { sink: (l) => logs.push(l) }),
    }),
    WAIT_MS,
    "the relay to start",
  );
  const clients: any[] = [];
  const h = {
    fleet,
    relay,
    relayLeaf,
    device,
    logs,
    client(leaf: IssuedLeaf = device) {
      const c = new echoPkg.Echo(
        `localhost:${relay.port}`,
        grpc.credentials.createSsl(
          Buffer.from(fleet.rootPem),
          Buffer.from(leaf.keyPem),
          Buffer.from(leaf.chainPem),
        ),
        { "grpc.enable_retries": 0 },
      );
      clients.push(c);
      return c;
    },
  };
  return {
    h,
    t,
    grpc: g,
    server,
    grpcLogs,
    async close() {
      for (const c of clients) c.close();
      await within(relay.close(), WAIT_MS, "the relay to close");
      await within(t.transport.close!(), WAIT_MS, "the tunnel to close");
      g.close();
    },
  };
}

async function refusedByController(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (e: any) => {
    assert.equal(e.code, grpc.status.UNAUTHENTICATED, e.details);
    assert.equal(e.details, DEVICE_REFUSED);
    return true;
  });
}

/** One call through the original relay's controller session (bounded). */
function call(
  original: Awaited<ReturnType<typeof startOriginalRelay>>,
  ...a: Parameters<Awaited<ReturnType<typeof startOriginalRelay>>["call"]>
) {
  return within(original.call(...a), WAIT_MS, `a call to ${a[0]} through the original relay`);
}

function logged(logs: string[], code: string): boolean {
  return logs.some((l) => JSON.parse(l).code === code);
}

function loggedMessage(logs: string[], msg: string, code: string): boolean {
  return logs.some((l) => {
    const j = JSON.parse(l);
    return j.msg === msg && j.code === code;
  });
}

/**
 * Runs `fn` with a controller behind a relay (relayedController) whose
 * tunnel policy revokes `revokedSerials`, once a registered device's call
 * went through; closes both afterwards.
 */
async function withServingController(
  fn: (r: Awaited<ReturnType<typeof relayedController>>, revokedSerials: string[]) => Promise<void>,
): Promise<void> {
  const reg = await registry();
  const revokedSerials: string[] = [];
  const r = await relayedController(reg, { revokedSerials });
  try {
    await reg.devices.register(r.h.device.cert);
    assert.equal((await unary(r.h.client(), "Unary", { text: "up" })).res.text, "up");
    await fn(r, revokedSerials);
  } finally {
    await r.close();
    await reg.close();
  }
}

/** A Fleet issuing from the CAs of a controller state. */
function stateFleet(st: Pick<ControllerState, "pki">): Fleet {
  return {
    pki: st.pki.cas,
    trust: st.pki.trust,
    rootPem: pki.certPem(st.pki.cas.root.cert),
    issue: async (profile, o) => {
      const csr = await pki.generateCsr(profile.kind === "device" ? "device" : "relay");
      const cert = await pki.issueLeaf(st.pki.cas, csr.csrPem, profile, o);
      const ca = profile.kind === "device" ? st.pki.cas.device.cert : st.pki.cas.fleet.cert;
      return { cert, chainPem: pki.bundlePem([cert, ca]), keyPem: csr.keyPem };
    },
  };
}

/**
 * The controller of the state in `dir` (UI on a free port, no relay
 * listener) dialing one relay tunnel at 127.0.0.1:`port`; `logs` gathers
 * its log lines.
 */
async function tunnelController(dir: string, port: number) {
  const logs: string[] = [];
  const ctl = await within(
    startController(
      resolveConfig(
        {
          state: `${dir}/state`,
          "ui-listen": "127.0.0.1:0",
          "relay-listen": "off",
          "relay-tunnels": `127.0.0.1:${port}`,
        },
        () => undefined,
      ),
      { services: services(), logSink: (l) => logs.push(l) },
    ),
    WAIT_MS,
    "the controller to start",
  );
  return { ctl, logs };
}

Deno.test({
  name:
    "controller: a device revoked on the controller is refused through a relay that never heard of it; unknown, expired, disabled and forged too",
  ...opts,
  fn: async () => {
    const reg = await registry();
    let clock = new Date();
    // The relay's policy carries no revocation at all: it never learns of one.
    const r = await relayedController(reg, { revokedSerials: [] }, () => clock);
    const h = r.h;
    try {
      const phone = await reg.devices.register(h.device.cert);
      const fp = await pki.deviceFingerprint(h.device.cert);
      const ok = await unary(h.client(), "Unary", { text: "before" });
      assert.equal(ok.res.text, "before");
      assert.equal(ok.res.metadata["x-pharos-device-fp"], fp);

      // Unknown to the controller: a valid Device-CA leaf the relay lets through.
      const stranger = await h.fleet.issue({ kind: "device", name: "stranger" });
      await refusedByController(unary(h.client(stranger), "Unary", { text: "unknown" }));
      assert.ok(logged(r.grpcLogs, "device-unknown"));

      // A client-sent fingerprint is stripped by the relay: the stranger stays a stranger.
      const forged = new grpc.Metadata();
      forged.set("x-pharos-device-fp", fp);
      await refusedByController(unary(h.client(stranger), "Unary", { text: "forged" }, forged));
      // Without a certificate only the claim passes, without any fingerprint, and the
      // controller's device check lets a call without the header through.
      const claim = new accountPkg.AccountSync(
        `localhost:${h.relay.port}`,
        grpc.credentials.createSsl(Buffer.from(h.fleet.rootPem)),
      );
      try {
        const claimed = await unary(claim, "ClaimEnrollment", { token: "t" }, forged);
        const seen = JSON.parse(claimed.res.ca_fingerprint);
        assert.equal(seen["x-pharos-device-fp"], undefined);
      } finally {
        claim.close();
      }

      // Disabled: refused; enabled again: accepted.
      reg.devices.setStatus(phone.id, "disabled");
      await refusedByController(unary(h.client(), "Unary", { text: "disabled" }));
      assert.ok(logged(r.grpcLogs, "device-disabled"));
      reg.devices.setStatus(phone.id, "active");
      assert.equal((await unary(h.client(), "Unary", { text: "again" })).res.text, "again");

      // Revoked at the controller only: the relay still admits the certificate…
      reg.devices.revoke(phone.id);
      assert.equal(r.t.policy.revoked.has(phone.serial), false);
      // …and the controller refuses it, with the same message as any other refusal.
      await refusedByController(unary(h.client(), "Unary", { text: "after" }));
      assert.ok(logged(r.grpcLogs, "device-revoked"));
      assert.equal(reg.revocations.has(phone.serial), true);

      // Expired by the controller's clock (the relay's clock still accepts the leaf).
      const tablet = await h.fleet.issue({ kind: "device", name: "tablet" });
      await reg.devices.register(tablet.cert);
      assert.equal((await unary(h.client(tablet), "Unary", { text: "t" })).res.text, "t");
      clock = new Date(tablet.cert.notAfter.getTime() + 1000);
      await refusedByController(unary(h.client(tablet), "Unary", { text: "expired" }));
      assert.ok(logged(r.grpcLogs, "device-expired"));
    } finally {
      await r.close();
      await reg.close();
    }
  },
});

Deno.test({
  name:
    "original relay: recognised by ALPN at once, no policy stream opened, calls work, a revoked device is refused by the controller",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const st = await openState(`${dir}/state`, { create: true });
    const fleet = stateFleet(st);
    const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1", "localhost"] });
    const phone = await fleet.issue({ kind: "device", name: "phone" });
    const old = await fleet.issue({ kind: "device", name: "old" }, {
      now: new Date(Date.now() - 2 * 365 * 86_400_000),
    });
    st.close();
    const original = await within(
      startOriginalRelay(fleet, relayLeaf),
      WAIT_MS,
      "the original relay to start",
    );
    const { ctl, logs } = await tunnelController(dir, original.port);
    try {
      const tunnel = ctl.relays.tunnels[0];
      await within(tunnel.whenUp(), WAIT_MS, "the controller's tunnel to come up");
      await until(() => original.sessions === 1, WAIT_MS, "the original relay's session");
      assert.equal(original.lastAlpn, false, "the original relay negotiates no ALPN");
      assert.equal(tunnel.status.relay, "original");
      assert.equal(tunnel.status.note, ORIGINAL_RELAY_NOTE);
      assert.ok(
        logs.some((l) => {
          const j = JSON.parse(l);
          return j.code === "original-relay" && j.note === ORIGINAL_RELAY_NOTE;
        }),
        "the log marks the original relay",
      );
      // The session's policy push was decided against before any stream was opened.
      await until(() => tunnel.status.policy.skipped >= 1, WAIT_MS, "the skipped push");
      assert.equal(tunnel.status.policy.sent, 0);

      const registered = await ctl.devices.register(phone.cert);
      const fp = await pki.deviceFingerprint(phone.cert);
      const res = await call(original, "/pharos.test.v1.Echo/Unary", echoRequest("hello"), fp);
      assert.equal(res.status, 0, res.message);
      const text = new TextDecoder().decode(res.body);
      assert.ok(text.includes("hello") && text.includes(fp), "the controller saw the fingerprint");
      // A call without the header (the certless claim path) passes the device check.
      const bare = await call(original, "/pharos.test.v1.Echo/Unary", echoRequest("bare"), null);
      assert.equal(bare.status, 0, bare.message);

      // Revoked on the controller: the push to this relay is skipped, the controller refuses.
      ctl.devices.revoke(registered.id);
      await until(() => tunnel.status.policy.skipped >= 2, WAIT_MS, "the revocation's push");
      const after = await call(original, "/pharos.test.v1.Echo/Unary", echoRequest("x"), fp);
      assert.equal(after.status, grpc.status.UNAUTHENTICATED);
      assert.equal(after.message, DEVICE_REFUSED);
      // Unknown and expired fingerprints are refused the same way.
      const unknown = "sha256:" + "ab".repeat(32);
      assert.equal(
        (await call(original, "/pharos.test.v1.Echo/Unary", echoRequest("u"), unknown)).status,
        grpc.status.UNAUTHENTICATED,
      );
      await ctl.devices.register(old.cert);
      const expired = await call(
        original,
        "/pharos.test.v1.Echo/Unary",
        echoRequest("e"),
        await pki.deviceFingerprint(old.cert),
      );
      assert.equal(expired.status, grpc.status.UNAUTHENTICATED);
      assert.equal(expired.message, DEVICE_REFUSED);

      // Nothing was left waiting on the relay: the controller never opened a stream.
      assert.equal(original.controllerStreams, 0);
      assert.equal(tunnel.status.policy.sent, 0);
      assert.equal(tunnel.status.state, "up");
      assert.equal(tunnel.sessions, 1);
      assert.equal(await within(tunnel.pushPolicy(), WAIT_MS, "a policy push"), "unsupported");
    } finally {
      await within(ctl.shutdown(), WAIT_MS, "the controller to shut down");
      await within(original.close(), WAIT_MS, "the original relay to close");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "policy push: a stream the relay never acknowledges costs one short deadline, then is reset",
  ...opts,
  fn: async () => {
    const [a, b] = memoryDuplexPair();
    const controller = new MuxSession(a, { role: "server", keepAliveIntervalMs: 0 });
    // The relay side never calls accept(), as the original relay.
    const relay = new MuxSession(b, { role: "client", keepAliveIntervalMs: 0 });
    try {
      await assert.rejects(
        pushPolicy(controller, { v: 1, revision: 1, revoked_serials: [], egress_allow: [] }, 200),
        (e: any) => {
          assert.equal(e.code, "timeout");
          return true;
        },
      );
      assert.equal(controller.streamCount, 0, "the unanswered stream was reset");
      assert.equal(controller.isClosed, false, "the session goes on");
    } finally {
      await within(controller.close(), WAIT_MS, "the controller's mux session to close");
      await within(relay.close(), WAIT_MS, "the relay's mux session to close");
    }
  },
});

Deno.test({
  name:
    "policy: our relay negotiates the ALPN; an older revision is answered stale, and the controller catches up",
  ...opts,
  fn: async () => {
    const reg = await registry();
    const source = new PolicySource(reg.db, reg.revocations);
    const r = await relayedController(reg, { policySource: source });
    try {
      const tunnel = r.t.client;
      assert.equal(tunnel.status.relay, "pharos");
      assert.equal(tunnel.status.note, null);
      await until(() => r.t.policy.revision > 0, WAIT_MS, "the first policy");
      assert.equal(r.t.policy.revision, currentPolicyRevision(reg.db));

      // Another controller instance (or a restored backup) left a newer revision on the relay.
      const ahead = currentPolicyRevision(reg.db) + 10;
      assert.equal(
        r.t.policy.apply(JSON.stringify({
          v: 1,
          revision: ahead,
          revoked_serials: [],
          egress_allow: [],
        })),
        true,
      );
      assert.equal(await within(tunnel.pushPolicy(), WAIT_MS, "a policy push"), "ok");
      assert.ok(r.t.logs.some((l) => l.includes('"code":"policy-stale"')));
      assert.ok(r.t.policy.revision > ahead);
      assert.equal(r.t.policy.revision, currentPolicyRevision(reg.db));
      assert.equal(tunnel.status.policy.lastAnswer, "ok");

      // A relay claiming an implausibly newer revision does not drag the counter along.
      const far = currentPolicyRevision(reg.db) + MAX_CATCH_UP + 5;
      r.t.policy.apply(JSON.stringify({
        v: 1,
        revision: far,
        revoked_serials: [],
        egress_allow: [],
      }));
      const before = currentPolicyRevision(reg.db);
      assert.equal(await within(tunnel.pushPolicy(), WAIT_MS, "a policy push"), "stale");
      assert.equal(tunnel.status.policy.lastAnswer, `stale: ${far}`);
      assert.ok(currentPolicyRevision(reg.db) < far);
      assert.equal(currentPolicyRevision(reg.db), before + 2, "two fresh documents, no jump");
    } finally {
      await r.close();
      await reg.close();
    }
  },
});

Deno.test({
  name: "policy revision: a database counter, strictly increasing across reopen",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      let db = openDatabase(`${dir}/pharos.db`);
      const first = nextPolicyRevision(db);
      // Seeded above any wall-clock revision an earlier controller sent.
      assert.ok(first > Date.parse("2020-01-01"));
      const second = nextPolicyRevision(db);
      assert.equal(second, first + 1);
      db.close();
      db = openDatabase(`${dir}/pharos.db`);
      assert.equal(currentPolicyRevision(db), second);
      assert.equal(nextPolicyRevision(db), second + 1);
      assert.equal(catchUpPolicyRevision(db, second), false, "never backwards");
      assert.equal(catchUpPolicyRevision(db, second + 100), true);
      assert.equal(nextPolicyRevision(db), second + 101);
      const row = db.prepare("SELECT version, updated_at FROM relay_policy_revision").get() as any;
      assert.ok(row.version > 1 && row.updated_at);
      db.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "relay revoked at the controller: its live tunnel closes, redials are refused, calls stop",
  ...opts,
  fn: async () => {
    const reg = await registry();
    const r = await relayedController(reg, {
      revocations: reg.revocations,
      backoff: { initialMs: 50, maxMs: 200, stableMs: 5000 },
    });
    try {
      await reg.devices.register(r.h.device.cert);
      assert.equal((await unary(r.h.client(), "Unary", { text: "up" })).res.text, "up");
      const serial = r.t.client.status.relaySerial!;
      assert.equal(serial, pki.serialOf(r.h.relayLeaf.cert));

      reg.revocations.revoke(serial, "relay", { subject: "relay under test" });
      await until(() => !r.t.slot.connected, WAIT_MS, "the tunnel to close");
      assert.ok(logged(r.t.logs, "relay-revoked"));
      // The next dial sees the same certificate and refuses it after the handshake.
      await until(
        () => r.t.client.status.lastError?.code === "revoked",
        WAIT_MS,
        "a refused redial",
      );
      assert.equal(r.t.client.sessions, 1);
      // Each refused redial is attached by the relay for a moment, but none
      // comes up: the controller hangs up before it answers on the session.
      const ups = r.t.logs.filter((l) => l.includes('"msg":"controller tunnel up"'));
      assert.equal(ups.length, 1, "only the first, unrevoked session came up");
      await assert.rejects(unary(r.h.client(), "Unary", { text: "down" }), (e: any) => {
        assert.equal(e.code, grpc.status.UNAVAILABLE);
        return true;
      });
    } finally {
      await r.close();
      await reg.close();
    }
  },
});

Deno.test({
  name: "relay revoked at the controller: its egress session closes and the next dial is refused",
  ...opts,
  fn: async () => {
    const reg = await registry();
    const fleet = await makeFleet();
    const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
    const ctl = await fleet.issue({ kind: "controller-client" });
    const logs: string[] = [];
    const log = createLogger("egress", { sink: (l) => logs.push(l) });
    const policy = new RelayPolicy();
    const listener = await within(
      testControllerListener(fleet, relayLeaf, {
        policy,
        log,
        onController: (socket) => void serveEgress(nodeToWeb(socket), { policy, log }),
      }),
      WAIT_MS,
      "the relay's egress listener",
    );
    const client = new EgressClient(
      { host: "127.0.0.1", port: listener.port },
      {
        certPem: ctl.chainPem,
        keyPem: ctl.keyPem,
        caPem: fleet.rootPem + pki.certPem(fleet.pki.fleet.cert),
        trust: fleet.trust,
        revoked: reg.revocations.list,
      },
      log,
      { revocations: reg.revocations },
    );
    try {
      const session = await within(client.session(), WAIT_MS, "the egress session");
      assert.equal(client.relayKind, "pharos");
      reg.revocations.revoke(pki.serialOf(relayLeaf.cert), "relay");
      assert.ok(logged(logs, "relay-revoked"));
      await within(session.closed, WAIT_MS, "the egress session to close");
      assert.equal(client.relayKind, null);
      await assert.rejects(within(client.session(), WAIT_MS, "a refused redial"), (e: any) => {
        assert.equal(e.code, "revoked");
        return true;
      });
    } finally {
      await within(client.close(), WAIT_MS, "the egress client to close");
      await within(listener.close(), WAIT_MS, "the relay's egress listener to close");
      await reg.close();
    }
  },
});

Deno.test({
  name:
    "controller revoked at the relay: a policy naming the tunnel's certificate closes it and its redials are refused",
  ...opts,
  fn: async () => {
    await withServingController(async (r, revokedSerials) => {
      // The controller's own client certificate is compromised: revoke it on the relay.
      const ctlSerial = pki.serialOf(r.t.controllerLeaf.cert);
      revokedSerials.push(ctlSerial);
      void r.t.client.pushPolicy();
      await until(() => logged(r.t.logs, "controller-revoked"), WAIT_MS, "the session to close");
      await until(
        () => loggedMessage(r.t.logs, "refused a non-controller connection", "revoked"),
        WAIT_MS,
        "a refused redial",
      );
      assert.equal(r.t.slot.connected, false);
    });
  },
});

Deno.test({
  name:
    "controller revoked at the relay: a policy naming the controller's gRPC certificate drops the backend leg and refuses it again",
  ...opts,
  fn: async () => {
    await withServingController(async (r, revokedSerials) => {
      revokedSerials.push(pki.serialOf(r.server.cert));
      assert.equal(await within(r.t.client.pushPolicy(), WAIT_MS, "a policy push"), "ok");
      assert.ok(logged(r.h.logs, "controller-revoked"), "the live backend session was dropped");
      await assert.rejects(unary(r.h.client(), "Unary", { text: "down" }), (e: any) => {
        assert.equal(e.code, grpc.status.UNAVAILABLE);
        return true;
      });
      assert.ok(loggedMessage(r.h.logs, "controller connection refused", "revoked"));
      // The tunnel itself (another certificate) stays up.
      assert.equal(r.t.slot.connected, true);
    });
  },
});

Deno.test({
  name:
    "controller: revoking a relay certificate closes that relay's tunnel and the revocation list is shared",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const st = await openState(`${dir}/state`, { create: true });
    const csr = await pki.generateCsr("relay");
    const relayCert = await pki.issueLeaf(st.pki.cas, csr.csrPem, {
      kind: "relay",
      hosts: ["127.0.0.1", "localhost"],
    });
    const fleet = stateFleet(st);
    st.close();
    const relayLeaf = {
      cert: relayCert,
      keyPem: csr.keyPem,
      chainPem: pki.bundlePem([relayCert, fleet.pki.fleet.cert]),
    };
    const relayLogs: string[] = [];
    const policy = new RelayPolicy();
    const { TunnelSlot } = await import("../../relay/tunnel.ts");
    const slot = new TunnelSlot(policy, createLogger("relay", { sink: (l) => relayLogs.push(l) }));
    const listener = await within(
      testControllerListener(fleet, relayLeaf, {
        policy,
        log: createLogger("relay", { sink: (l) => relayLogs.push(l) }),
        onController: (socket) => slot.attach(nodeToWeb(socket)),
      }),
      WAIT_MS,
      "the relay's controller listener",
    );
    const { ctl, logs } = await tunnelController(dir, listener.port);
    try {
      const tunnel = ctl.relays.tunnels[0];
      await within(tunnel.whenUp(), WAIT_MS, "the controller's tunnel to come up");
      await until(
        () => slot.connected && policy.revision > 0,
        WAIT_MS,
        "the tunnel and its policy",
      );
      assert.equal(tunnel.status.relay, "pharos");
      // One list: the gRPC guard's, the embedded relay's and the pushed one are the same.
      assert.equal(ctl.relays.revoked, ctl.revocations.list);

      ctl.revocations.revoke(pki.serialOf(relayCert), "relay", { subject: "relay under test" });
      await until(() => !slot.connected, WAIT_MS, "the relay's tunnel to close");
      assert.equal(tunnel.status.lastError?.code, "relay-revoked");
      assert.ok(logged(logs, "relay-revoked"));
      assert.equal(tunnel.sessions, 1);
    } finally {
      await within(ctl.shutdown(), WAIT_MS, "the controller to shut down");
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
      await within(listener.close(), WAIT_MS, "the relay's controller listener to close");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
