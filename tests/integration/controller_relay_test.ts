// deno-lint-ignore-file no-explicit-any
/**
 * The controller's relay wiring: the embedded relay (no socket between it
 * and the controller), remote relays reached through tunnels the controller
 * dials, and the guard that admits only relay certificates to the
 * controller's gRPC server.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { resolveConfig } from "../../controller/config.ts";
import { openDatabase } from "../../controller/db/sqlite.ts";
import { Devices } from "../../controller/devices.ts";
import { DEVICE_REFUSED } from "../../controller/grpc/device_guard.ts";
import { createControllerGrpc } from "../../controller/grpc/server.ts";
import { Revocations } from "../../controller/revocation.ts";
import { startController } from "../../controller/serve.ts";
import { serviceCert } from "../../controller/service_certs.ts";
import { createLogger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { echoPkg } from "../support/echo_backend.ts";
import { directCall } from "../support/grpc_direct.ts";
import { unary } from "../support/relay_harness.ts";
import { runTestRelay, writeRelayMaterial } from "../support/remote_relay.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

function echoImpl() {
  return {
    Unary(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      const md: Record<string, string> = {};
      for (const [k, v] of Object.entries(call.metadata.getMap())) md[k] = String(v);
      cb(null, { text: call.request.text, metadata: md });
    },
  };
}

async function issueDevice(cas: pki.Pki) {
  const csr = await pki.generateCsr("device", { name: "phone" });
  const cert = await pki.issueLeaf(cas, csr.csrPem, { kind: "device", name: "phone" });
  return { cert, keyPem: csr.keyPem, chainPem: pki.bundlePem([cert, cas.device.cert]) };
}

function deviceClient(port: number, rootPem: string, dev: { keyPem: string; chainPem: string }) {
  return new echoPkg.Echo(
    `localhost:${port}`,
    grpc.credentials.createSsl(
      Buffer.from(rootPem),
      Buffer.from(dev.keyPem),
      Buffer.from(dev.chainPem),
    ),
  );
}

Deno.test({
  name: "controller: a device reaches the controller's gRPC server through the embedded relay",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const logs: string[] = [];
    const cfg = resolveConfig(
      { state: dir, "ui-listen": "127.0.0.1:0", "relay-listen": "127.0.0.1:0" },
      () => undefined,
    );
    const ctl = await within(
      startController(cfg, {
        services: [[echoPkg.Echo.service, echoImpl()]],
        logSink: (l) => logs.push(l),
      }),
      WAIT_MS,
      "the controller to start",
    );
    const dev = await issueDevice(ctl.state.pki.cas);
    await ctl.devices.register(dev.cert);
    const client = deviceClient(
      ctl.relays.embedded!.port,
      pki.certPem(ctl.state.pki.cas.root.cert),
      dev,
    );
    try {
      const { res } = await unary(client, "Unary", { text: "through the embedded relay" });
      assert.equal(res.text, "through the embedded relay");
      assert.match(res.metadata["x-pharos-device-fp"], /^sha256:[0-9a-f]{64}$/);
      // The in-process server checks the device too: a disabled device (which the
      // relay cannot know about) is refused by the controller.
      const registered = ctl.devices.byFingerprint(res.metadata["x-pharos-device-fp"])!;
      ctl.devices.setStatus(registered.id, "disabled");
      await assert.rejects(unary(client, "Unary", { text: "disabled" }), (e: any) => {
        assert.equal(e.code, grpc.status.UNAUTHENTICATED);
        assert.equal(e.details, DEVICE_REFUSED);
        return true;
      });
      ctl.devices.setStatus(registered.id, "active");
      // Health endpoint of the dashboard listener answers too.
      const health = await within(
        fetch(`http://127.0.0.1:${ctl.uiPort}/healthz`).then((r) => r.json()),
        WAIT_MS,
        "the health endpoint",
      );
      assert.equal(health.root_ca_fingerprint, ctl.state.pki.rootFingerprint);
    } finally {
      client.close();
      await within(ctl.shutdown(), WAIT_MS, "the controller to shut down");
    }
    // The service certificates survive a restart unchanged.
    const again = await within(
      startController({ ...cfg, relayListen: "off" }, { logSink: () => {} }),
      WAIT_MS,
      "the controller to start again",
    );
    try {
      const a = await serviceCert(again.state, "controller-server");
      const b = await serviceCert(again.state, "controller-server");
      assert.equal(pki.serialOf(a.leaf), pki.serialOf(b.leaf));
      assert.equal(again.relays.embedded, null);
    } finally {
      await within(again.shutdown(), WAIT_MS, "the restarted controller to shut down");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "controller: an embedded relay that cannot bind says which setting to change, and the rest runs",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const logs: string[] = [];
    const cfg = resolveConfig(
      {
        state: dir,
        "ui-listen": "127.0.0.1:0",
        "relay-listen": `127.0.0.1:${(busy.addr as Deno.NetAddr).port}`,
      },
      () => undefined,
    );
    const ctl = await within(
      startController(cfg, { logSink: (l) => logs.push(l) }),
      WAIT_MS,
      "the controller to start",
    );
    try {
      const line = logs.map((l) => JSON.parse(l)).find((l) =>
        l.msg === "embedded relay not started"
      );
      assert.ok(line, logs.join("\n"));
      assert.equal(line.level, "error");
      assert.match(line.error.message, /already in use.*--relay-listen/);
      const health = await within(
        fetch(`http://127.0.0.1:${ctl.uiPort}/healthz`),
        WAIT_MS,
        "the health endpoint",
      );
      await health.body?.cancel();
      assert.equal(health.status, 200);
    } finally {
      await within(ctl.shutdown(), WAIT_MS, "the controller to shut down");
      busy.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "controller: it dials a remote relay's tunnel and serves devices through it",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const relayDir = `${dir}/relay`;
    const ctlState = `${dir}/state`;
    // The remote relay's material, as onboarding would install it.
    const { openState } = await import("../../controller/state.ts");
    const st = await openState(ctlState, { create: true });
    await writeRelayMaterial(st.pki.cas, relayDir);
    const device = await issueDevice(st.pki.cas);
    const rootPem = pki.certPem(st.pki.cas.root.cert);
    st.close();

    const relayLogs: string[] = [];
    const relay = await runTestRelay(relayDir, relayLogs);
    const cfg = resolveConfig(
      {
        state: ctlState,
        "ui-listen": "127.0.0.1:0",
        "relay-listen": "off",
        "relay-tunnels": `127.0.0.1:${relay.ports.tunnel}`,
      },
      () => undefined,
    );
    const ctl = await within(
      startController(cfg, {
        services: [[echoPkg.Echo.service, echoImpl()]],
        logSink: () => {},
      }),
      WAIT_MS,
      "the controller to start",
    );
    const registered = await ctl.devices.register(device.cert);
    const client = deviceClient(relay.ports.client, rootPem, device);
    try {
      await until(
        () => relayLogs.some((l) => l.includes("controller tunnel up")),
        WAIT_MS,
        "the controller's tunnel",
      );
      const { res } = await unary(client, "Unary", { text: "through a remote relay" });
      assert.equal(res.text, "through a remote relay");
      assert.equal(res.metadata["x-pharos-device-fp"], await pki.deviceFingerprint(device.cert));
      assert.ok(
        relayLogs.some((l) => l.includes('"msg":"policy applied"')),
        "the controller pushed its policy",
      );

      // Revoking the device on the controller reaches the remote relay without a restart
      // (pushed at once), and the relay refuses it at its own door.
      ctl.devices.revoke(registered.id);
      await until(
        () =>
          relayLogs.some((l) => l.includes('"msg":"policy applied"') && l.includes('"revoked":1')),
        WAIT_MS,
        "the revocation to reach the relay",
      );
      await assert.rejects(unary(client, "Unary", { text: "after revocation" }), (e: any) => {
        assert.equal(e.code, grpc.status.UNAUTHENTICATED);
        assert.match(e.details, /^relay: device certificate refused: .*revoked/);
        return true;
      });
    } finally {
      client.close();
      await within(ctl.shutdown(), WAIT_MS, "the controller to shut down");
      await within(relay.close(), WAIT_MS, "the relay to close");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "controller gRPC: only relay certificates get in (not device, node or controller certificates)",
  ...opts,
  fn: async () => {
    const cas = await pki.createPki();
    const trust = await pki.TrustStore.create({
      root: cas.root.cert,
      fleetCa: cas.fleet.cert,
      deviceCa: cas.device.cert,
    });
    const issue = async (profile: pki.LeafProfile) => {
      const csr = await pki.generateCsr(profile.kind === "device" ? "device" : "node");
      const cert = await pki.issueLeaf(cas, csr.csrPem, profile);
      const ca = profile.kind === "device" ? cas.device.cert : cas.fleet.cert;
      return { cert, keyPem: csr.keyPem, chainPem: pki.bundlePem([cert, ca]) };
    };
    const server = await issue({ kind: "controller-server" });
    const dir = await Deno.makeTempDir();
    const db = openDatabase(`${dir}/pharos.db`);
    const revocations = new Revocations(db);
    const revoked = revocations.list;
    const g = createControllerGrpc({
      certPem: server.chainPem,
      keyPem: server.keyPem,
      fleetCaPem: pki.certPem(cas.fleet.cert),
      trust,
      revoked,
      devices: new Devices(db, revocations),
      log: createLogger("grpc", { sink: () => {} }),
      services: [[echoPkg.Echo.service, echoImpl()]],
    });
    const caPem = pki.certPem(cas.root.cert) + pki.certPem(cas.fleet.cert);
    try {
      const relay = await issue({ kind: "relay", hosts: ["relay.example"] });
      assert.equal((await directCall(g.accept, caPem, relay)).status, "0");
      // A controller client certificate chains to the Fleet CA with clientAuth:
      // TLS accepts it, the guard does not (7.2 of the contract).
      const ctlClient = await directCall(
        g.accept,
        caPem,
        await issue({ kind: "controller-client" }),
      );
      assert.equal(ctlClient.status, String(grpc.status.UNAUTHENTICATED));
      assert.match(
        ctlClient.message!,
        /caller refused: a controller certificate was presented where relay is required/,
      );
      // A node certificate (serverAuth only) is already refused by the TLS layer.
      const node = await directCall(
        g.accept,
        caPem,
        await issue({ kind: "node", host: "203.0.113.8" }),
      );
      assert.notEqual(node.status, "0");
      // A device leaf does not even pass the TLS layer (its issuer is not the Fleet CA).
      const dev = await directCall(g.accept, caPem, await issue({ kind: "device", name: "d" }));
      assert.notEqual(dev.status, "0");
      // Revoking the relay cuts it off on its next call, without restart.
      revocations.revoke(relay.cert.serialNumber, "relay");
      const after = await directCall(g.accept, caPem, relay);
      assert.equal(after.status, String(grpc.status.UNAUTHENTICATED));
      assert.match(after.message!, /revoked/);
    } finally {
      g.close();
      db.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
