// deno-lint-ignore-file no-explicit-any
/**
 * A relay assembled from its parts (as relay/relay.ts does) in front of the
 * Echo backend, over the embedded pipe or a real reverse tunnel, exposing
 * the proxy (limits, open calls) and the backend for abuse tests. The client
 * listener advertises ADVERTISED_MAX_STREAMS, as the production listener
 * must (see relay/stream_limits.ts), so a client that exceeds the
 * per-connection limit is refused stream by stream. Also the flood steps
 * the process suites (abuse_relay_test, abuse_controller_test) share.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import { createLogger } from "../../core/log.ts";
import { DEFAULT_LOG_LIMITS, rateLimitedLogger } from "../../core/log_limit.ts";
import { certPem, RevocationList } from "../../core/pki/mod.ts";
import { Backend } from "../../relay/backend.ts";
import { createClientServer } from "../../relay/client_listener.ts";
import { DeviceAuth } from "../../relay/device_auth.ts";
import { createProxy, type ProxyHandler, type ProxyOptions } from "../../relay/proxy.ts";
import { ADVERTISED_MAX_STREAMS } from "../../relay/stream_limits.ts";
import { type BackendTransport, embeddedTransport } from "../../relay/transport.ts";
import {
  connectionsOn,
  eventually,
  fdCount,
  fdKinds,
  fdsBackNear,
  Flood,
  lastStats,
  loopbackSources,
  type Proc,
} from "./abuse.ts";
import { describeExit } from "./runtime_crash.ts";
import { type EchoBackend, echoPkg, startEchoBackend } from "./echo_backend.ts";
import { type Fleet, type IssuedLeaf, makeFleet } from "./pki_fixture.ts";
import { startTunnel, type TunnelFixture } from "./tunnel_fixture.ts";

export interface AbuseRelay {
  kind: "embedded" | "tunnel";
  fleet: Fleet;
  echo: EchoBackend;
  backend: Backend;
  proxy: ProxyHandler;
  port: number;
  revoked: RevocationList;
  tunnel?: TunnelFixture;
  /** Tunnel only: the serials the controller's next policy push revokes (mutate, then push). */
  revokedSerials: string[];
  device: IssuedLeaf;
  logs: string[];
  /** A grpc-js Echo client (device certificate by default, null for none). */
  client(leaf?: IssuedLeaf | null): any;
  close(): Promise<void>;
}

export async function abuseRelay(
  kind: "embedded" | "tunnel",
  opts: Partial<Pick<ProxyOptions, "limits" | "abandonedClaimMs" | "revocationSweepMs">> = {},
): Promise<AbuseRelay> {
  const fleet = await makeFleet();
  const echo = await startEchoBackend(fleet);
  const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["localhost", "127.0.0.1"] });
  const device = await fleet.issue({ kind: "device", name: "legit phone" });
  let tunnel: TunnelFixture | undefined;
  let transport: BackendTransport;
  let revoked: RevocationList;
  const revokedSerials: string[] = [];
  if (kind === "tunnel") {
    tunnel = await startTunnel((c) => echo.accept(c), fleet, relayLeaf, { revokedSerials });
    transport = tunnel.transport;
    revoked = tunnel.policy.revoked; // the relay's policy: pushes replace it
  } else {
    transport = embeddedTransport((c) => echo.acceptInProcess(c));
    revoked = new RevocationList();
  }
  const logs: string[] = [];
  const log = createLogger("relay", { sink: (l) => logs.push(l) });
  const devices = new DeviceAuth(fleet.trust, revoked);
  const backend = new Backend(transport, {
    certPem: relayLeaf.chainPem,
    keyPem: relayLeaf.keyPem,
    caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
    trust: fleet.trust,
    revoked,
  }, log);
  transport.onChange?.(() => backend.reset());
  // As relay.ts: lines a client can cause go through the per-source rate limiter.
  const noisy = rateLimitedLogger(log);
  const proxy = createProxy({ backend, devices, log: noisy, ...opts });
  const server = createClientServer({
    certPem: relayLeaf.chainPem,
    keyPem: relayLeaf.keyPem,
    deviceCaPem: certPem(fleet.pki.device.cert),
    devices,
    onStream: proxy,
    log: noisy,
  });
  server.updateSettings({ maxConcurrentStreams: ADVERTISED_MAX_STREAMS });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as { port: number }).port;
  const clients: any[] = [];
  return {
    kind,
    fleet,
    echo,
    backend,
    proxy,
    port,
    revoked,
    tunnel,
    revokedSerials,
    device,
    logs,
    client(leaf: IssuedLeaf | null = device) {
      const c = new echoPkg.Echo(
        `localhost:${port}`,
        grpc.credentials.createSsl(
          Buffer.from(fleet.rootPem),
          leaf ? Buffer.from(leaf.keyPem) : null,
          leaf ? Buffer.from(leaf.chainPem) : null,
        ),
        { "grpc.enable_retries": 0 },
      );
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      for (const s of sessions) s.destroy();
      backend.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await transport.close?.();
      echo.close();
      noisy.close();
    },
  };
}

/**
 * A legitimate device's bidi call kept open across an attack: each ping
 * must come back, and the call must end OK.
 */
export function legitBidi(client: any) {
  const call = client.Bidi();
  const replies: string[] = [];
  const waiters: { text: string; resolve: () => void }[] = [];
  let status: grpc.StatusObject | undefined;
  const ended = new Promise<grpc.StatusObject>((resolve) =>
    call.on("status", (s: grpc.StatusObject) => {
      status = s;
      resolve(s);
    })
  );
  call.on("error", () => {});
  call.on("data", (m: any) => {
    replies.push(m.text);
    for (const w of [...waiters]) {
      if (m.text === w.text.toUpperCase()) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  return {
    replies,
    /** The call's final status. */
    ended,
    /** Sends `text` and waits (bounded) for its echo; fails if the call ended. */
    ping(text: string, timeoutMs = 10_000): Promise<void> {
      if (status) {
        return Promise.reject(
          new Error(`legit call already ended: ${status.code} ${status.details}`),
        );
      }
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no echo of ${text} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiters.push({
          text,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
        ended.then((s) => {
          clearTimeout(timer);
          reject(new Error(`legit call ended during ping: ${s.code} ${s.details}`));
        });
        call.write({ text });
      });
    },
    async end(): Promise<grpc.StatusObject> {
      call.end();
      return await ended;
    },
  };
}

/** Promise of one unary Echo call. */
export function unaryEcho(client: any, text: string): Promise<any> {
  return new Promise((resolve, reject) =>
    client.Unary(
      { text },
      new grpc.Metadata(),
      { deadline: Date.now() + 15_000 },
      (err: any, res: any) => (err ? reject(err) : resolve(res)),
    )
  );
}

/** One port under an idle TCP flood: `count` connects from `sources`. */
export interface IdleFloodPlan {
  port: number;
  count: number;
  sources: string[];
}

/**
 * The idle-TCP-flood steps both process suites (relay, controller) run:
 * floods on `plans` until settled (each holds or saw closed some
 * connections), `during` while they hold, the floods closed, `after`; the
 * process stays alive throughout; its descriptors return near their
 * baseline (`fdSlack`) once its time limits (`timeLimitMs`) have ended
 * connections whose peer vanished unheard, its log grows by at most one rate-limited burst per
 * listener that refuses (`listeners`) plus `extraLines`; stopped, it exits
 * 0 with "stopped" last, and its client listener counted per-source refusals.
 */
export async function idleFloodSteps(
  target: { proc: Proc; pid: number },
  plans: IdleFloodPlan[],
  floods: Flood[],
  steps: {
    during: (floods: Flood[]) => Promise<void>;
    after: () => Promise<void>;
    listeners: number;
    extraLines: number;
    fdSlack?: number;
    /** The handshake and preface time limits the process was started with. */
    timeLimitMs: number;
  },
): Promise<void> {
  const { proc, pid } = target;
  const baselineFds = fdCount(pid);
  const baselineKinds = fdKinds(pid);
  const logsBefore = proc.stderr.length;
  const started = performance.now();
  for (const p of plans) {
    floods.push(new Flood({ host: "127.0.0.1", kind: "tcp", concurrency: 128, ...p }));
  }
  const settled = await Promise.all(floods.map((f) => f.event("settled", 120_000)));
  for (const r of settled) assert.ok(r.open + r.peerClosed > 0, JSON.stringify(r));

  assert.ok(proc.alive, proc.tail());
  await steps.during(floods);
  for (const f of floods.splice(0)) await f.close();
  assert.ok(proc.alive, proc.tail());
  await steps.after();
  // The flood's connections are all gone from the ports it attacked (`after`'s own may linger)…
  const ports = plans.map((p) => p.port);
  let left = { live: 0, orphaned: 0 };
  const explain = (what: string) => () =>
    `${what} (${JSON.stringify(left)} on ${ports}: ${
      JSON.stringify(fdKinds(pid))
    }; log lines since: ${JSON.stringify(histogramOf(proc.logs().slice(logsBefore)))})`;
  await eventually(
    () => (left = connectionsOn(pid, ports)).live <= 4,
    30_000,
    explain("the flood's connections closed"),
  );
  // … those whose peer vanished unheard included: the listeners' time limits end them.
  if (left.orphaned > 0) console.log(`waiting out ${left.orphaned} connections with no peer left`);
  await eventually(
    () => (left = connectionsOn(pid, ports)).orphaned === 0,
    steps.timeLimitMs + 30_000,
    explain("the connections with no peer left closed by the listeners' time limits"),
  );
  // … and the process's descriptors are back near where they were.
  await fdsBackNear(pid, baselineFds, steps.fdSlack, {
    kinds: baselineKinds,
    logs: () => histogramOf(proc.logs().slice(logsBefore)),
  });

  const seconds = (performance.now() - started) / 1000;
  const allowed = steps.listeners *
      (DEFAULT_LOG_LIMITS.burst + DEFAULT_LOG_LIMITS.perSecond * seconds) + steps.extraLines;
  const total = plans.reduce((n, p) => n + p.count, 0);
  const lines = proc.stderr.length - logsBefore;
  const histogram = histogramOf(proc.logs().slice(logsBefore));
  assert.ok(
    lines <= allowed && lines < total / 4,
    `${lines} log lines (allowed ${Math.round(allowed)}): ${JSON.stringify(histogram)}`,
  );

  const exit = await proc.stop();
  assert.equal(exit.code, 0, `${describeExit(exit, proc.tail())}\n${proc.tail()}`);
  const client = lastStats(proc, "client");
  assert.ok(client.refused["per-source"] > 0, JSON.stringify(client));
  assert.equal(proc.logs().at(-1).msg, "stopped");
}

/**
 * 800 TCP connects from 4 addresses to `port` of a process whose caps are
 * set above its fd limit on purpose: they exhaust its descriptors. Once the
 * flood has settled `meanwhile` runs (e.g. the request that used to end the
 * process), then the flood is closed.
 */
export async function exhaustDescriptors(
  port: number,
  floods: Flood[],
  meanwhile: () => Promise<void> = async () => {},
): Promise<void> {
  const flood = new Flood({
    host: "127.0.0.1",
    port,
    kind: "tcp",
    count: 800,
    sources: loopbackSources(2, 4),
    concurrency: 128,
    connectTimeoutMs: 5000,
  });
  floods.push(flood);
  await flood.event("settled", 120_000);
  await meanwhile();
  await flood.close();
  floods.splice(floods.indexOf(flood), 1);
}

/** How many log lines of each message. */
function histogramOf(lines: { msg: string }[]): Record<string, number> {
  const histogram: Record<string, number> = {};
  for (const l of lines) histogram[l.msg] = (histogram[l.msg] ?? 0) + 1;
  return histogram;
}
