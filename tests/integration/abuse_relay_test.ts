// deno-lint-ignore-file no-explicit-any
/**
 * The relay under connection floods, as operators run it (`deno task relay
 * run`) with an fd limit of 1024 (`prlimit`). Attackers come from
 * 127.0.0.2 … on loopback, the legitimate device and controller from
 * 127.0.0.1. What must hold: the process lives; a device's call succeeds
 * during the flood (the per-source cap keeps slots free for others); after
 * it, every port serves its legitimate peer again (device call, a new
 * controller tunnel, an egress session); the relay's descriptors return to
 * their baseline; its log stays short; and the time limits close silent,
 * half-finished, preface-less and stream-less connections (seen by the
 * flooding client as closes, and counted in the relay's "connections"
 * summary lines).
 */
import assert from "node:assert/strict";
import { createLogger } from "../../core/log.ts";
import { certPem } from "../../core/pki/mod.ts";
import { EgressClient } from "../../controller/relay/egress_client.ts";
import { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import {
  abuseCapability,
  echoOnce,
  echoWhenReady,
  fdCount,
  Flood,
  floodsClosedByLimits,
  lastStats,
  loopbackSources,
  type Proc,
  SHORT_LIMITS,
  startRelayProcess,
  writeRelayDir,
} from "../support/abuse.ts";
import { exhaustDescriptors, idleFloodSteps } from "../support/abuse_harness.ts";
import { startEchoBackend } from "../support/echo_backend.ts";
import { loopbackPorts } from "../support/relay_harness.ts";
import { type Fleet, type IssuedLeaf, makeFleet } from "../support/pki_fixture.ts";

const cap = abuseCapability("relay abuse (process, prlimit)");
const NOFILE = 1024;

interface Setup {
  fleet: Fleet;
  dir: string;
  backend: Awaited<ReturnType<typeof startEchoBackend>>;
  device: IssuedLeaf;
  relay: { proc: Proc; ports: { client: number; tunnel: number; egress: number }; pid: number };
  tunnels: TunnelClient[];
  controllerLeaf: IssuedLeaf;
  limits: any;
}

function tunnelTo(s: Omit<Setup, "tunnels" | "limits">): TunnelClient {
  const t = new TunnelClient({
    target: { host: "127.0.0.1", port: s.relay.ports.tunnel, serverName: "127.0.0.1" },
    identity: controllerIdentity(s),
    accept: (c) => s.backend.accept(c),
    policy: () => ({ v: 1, revision: Date.now(), revoked_serials: [], egress_allow: [] }),
    log: createLogger("ctl", { sink: () => {} }),
    backoff: { initialMs: 200, maxMs: 1000, stableMs: 5000 },
  });
  t.start();
  return t;
}

function controllerIdentity(s: { fleet: Fleet; controllerLeaf: IssuedLeaf }) {
  return {
    certPem: s.controllerLeaf.chainPem,
    keyPem: s.controllerLeaf.keyPem,
    caPem: s.fleet.rootPem + certPem(s.fleet.pki.fleet.cert),
    trust: s.fleet.trust,
  };
}

/** A relay process with a controller tunnel up and one device call done. */
async function setUp(args: string[]): Promise<Setup> {
  const fleet = await makeFleet();
  const dir = await Deno.makeTempDir({ prefix: "pharos-abuse-" });
  await writeRelayDir(fleet, dir);
  const backend = await startEchoBackend(fleet);
  const device = await fleet.issue({ kind: "device", name: "phone" });
  const controllerLeaf = await fleet.issue({ kind: "controller-client" });
  const relay = await startRelayProcess(dir, [
    ...loopbackPorts(true),
    ...args,
  ], NOFILE);
  const base = { fleet, dir, backend, device, relay, controllerLeaf };
  const tunnel = tunnelTo(base);
  try {
    await tunnel.whenUp();
    await relay.proc.waitLog((l) => l.msg === "controller tunnel up", 20_000, "the tunnel up");
    assert.equal((await echoOnce(fleet, device, relay.ports.client, "before")).text, "before");
    const limits = await relay.proc.waitLog((l) => l.code === "conn-limits", 1000, "the limits");
    assert.equal(limits.fd_limit, NOFILE, "the relay runs under the lowered fd limit");
    return { ...base, tunnels: [tunnel], limits };
  } catch (e) {
    await tearDown({ ...base, tunnels: [tunnel], limits: null }, []);
    throw e;
  }
}

async function tearDown(s: Setup | undefined, floods: Flood[]): Promise<void> {
  for (const f of floods) await f.close().catch(() => {});
  if (!s) return;
  for (const t of s.tunnels) await t.stop();
  if (s.relay.proc.alive) await s.relay.proc.stop();
  s.backend.close();
  await Deno.remove(s.dir, { recursive: true });
}

Deno.test({
  name:
    "relay abuse: idle TCP floods on all three ports under a 1024 fd limit — alive, a device calls through during it, every port serves after, fds and logs bounded",
  ignore: cap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    let s: Setup | undefined;
    const floods: Flood[] = [];
    try {
      // Long time limits: the flood's connections stay until it closes them.
      s = await setUp(["--handshake-timeout", "2m", "--preface-timeout", "2m"]);
      const setup = s;
      const { relay, fleet, device } = s;
      const perSource = s.limits.max_connections_per_source;
      // 3,500 connections against 1,024 descriptors, 8 source addresses per port.
      const plans = [
        { port: relay.ports.client, count: 1300, sources: loopbackSources(2, 8) },
        { port: relay.ports.tunnel, count: 1100, sources: loopbackSources(10, 8) },
        { port: relay.ports.egress, count: 1100, sources: loopbackSources(18, 8) },
      ];
      // Per listener, one rate-limited refusal line (burst, then a few a second) and a summary.
      await idleFloodSteps(relay, plans, floods, {
        listeners: 3,
        extraLines: 40,
        // The new tunnel and egress sessions aside.
        fdSlack: 12,
        timeLimitMs: 120_000,
        async during(floods) {
          // A device's new connection gets through…
          assert.equal(
            (await echoOnce(fleet, device, relay.ports.client, "during")).text,
            "during",
          );
          // …while the flood still holds its connections (at least one source's worth).
          const during = await floods[0].status();
          assert.ok(during.open >= perSource, `flood still open: ${JSON.stringify(during)}`);
        },
        async after() {
          // Every port serves its legitimate peer.
          assert.equal((await echoOnce(fleet, device, relay.ports.client, "after")).text, "after");
          // The controller goes away and dials again: a new tunnel connection.
          const down = relay.proc.stderr.length;
          for (const t of setup.tunnels.splice(0)) await t.stop();
          await relay.proc.waitLog(
            (l) => l.msg === "controller tunnel down",
            20_000,
            "the tunnel down",
            down,
          );
          const mark = relay.proc.stderr.length;
          const second = tunnelTo(setup);
          setup.tunnels.push(second);
          await second.whenUp();
          await relay.proc.waitLog(
            (l) => l.msg === "controller tunnel up",
            20_000,
            "the new tunnel up",
            mark,
          );
          assert.equal(
            (await echoOnce(fleet, device, relay.ports.client, "tunnel")).text,
            "tunnel",
          );
          const egress = new EgressClient(
            { host: "127.0.0.1", port: relay.ports.egress, serverName: "127.0.0.1" },
            controllerIdentity(setup),
            createLogger("ctl", { sink: () => {} }),
          );
          try {
            const answer = await egress.pushPolicy({
              v: 1,
              revision: Date.now(),
              revoked_serials: [],
              egress_allow: [],
            });
            assert.equal(answer, "ok");
          } finally {
            await egress.close();
          }
        },
      });
      const tunnel = lastStats(relay.proc, "tunnel");
      assert.ok(tunnel.refused.total + tunnel.refused["per-source"] > 0, JSON.stringify(tunnel));
      const egressStats = lastStats(relay.proc, "egress");
      assert.ok(
        egressStats.refused.total + egressStats.refused["per-source"] > 0,
        JSON.stringify(egressStats),
      );
      const suppressed = relay.proc.logs().filter((l) => l.code === "log-suppressed");
      assert.ok(suppressed.length > 0 && suppressed.at(-1).total_suppressed > 0, "drops counted");
    } finally {
      await tearDown(s, floods);
    }
  },
});

Deno.test({
  name:
    "relay abuse: no preface after TLS, no stream after the preface, half-finished handshakes on tunnel and egress — all closed by the limits",
  ignore: cap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    let s: Setup | undefined;
    const floods: Flood[] = [];
    try {
      s = await setUp(SHORT_LIMITS);
      const { relay, fleet, device } = s;
      const baselineFds = fdCount(relay.pid);
      // Within the caps (client: 40 per source; tunnel and egress: a pool of 40), so
      // every connection is admitted and must be closed by a time limit.
      const pool = s.limits.controller_port_pool;
      const small = Math.min(9, Math.floor((pool - 4) / 4));
      const plans = [
        { kind: "tls", port: relay.ports.client, count: 240, sources: loopbackSources(2, 8) },
        { kind: "h2", port: relay.ports.client, count: 240, sources: loopbackSources(10, 8) },
        {
          kind: "half-tls",
          port: relay.ports.tunnel,
          count: 4 * small,
          sources: loopbackSources(18, 4),
        },
        {
          kind: "half-tls",
          port: relay.ports.egress,
          count: 4 * small,
          sources: loopbackSources(22, 4),
        },
      ] as const;
      // A device calls meanwhile; the relay closes every one of them (the flood sees each close).
      await floodsClosedByLimits(relay.pid, baselineFds, plans, floods, async () => {
        assert.equal((await echoOnce(fleet, device, relay.ports.client, "during")).text, "during");
      });
      assert.ok(relay.proc.alive, relay.proc.tail());
      assert.equal((await echoOnce(fleet, device, relay.ports.client, "after")).text, "after");

      assert.equal((await relay.proc.stop()).code, 0, relay.proc.tail());
      const client = lastStats(relay.proc, "client");
      assert.ok(client.closed.preface >= 240, `preface closes: ${JSON.stringify(client)}`);
      assert.ok(client.closed.idle >= 240, `idle closes: ${JSON.stringify(client)}`);
      for (const name of ["tunnel", "egress"]) {
        const st = lastStats(relay.proc, name);
        assert.ok(st.closed.handshake >= 4 * small, `${name}: ${JSON.stringify(st)}`);
      }
    } finally {
      await tearDown(s, floods);
    }
  },
});

Deno.test({
  name:
    "relay abuse: a listener that hit EMFILE (caps set above a 256 fd limit on purpose) is noticed and rebuilt",
  ignore: cap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const fleet = await makeFleet();
    const dir = await Deno.makeTempDir({ prefix: "pharos-abuse-" });
    const floods: Flood[] = [];
    let relay: Awaited<ReturnType<typeof startRelayProcess>> | undefined;
    let tunnel: TunnelClient | undefined;
    const backend = await startEchoBackend(fleet);
    try {
      await writeRelayDir(fleet, dir);
      const device = await fleet.issue({ kind: "device", name: "phone" });
      const controllerLeaf = await fleet.issue({ kind: "controller-client" });
      relay = await startRelayProcess(dir, [
        ...loopbackPorts(),
        // Misconfigured on purpose: caps far above what 256 descriptors hold.
        "--max-connections",
        "5000",
        "--max-connections-per-source",
        "5000",
        "--handshake-timeout",
        "5s",
      ], 256);
      const r = relay;
      tunnel = tunnelTo({ fleet, dir, backend, device, relay: r as any, controllerLeaf });
      await tunnel.whenUp();
      await r.proc.waitLog((l) => l.msg === "controller tunnel up", 20_000, "the tunnel up");

      await exhaustDescriptors(r.ports.client, floods);

      // The watchdog finds the listener deaf and binds it again.
      const dead = await r.proc.waitLog(
        (l) => l.code === "listener-dead" && l.listener === "client",
        60_000,
        "the dead listener noticed",
      );
      assert.ok(dead.reason, JSON.stringify(dead));
      await r.proc.waitLog(
        (l) => l.code === "listener-rebuilt" && l.listener === "client",
        60_000,
        "the listener rebuilt",
      );
      // Under Deno a rebuilt listener can go deaf again soon after; the
      // watchdog's follow-up checks rebuild it at once. A device's call made
      // meanwhile waits (gRPC wait-for-ready, bounded) and goes through.
      assert.ok(r.proc.alive, r.proc.tail());
      try {
        assert.equal((await echoWhenReady(fleet, device, r.ports.client, "again")).text, "again");
      } catch (e) {
        throw new Error(`${(e as Error).message}\nfds ${fdCount(r.pid)}\n${r.proc.tail(40)}`);
      }
      assert.equal((await r.proc.stop()).code, 0, r.proc.tail());
      assert.ok(lastStats(r.proc, "client").rebuilds >= 1);
    } finally {
      for (const f of floods) await f.close().catch(() => {});
      await tunnel?.stop();
      if (relay?.proc.alive) await relay.proc.stop();
      backend.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
