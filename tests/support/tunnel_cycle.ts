// deno-lint-ignore-file no-explicit-any
/**
 * A real controller behind one remote relay, for the tunnel cycle tests.
 * The relay is assembled from its real parts as relay/run.ts does (the
 * controller-only tunnel listener, a TunnelSlot, the client listener and
 * proxy) so a test can choose the drain grace; the controller is the real
 * one (startController) dialling the relay's tunnel port with its
 * `controller-client` certificate. Everything on loopback, ports from 0.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { resolveConfig } from "../../controller/config.ts";
import { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import { type RunningController, startController } from "../../controller/serve.ts";
import { serviceCert } from "../../controller/service_certs.ts";
import { openState } from "../../controller/state.ts";
import { createLogger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { type PolicyDocument, RelayPolicy } from "../../core/relay_policy.ts";
import { listenForController } from "../../relay/controller_listener.ts";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import { type RunningRelay, startRelay } from "../../relay/relay.ts";
import { TunnelSlot } from "../../relay/tunnel.ts";
import { echoPkg } from "./echo_backend.ts";
import type { Fleet, IssuedLeaf } from "./pki_fixture.ts";
import { CALL_DEADLINE_MS, deadline, unary } from "./relay_harness.ts";
import { closeClients, until, WAIT_MS, within } from "./wait.ts";

/** Echo's Unary, and a Bidi that answers each message (a call that stays open). */
function echoServices(): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation][] {
  return [[echoPkg.Echo.service, {
    Unary(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      cb(null, { text: call.request.text });
    },
    Bidi(call: grpc.ServerDuplexStream<any, any>) {
      call.on("data", (m: any) => call.write({ text: m.text }));
      call.on("end", () => call.end());
    },
  }]];
}

export interface CycleRig {
  ctl: RunningController;
  /** The controller's tunnel to the relay. */
  tunnel: TunnelClient;
  slot: TunnelSlot;
  relay: RunningRelay;
  ctlLogs: string[];
  relayLogs: string[];
  /** Serials of the controller certificates the relay's tunnel listener verified, in order. */
  controllerSerials: string[];
  /** Serial of the controller's current `controller-client` certificate. */
  clientSerial(): Promise<string>;
  /** A new Echo client of a registered device, through the relay (closed by close()). */
  client(): any;
  close(): Promise<void>;
}

/** Starts the relay parts and the controller, and waits until the tunnel is up on both ends. */
export async function startCycleRig(opts: { drainGraceMs: number }): Promise<CycleRig> {
  const dir = await Deno.makeTempDir();
  const stateDir = `${dir}/state`;
  const st = await openState(stateDir, { create: true });
  const cas = st.pki.cas;
  const trust = st.pki.trust;
  const relayCsr = await pki.generateCsr("relay");
  const relayLeaf = await pki.issueLeaf(cas, relayCsr.csrPem, {
    kind: "relay",
    hosts: ["127.0.0.1", "localhost"],
  });
  const devCsr = await pki.generateCsr("device");
  const devLeaf = await pki.issueLeaf(cas, devCsr.csrPem, { kind: "device", name: "phone" });
  const rootPem = pki.certPem(cas.root.cert);
  const fleetPem = pki.certPem(cas.fleet.cert);
  const deviceCaPem = pki.certPem(cas.device.cert);
  st.close();

  const relayLogs: string[] = [];
  const relayLog = createLogger("relay", { sink: (l) => relayLogs.push(l) });
  const policy = new RelayPolicy();
  const slot = new TunnelSlot(policy, relayLog, { drainGraceMs: opts.drainGraceMs });
  const controllerSerials: string[] = [];
  const chainPem = pki.bundlePem([relayLeaf, cas.fleet.cert]);
  const tunnelPort = await within(
    listenForController({
      listen: { hostname: "127.0.0.1", port: 0 },
      certPem: chainPem,
      keyPem: relayCsr.keyPem,
      fleetCaPem: fleetPem,
      trust,
      revoked: policy.revoked,
      log: relayLog,
      name: "tunnel",
      // As relay/run.ts wires it.
      onController: (socket, who) => {
        controllerSerials.push(who.serial);
        slot.attach(nodeToWeb(socket), { serial: who.serial });
      },
    }),
    WAIT_MS,
    "the relay's tunnel listener",
  );
  const relay = await within(
    startRelay({
      listen: { hostname: "127.0.0.1", port: 0 },
      certPem: chainPem,
      keyPem: relayCsr.keyPem,
      caPem: rootPem + fleetPem,
      deviceCaPem,
      trust,
      revoked: policy.revoked,
      transport: slot,
      log: relayLog,
    }),
    WAIT_MS,
    "the relay's client listener",
  );
  const ctlLogs: string[] = [];
  const ctl = await within(
    startController(
      resolveConfig(
        {
          state: stateDir,
          "ui-listen": "127.0.0.1:0",
          "relay-listen": "off",
          "relay-tunnels": `127.0.0.1:${tunnelPort.port}`,
        },
        () => undefined,
      ),
      { services: echoServices(), logSink: (l) => ctlLogs.push(l), print: () => {} },
    ),
    WAIT_MS,
    "the controller to start",
  );
  await ctl.devices.register(devLeaf);
  const tunnel = ctl.relays.tunnels[0];
  await within(tunnel.whenUp(), WAIT_MS, "the controller's tunnel to come up");
  await until(() => slot.connected, WAIT_MS, "the relay to take the tunnel");

  const clients: { close(): void }[] = [];
  return {
    ctl,
    tunnel,
    slot,
    relay,
    ctlLogs,
    relayLogs,
    controllerSerials,
    clientSerial: async () =>
      pki.serialOf((await serviceCert(ctl.state, "controller-client")).leaf),
    client() {
      const c = new echoPkg.Echo(
        `localhost:${relay.port}`,
        grpc.credentials.createSsl(
          Buffer.from(rootPem),
          Buffer.from(devCsr.keyPem),
          Buffer.from(pki.bundlePem([devLeaf, cas.device.cert])),
        ),
        { "grpc.enable_retries": 0 },
      );
      clients.push(c);
      return c;
    },
    async close() {
      // Device connections first, then the relay, the controller, the tunnel
      // (a test process holds both ends: see closeClients).
      await closeClients(clients, relay);
      await within(relay.close(), WAIT_MS, "the relay's client listener to close");
      await within(ctl.shutdown(), WAIT_MS, "the controller to shut down");
      await within(tunnelPort.close(), WAIT_MS, "the relay's tunnel listener to close");
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The parsed log lines of `logs` with error code `code`. */
export function withCode(logs: string[], code: string): any[] {
  return logs.map((l) => JSON.parse(l)).filter((j) => j.code === code);
}

/** Waits (bounded) for the first log line with `code` that `match` accepts. */
export async function waitForCode(
  logs: string[],
  code: string,
  what: string,
  match: (j: any) => boolean = () => true,
): Promise<any> {
  await until(() => withCode(logs, code).some(match), WAIT_MS, what);
  return withCode(logs, code).find(match);
}

/**
 * Unary calls kept in flight by `workers` loops (each waits for its answer,
 * then sends the next) until stop(); every failure is kept.
 */
export function unaryLoad(client: any, workers = 4) {
  let stopping = false;
  let ok = 0;
  const failures: unknown[] = [];
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; !stopping; i++) {
      const text = `w${w}-${i}`;
      try {
        const r = await unary(client, "Unary", { text });
        if (r.res.text === text) ok++;
        else failures.push(new Error(`wrong answer ${r.res.text} to ${text}`));
      } catch (e) {
        failures.push(e);
      }
    }
  });
  return {
    get ok() {
      return ok;
    },
    failures,
    async stop() {
      stopping = true;
      await within(Promise.all(loops), CALL_DEADLINE_MS + WAIT_MS, "the call loops to end");
    },
  };
}

/** One Bidi call held open: each `say` is answered on the same call. */
export function openBidi(client: any) {
  const call = client.Bidi(new grpc.Metadata(), deadline(CALL_DEADLINE_MS + 3 * WAIT_MS));
  const replies: string[] = [];
  let failure: any = null;
  let status: grpc.StatusObject | null = null;
  call.on("data", (m: any) => replies.push(m.text));
  call.on("error", (e: unknown) => failure = e);
  const ended = new Promise<void>((resolve) =>
    call.on("status", (s: grpc.StatusObject) => {
      status = s;
      resolve();
    })
  );
  return {
    async say(text: string) {
      call.write({ text });
      await until(() => replies.includes(text) || failure !== null, WAIT_MS, `the reply "${text}"`);
      if (failure !== null) throw new Error(`the open call failed: ${failure}`);
    },
    /** Ends it abruptly (a failed test must not leave it holding its connection). */
    cancel: () => call.cancel(),
    /** Half-closes it and returns its final status. */
    async end(): Promise<grpc.StatusObject> {
      call.end();
      await within(ended, WAIT_MS, "the open call to end");
      return status!;
    },
    /** Its final status once it ended by itself. */
    async ended(): Promise<grpc.StatusObject> {
      await within(ended, WAIT_MS, "the open call to end");
      return status!;
    },
  };
}

/**
 * A controller's tunnel client to `port` presenting `leaf`, started: the
 * relay's substreams are collected in `accepted` (and handed to `serve`
 * when given); `identity` is read at each dial, so a test renews it in
 * place as controller/relay/links.ts does.
 */
export function controllerTunnel(
  fleet: Fleet,
  port: number,
  leaf: IssuedLeaf,
  opts: {
    policy: () => PolicyDocument;
    logs: string[];
    serve?: (c: Duplex) => void;
    backoff?: { initialMs: number; maxMs: number; stableMs: number };
    keepAliveIntervalMs?: number;
    pingTimeoutMs?: number;
  },
) {
  const accepted: Duplex[] = [];
  const identity = {
    certPem: leaf.chainPem,
    keyPem: leaf.keyPem,
    caPem: fleet.rootPem + pki.certPem(fleet.pki.fleet.cert),
    trust: fleet.trust,
  };
  const client = new TunnelClient({
    target: { host: "127.0.0.1", port, serverName: "127.0.0.1" },
    identity,
    accept: (c) => {
      c.on("error", () => {}); // tests reset them from the relay's end
      accepted.push(c);
      opts.serve?.(c);
    },
    policy: opts.policy,
    log: createLogger("controller", { sink: (l) => opts.logs.push(l) }),
    backoff: opts.backoff ?? { initialMs: 100, maxMs: 500, stableMs: 5000 },
    ...(opts.keepAliveIntervalMs !== undefined
      ? { keepAliveIntervalMs: opts.keepAliveIntervalMs }
      : {}),
    ...(opts.pingTimeoutMs !== undefined ? { pingTimeoutMs: opts.pingTimeoutMs } : {}),
  });
  client.start();
  return { client, accepted, identity };
}
