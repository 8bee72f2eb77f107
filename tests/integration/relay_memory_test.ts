// deno-lint-ignore-file no-explicit-any
/**
 * Issue 10, memory: the relay as its own process (the `relay` task), devices
 * that stop reading on every call they may open, and the relay's resident
 * memory: bounded during the attack, back near idle after the attackers
 * leave. Memory is read from /proc; every wait is bounded and waits for a
 * condition, never for a fixed time.
 */
import assert from "node:assert/strict";
import type { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import { BACKEND_STREAM_WINDOW } from "../../relay/backend.ts";
import { DEFAULT_STREAM_LIMITS } from "../../relay/stream_limits.ts";
import { startEchoBackend } from "../support/echo_backend.ts";
import { BIDI, echoRequest } from "../support/h2_attacks.ts";
import { grpcFrame, RawH2, SETTING } from "../support/h2_raw.ts";
import { makeFleet } from "../support/pki_fixture.ts";
import {
  deviceClient,
  loopbackPorts,
  type RelayProcess,
  startRelayProcess,
  tunnelToRelay,
  unary,
  writeRelayDir,
} from "../support/relay_harness.ts";
import { WAIT_MS, within } from "../support/wait.ts";

const MiB = 1024 * 1024;
const CONNECTIONS = 4;
const STREAMS = DEFAULT_STREAM_LIMITS.device.connection.concurrent;
/** What one stalled call may cost the relay: its controller-leg window, plus about 0.3 MiB that Deno keeps per open stream pair (measured). */
const PER_STALLED_CALL = BACKEND_STREAM_WINDOW + 384 * 1024;
/**
 * Resident memory after the attack must come back within this of idle.
 * What may stay: V8's heap, which keeps its grown pages until its memory
 * reducer runs (measured up to +22 MiB over idle right after the attack),
 * and up to 16 MiB of freed native memory that relay/host/heap_trim.ts leaves to
 * the allocator (below its trigger). Measured: back to 82 MiB from a
 * 300 MiB peak, with an idle of 85 MiB. Without the trim it stays ~200 MiB
 * above idle, far outside this margin.
 */
const RETURN_MARGIN = 48 * MiB;
/** How long the relay gets to give the memory back: its stalled calls free their buffers 15–25 s after the attackers leave (measured), then its trim check runs every 2 s. */
const RETURN_WAIT_MS = 90_000;

function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

Deno.test({
  name:
    "relay process: devices that stop reading on every call grow it by a bounded amount, a device is served meanwhile, and the memory is given back after",
  ignore: Deno.build.os !== "linux",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const fleet = await makeFleet();
    const echo = await startEchoBackend(fleet);
    const dir = await Deno.makeTempDir({ prefix: "pharos-relay-mem-" });
    await writeRelayDir(fleet, dir);
    const attackers: RawH2[] = [];
    let relay: RelayProcess | undefined;
    let tunnel: TunnelClient | undefined;
    let legit: any;
    try {
      relay = await startRelayProcess(dir, loopbackPorts());
      const { pid, ports } = relay;
      tunnel = await tunnelToRelay(fleet, echo, relay);
      const phone = await fleet.issue({ kind: "device", name: "phone" });
      legit = deviceClient(fleet, phone, ports.client);
      for (let i = 0; i < 20; i++) await unary(legit, "Unary", { text: `warm ${i}` });
      const idle = rssOf(pid);

      // Each attacker: its own device, 128 calls asking for 2 MiB each, and no window to send it in.
      // (Small requests: this client does not follow flow control on what it sends.)
      const blob = new Uint8Array(256).fill(7);
      for (let c = 0; c < CONNECTIONS; c++) {
        const dev = await fleet.issue({ kind: "device", name: `staller ${c}` });
        const a = await within(
          RawH2.connect({
            port: ports.client,
            caPem: fleet.rootPem,
            certPem: dev.chainPem,
            keyPem: dev.keyPem,
            settings: [[SETTING.INITIAL_WINDOW_SIZE, 0]],
            autoWindow: false,
          }),
          WAIT_MS,
          `attacker ${c}'s connection`,
        );
        attackers.push(a);
        const frames: Uint8Array[] = [];
        for (let i = 0; i < STREAMS; i++) {
          frames.push(
            ...a.requestFrames(BIDI, { body: grpcFrame(echoRequest("x", 8192, blob)) }).frames,
          );
        }
        await within(a.write(frames), WAIT_MS, `attacker ${c}'s requests to be written`);
      }
      for (const a of attackers) {
        await a.waitFor(
          () => [...a.streams.values()].every((s) => s.headers.length > 0 || s.rst !== undefined),
          60_000,
          "every stalled call to be answered with headers",
        );
      }
      const admitted = attackers.reduce(
        (n, a) => n + [...a.streams.values()].filter((s) => s.rst === undefined).length,
        0,
      );
      // Peak while the controller pushes into full windows: sample until it stops growing.
      let peak = rssOf(pid);
      for (let stable = 0, i = 0; stable < 10 && i < 300; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const now = rssOf(pid);
        stable = now > peak + MiB ? 0 : stable + 1;
        peak = Math.max(peak, now);
      }
      const bound = admitted * PER_STALLED_CALL + 32 * MiB;
      console.error(
        `relay RSS: idle ${(idle / MiB).toFixed(0)} MiB, peak ${
          (peak / MiB).toFixed(0)
        } MiB with ${admitted} stalled calls (bound +${(bound / MiB).toFixed(0)} MiB)`,
      );
      assert.ok(peak - idle <= bound, `grew by ${((peak - idle) / MiB).toFixed(0)} MiB`);
      // A legitimate device is served meanwhile.
      assert.equal((await unary(legit, "Unary", { text: "during" })).res.text, "during");

      for (const a of attackers.splice(0)) a.close();
      // Light legitimate traffic goes on (as it would) while the relay must
      // give back what the attack held: polled until it is back within the
      // margin, at most RETURN_WAIT_MS.
      const closedAt = Date.now();
      let after = rssOf(pid);
      for (
        const end = Date.now() + RETURN_WAIT_MS;
        after > idle + RETURN_MARGIN && Date.now() < end;
      ) {
        await unary(legit, "Unary", { text: "after" });
        await new Promise((r) => setTimeout(r, 250));
        after = rssOf(pid);
      }
      const trims = relay.proc.logs().filter((l) =>
        l.code === "heap-trim" || l.code === "heap-trim-off"
      );
      console.error(
        `relay RSS after the attack: ${(after / MiB).toFixed(0)} MiB (idle ${
          (idle / MiB).toFixed(0)
        } MiB, margin ${RETURN_MARGIN / MiB} MiB) ${
          Date.now() - closedAt
        } ms after the attackers left`,
      );
      assert.ok(
        after <= idle + RETURN_MARGIN,
        `relay RSS stayed at ${(after / MiB).toFixed(0)} MiB, idle was ${
          (idle / MiB).toFixed(0)
        } MiB; trim log: ${JSON.stringify(trims)}`,
      );
      assert.equal((await unary(legit, "Unary", { text: "still" })).res.text, "still");
    } finally {
      for (const a of attackers) a.close();
      legit?.close();
      if (tunnel) await within(tunnel.stop(), WAIT_MS, "the controller's TunnelClient.stop()");
      await relay?.proc.stop();
      echo.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
