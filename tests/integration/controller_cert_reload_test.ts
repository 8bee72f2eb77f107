// deno-lint-ignore-file no-explicit-any
/**
 * The controller's own renewed certificates are taken up while it runs
 * (issue 12, item 9): the embedded relay's device listener presents the new
 * certificate to new connections while a connection and a call opened
 * before the renewal go on; the gRPC server's TLS identity (tunnel
 * substreams with inner TLS) likewise; a relay tunnel is cycled onto the
 * new controller certificate, and a later dial presents it too. Real TLS on loopback.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { resolveConfig } from "../../controller/config.ts";
import { openDatabase } from "../../controller/db/sqlite.ts";
import { Devices } from "../../controller/devices.ts";
import { createControllerGrpc } from "../../controller/grpc/server.ts";
import { renewDueCertificates } from "../../controller/renewal.ts";
import { Revocations } from "../../controller/revocation.ts";
import { startController } from "../../controller/serve.ts";
import { serviceCert, type ServiceCertName } from "../../controller/service_certs.ts";
import { openState } from "../../controller/state.ts";
import { createLogger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { RelayPolicy } from "../../core/relay_policy.ts";
import { listenForController } from "../../relay/controller_listener.ts";
import { TunnelSlot } from "../../relay/tunnel.ts";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import { echoPkg } from "../support/echo_backend.ts";
import { directTls, echoOn, type Leaf, sessionOver } from "../support/grpc_direct.ts";
import { CALL_DEADLINE_MS, deadline, unary } from "../support/relay_harness.ts";
import { closeClients, until, WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
/** Ten months on: a one-year leaf has less than a third of its life left. */
const LATER = () => new Date(Date.now() + 300 * 86400_000);

/** Echo's Unary, and a Bidi that answers each message (a call that stays open). */
function echoImpl() {
  return {
    Unary(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      cb(null, { text: call.request.text });
    },
    Bidi(call: grpc.ServerDuplexStream<any, any>) {
      call.on("data", (m: any) => call.write({ text: m.text }));
      call.on("end", () => call.end());
    },
  };
}

async function issue(cas: pki.Pki, profile: pki.LeafProfile) {
  const csr = await pki.generateCsr(profile.kind === "device" ? "device" : "node");
  const cert = await pki.issueLeaf(cas, csr.csrPem, profile);
  const ca = profile.kind === "device" ? cas.device.cert : cas.fleet.cert;
  return { cert, keyPem: csr.keyPem, chainPem: pki.bundlePem([cert, ca]) };
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

/** The serial of the certificate a fresh TLS client is shown (verified against the root). */
async function presentedSerial(port: number, rootPem: string): Promise<string> {
  const socket = tls.connect({
    host: "127.0.0.1",
    port,
    servername: "localhost",
    ca: rootPem,
    ALPNProtocols: ["h2"],
  });
  try {
    await within(
      new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", resolve);
        socket.once("error", reject);
      }),
      WAIT_MS,
      "a fresh TLS handshake with the embedded relay",
    );
    return pki.serialOf(pki.parseCertificate(new Uint8Array(socket.getPeerCertificate().raw)));
  } finally {
    socket.destroy();
  }
}

/** One Bidi call held open: each `say` is answered on the same call. */
function openBidi(client: any) {
  const call = client.Bidi(new grpc.Metadata(), deadline(CALL_DEADLINE_MS + WAIT_MS));
  const replies: string[] = [];
  let failure: unknown = null;
  call.on("data", (m: any) => replies.push(m.text));
  call.on("error", (e: unknown) => failure = e);
  const ended = new Promise<void>((resolve) => call.on("status", () => resolve()));
  return {
    async say(text: string) {
      call.write({ text });
      await until(() => replies.includes(text) || failure !== null, WAIT_MS, `the reply "${text}"`);
      assert.equal(failure, null, `the open call failed: ${failure}`);
    },
    /** Ends it abruptly (a failed test must not leave it holding its connection). */
    cancel: () => call.cancel(),
    async end() {
      call.end();
      await within(ended, WAIT_MS, "the open call to end");
      assert.equal(failure, null, `the open call failed: ${failure}`);
    },
  };
}

const serialOfCert = async (state: Parameters<typeof serviceCert>[0], name: ServiceCertName) =>
  pki.serialOf((await serviceCert(state, name)).leaf);

Deno.test({
  name:
    "cert reload: the embedded relay and the relay tunnels take renewed certificates without a restart",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    // A remote relay's tunnel port, as the relay program builds it, with a relay
    // certificate from the controller's CA; it records each controller's serial.
    const st = await openState(dir, { create: true });
    const relayLeaf = await issue(st.pki.cas, { kind: "relay", hosts: ["127.0.0.1"] });
    const trust = st.pki.trust;
    const fleetPem = pki.certPem(st.pki.cas.fleet.cert);
    st.close();
    const relayLog = createLogger("relay", { sink: () => {} });
    const policy = new RelayPolicy();
    const slot = new TunnelSlot(policy, relayLog);
    const controllerSerials: string[] = [];
    const listen = (port: number) =>
      within(
        listenForController({
          listen: { hostname: "127.0.0.1", port },
          certPem: relayLeaf.chainPem,
          keyPem: relayLeaf.keyPem,
          fleetCaPem: fleetPem,
          trust,
          revoked: policy.revoked,
          log: relayLog,
          onController: (socket, who) => {
            controllerSerials.push(who.serial);
            slot.attach(nodeToWeb(socket));
          },
        }),
        WAIT_MS,
        "the relay's tunnel listener",
      );
    let tunnelPort = await listen(0);

    const logs: string[] = [];
    const cfg = resolveConfig(
      {
        state: dir,
        "ui-listen": "127.0.0.1:0",
        "relay-listen": "127.0.0.1:0",
        "relay-tunnels": `127.0.0.1:${tunnelPort.port}`,
      },
      () => undefined,
    );
    const ctl = await within(
      startController(cfg, {
        services: [[echoPkg.Echo.service, echoImpl()]],
        logSink: (l) => logs.push(l),
        print: () => {},
      }),
      WAIT_MS,
      "the controller to start",
    );
    const rootPem = pki.certPem(ctl.state.pki.cas.root.cert);
    const relay = ctl.relays.embedded!;
    const dev = await issue(ctl.state.pki.cas, { kind: "device", name: "phone" });
    await ctl.devices.register(dev.cert);
    const before = deviceClient(relay.port, rootPem, dev);
    const clients = [before];
    let renewed: Record<string, string> = {};
    let open: ReturnType<typeof openBidi> | undefined;
    try {
      const old = {
        relay: await serialOfCert(ctl.state, "embedded-relay"),
        client: await serialOfCert(ctl.state, "controller-client"),
      };
      assert.equal(await presentedSerial(relay.port, rootPem), old.relay);
      await until(() => controllerSerials.length === 1, WAIT_MS, "the relay to take the tunnel");
      assert.deepEqual(controllerSerials, [old.client]);
      // A connection, and a call on it, opened before the renewal.
      assert.equal((await unary(before, "Unary", { text: "before" })).res.text, "before");
      open = openBidi(before);
      await open.say("held 1");

      // The renewal check finds the controller's certificates due and hands them over.
      const renewalLogs: string[] = [];
      const outcomes = await renewDueCertificates(ctl.state, {
        log: createLogger("renewal", { sink: (l) => renewalLogs.push(l) }),
        now: LATER,
        reload: ctl.certificates.renewed,
      });
      const own = outcomes.filter((o) => o.kind === "controller");
      assert.deepEqual(own.map((o) => o.name).sort(), [
        "controller-client",
        "controller-server",
        "embedded-relay",
      ]);
      assert.ok(own.every((o) => o.ok), JSON.stringify(own));
      renewed = Object.fromEntries(own.map((o) => [o.name, o.serial!]));
      assert.notEqual(renewed["embedded-relay"], old.relay);
      assert.notEqual(renewed["controller-client"], old.client);
      // Taken up while running: no "restart to renew" line, one "reloaded" line each.
      assert.ok(!renewalLogs.some((l) => l.includes("restart-to-renew")), renewalLogs.join("\n"));
      assert.equal(renewalLogs.filter((l) => l.includes('"code":"cert-reloaded"')).length, 3);
      assert.ok(logs.some((l) => l.includes("client listener certificate replaced")));

      // A fresh TLS client is shown the new certificate, and it verifies.
      assert.equal(await presentedSerial(relay.port, rootPem), renewed["embedded-relay"]);
      // The call in progress goes on, and so does the connection opened before:
      // a call on it succeeds without a new connection being accepted.
      await open.say("held 2");
      await open.end();
      const accepted = relay.listener.stats.accepted;
      assert.equal((await unary(before, "Unary", { text: "after" })).res.text, "after");
      assert.equal(relay.listener.stats.accepted, accepted, "the old connection was reused");
      // A device connecting now (new certificate, checked against the root) gets through.
      const after = deviceClient(relay.port, rootPem, dev);
      clients.push(after);
      assert.equal((await unary(after, "Unary", { text: "new" })).res.text, "new");

      // The live tunnel is cycled onto the new certificate (tunnel_cycle_*_test.ts);
      // a later dial presents it too.
      await until(() => controllerSerials.length === 2, WAIT_MS, "the tunnel to be cycled");
      assert.equal(controllerSerials[1], renewed["controller-client"]);
      await within(tunnelPort.close(), WAIT_MS, "the relay's tunnel listener to close");
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
      tunnelPort = await listen(tunnelPort.port);
      await until(() => controllerSerials.length === 3, WAIT_MS, "the tunnel to be dialled again");
      assert.equal(controllerSerials[2], renewed["controller-client"]);
      await until(() => slot.connected, WAIT_MS, "the relay to hold the new tunnel");
      await within(ctl.relays.tunnels[0].whenUp(), WAIT_MS, "the tunnel to be up again");
    } finally {
      open?.cancel();
      await closeClients(clients, relay);
      await within(ctl.shutdown(), WAIT_MS, "the controller to shut down");
      await within(tunnelPort.close(), WAIT_MS, "the relay's tunnel listener to close");
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
    }
    // The renewed certificates are the ones the next start uses.
    const again = await openState(dir, {});
    try {
      assert.equal(await serialOfCert(again, "embedded-relay"), renewed["embedded-relay"]);
      assert.equal(await serialOfCert(again, "controller-server"), renewed["controller-server"]);
    } finally {
      again.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A TLS connection into `accept` with `leaf` as the client, and an HTTP/2 session on it. */
async function grpcConnection(accept: (c: Duplex) => void, caPem: string, leaf: Leaf) {
  const socket = directTls(accept, caPem, leaf);
  await within(
    new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    }),
    WAIT_MS,
    "the TLS handshake with the controller's gRPC server",
  );
  const serial = pki.serialOf(
    pki.parseCertificate(new Uint8Array(socket.getPeerCertificate().raw)),
  );
  return { serial, session: sessionOver(socket) };
}

/** One Echo/Unary call on `session`; its grpc-status. */
async function callStatus(session: http2.ClientHttp2Session): Promise<string | undefined> {
  return (await echoOn(session)).status;
}

Deno.test({
  name:
    "cert reload: the gRPC server presents a renewed certificate to new connections, open ones go on",
  ...opts,
  fn: async () => {
    const cas = await pki.createPki();
    const trust = await pki.TrustStore.create({
      root: cas.root.cert,
      fleetCa: cas.fleet.cert,
      deviceCa: cas.device.cert,
    });
    const first = await issue(cas, { kind: "controller-server" });
    const dir = await Deno.makeTempDir();
    const db = openDatabase(`${dir}/pharos.db`);
    const revocations = new Revocations(db);
    const g = createControllerGrpc({
      certPem: first.chainPem,
      keyPem: first.keyPem,
      fleetCaPem: pki.certPem(cas.fleet.cert),
      trust,
      revoked: revocations.list,
      devices: new Devices(db, revocations),
      log: createLogger("grpc", { sink: () => {} }),
      services: [[echoPkg.Echo.service, echoImpl()]],
    });
    const caPem = pki.certPem(cas.root.cert) + pki.certPem(cas.fleet.cert);
    const relay = await issue(cas, { kind: "relay", hosts: ["relay.example"] });
    const sessions: http2.ClientHttp2Session[] = [];
    try {
      const before = await grpcConnection(g.accept, caPem, relay);
      sessions.push(before.session);
      assert.equal(before.serial, pki.serialOf(first.cert));
      assert.equal(await callStatus(before.session), "0");

      const second = await issue(cas, { kind: "controller-server" });
      g.setCertificate(second.chainPem, second.keyPem);
      const after = await grpcConnection(g.accept, caPem, relay);
      sessions.push(after.session);
      assert.equal(after.serial, pki.serialOf(second.cert));
      assert.equal(await callStatus(after.session), "0");
      // The connection opened before still serves calls.
      assert.equal(await callStatus(before.session), "0");
    } finally {
      for (const s of sessions) s.destroy();
      g.close();
      db.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
