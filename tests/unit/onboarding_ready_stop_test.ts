/**
 * The ready step's waits (NodeControl for a node, the tunnel port for a
 * relay) stop when the onboarding is stopped: with the signal aborted they
 * reject with its reason instead of retrying for minutes, and a NodeControl
 * call in progress ends with them (its probe process is killed).
 */
import assert from "node:assert/strict";
import { waitNodeControl } from "../../controller/onboarding/node_control.ts";
import { waitRelayTunnel } from "../../controller/onboarding/relay_probe.ts";
import { makeFleet } from "../support/pki_fixture.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const identity = { chainPem: "", keyPem: "", caPem: "" };
const wait = { attempts: 1000, intervalMs: 60_000, callTimeoutMs: 5000 };

Deno.test("onboarding ready wait: NodeControl retries stop at the stop, between calls", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pharos-ready-stop-" });
  try {
    const stop = new AbortController();
    const reason = new Error("stopping");
    const attempts: string[] = [];
    const waiting = waitNodeControl({
      target: `unix:${dir}/nothing.sock`,
      identity,
      expectDer: new Uint8Array(1),
      wait,
      signal: stop.signal,
      onAttempt: (_i, err) => {
        attempts.push(err);
        stop.abort(reason); // then a minute's pause before the next call
      },
    });
    await assert.rejects(within(waiting, WAIT_MS, "the wait to end"), (e) => e === reason);
    assert.equal(attempts.length, 1, "no call after the stop");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("onboarding ready wait: a NodeControl call in progress ends at the stop", async () => {
  // A listener that takes the probe's connection and never answers: the call would wait.
  const dir = await Deno.makeTempDir({ prefix: "pharos-ready-stop-" });
  const l = Deno.listen({ transport: "unix", path: `${dir}/silent.sock` });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const c of l) held.push(c);
  })().catch(() => {/* closed */});
  const fleet = await makeFleet();
  const client = await fleet.issue({ kind: "controller-client" });
  try {
    const stop = new AbortController();
    const reason = new Error("stopping");
    const attempts: string[] = [];
    const waiting = waitNodeControl({
      target: `unix:${dir}/silent.sock`,
      identity: { chainPem: client.chainPem, keyPem: client.keyPem, caPem: fleet.rootPem },
      expectDer: new Uint8Array(1),
      wait: { ...wait, callTimeoutMs: 600_000 },
      signal: stop.signal,
      onAttempt: (_i, err) => attempts.push(err),
    });
    waiting.catch(() => {/* asserted below */});
    await until(() => held.length > 0, WAIT_MS, "the probe to connect");
    stop.abort(reason);
    await assert.rejects(within(waiting, WAIT_MS, "the wait to end"), (e) => e === reason);
    assert.deepEqual(attempts, [], "the call was cut short, not counted as an attempt");
    // The probe process is gone: its connection ends (what it sent first is read past).
    const buf = new Uint8Array(64 * 1024);
    let n: number | null = 0;
    while (n !== null) {
      n = await within(held[0].read(buf), WAIT_MS, "the probe's connection to end");
    }
  } finally {
    l.close();
    for (const c of held) c.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("onboarding ready wait: relay tunnel retries stop at the stop", async () => {
  // Takes each connection and drops it: every handshake fails at once.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const c of l) c.close();
  })().catch(() => {/* closed */});
  try {
    const stop = new AbortController();
    const reason = new Error("stopping");
    const attempts: string[] = [];
    const waiting = waitRelayTunnel({
      host: "127.0.0.1",
      port: l.addr.port,
      identity,
      expectDer: new Uint8Array(1),
      wait,
      signal: stop.signal,
      onAttempt: (_i, err) => {
        attempts.push(err);
        stop.abort(reason);
      },
    });
    await assert.rejects(within(waiting, WAIT_MS, "the wait to end"), (e) => e === reason);
    assert.equal(attempts.length, 1, "no handshake after the stop");
  } finally {
    l.close();
  }
});
