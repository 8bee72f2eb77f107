// deno-lint-ignore-file no-explicit-any
/**
 * Plain HTTP/2 on tunnel substreams: a controller that takes it announces
 * `plain_h2` in its policy push and the relay then drops the inner TLS on
 * new substreams; the controller tells the two apart by the first byte. Each
 * side keeps working with a peer that does not know about it: a controller
 * without it (as the original) gets inner TLS, a relay that keeps the inner
 * TLS (as the original) is still served, and a new tunnel session from a
 * controller without it switches the relay back to TLS.
 */
import assert from "node:assert/strict";
import type { Duplex } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { createLogger } from "../../core/log.ts";
import { certPem } from "../../core/pki/mod.ts";
import { PolicyError, RelayPolicy } from "../../core/relay_policy.ts";
import { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import { TunnelSlot } from "../../relay/tunnel.ts";
import type { BackendTransport } from "../../relay/transport.ts";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import type { Fleet, IssuedLeaf } from "../support/pki_fixture.ts";
import { relayHarness, unary } from "../support/relay_harness.ts";
import { testControllerListener } from "../support/tunnel_fixture.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

interface Routed {
  tls: number;
  plain: number;
}

interface PlainTunnel {
  transport: BackendTransport;
  slot: TunnelSlot;
  policy: RelayPolicy;
  routed: Routed;
  /** Replaces the controller's TunnelClient (a new tunnel session). */
  reconnect(takesPlain: boolean): Promise<void>;
}

/**
 * A relay's tunnel slot behind its controller-only listener, and a
 * controller's TunnelClient dialling it; `takesPlain` gives the client
 * acceptPlain. `relayKeepsTls` hides the slot's inProcess from the backend
 * (a relay that always runs the inner TLS).
 */
async function plainTunnel(
  fleet: Fleet,
  relayLeaf: IssuedLeaf,
  accept: (c: Duplex) => void,
  acceptInProcess: (c: Duplex) => void,
  opts: { takesPlain: boolean; relayKeepsTls?: boolean },
  out: { tunnel?: PlainTunnel },
): Promise<BackendTransport> {
  const log = createLogger("tunnel", { sink: () => {} });
  const policy = new RelayPolicy();
  const slot = new TunnelSlot(policy, log);
  const listener = await within(
    testControllerListener(fleet, relayLeaf, {
      policy,
      log,
      onController: (socket) => slot.attach(nodeToWeb(socket)),
    }),
    WAIT_MS,
    "the relay's controller listener",
  );
  const ctl = await fleet.issue({ kind: "controller-client" });
  const routed: Routed = { tls: 0, plain: 0 };
  let revision = 0;
  const start = async (takesPlain: boolean) => {
    const c = new TunnelClient({
      target: { host: "127.0.0.1", port: listener.port, serverName: "127.0.0.1" },
      identity: {
        certPem: ctl.chainPem,
        keyPem: ctl.keyPem,
        caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
        trust: fleet.trust,
      },
      accept: (conn) => {
        routed.tls++;
        accept(conn);
      },
      acceptPlain: takesPlain
        ? (conn) => {
          routed.plain++;
          acceptInProcess(conn);
        }
        : undefined,
      policy: () => ({ v: 1, revision: ++revision, revoked_serials: [], egress_allow: [] }),
      log,
    });
    c.start();
    await within(c.whenUp(), WAIT_MS, "the controller's tunnel to come up");
    await until(() => policy.revision === revision, WAIT_MS, "the relay to apply the policy");
    // The slot takes the announcement once its answer is written.
    if (takesPlain) await until(() => slot.inProcess, WAIT_MS, "the relay to take plain HTTP/2");
    return c;
  };
  let client = await start(opts.takesPlain);
  const transport: BackendTransport = {
    name: slot.name,
    get inProcess() {
      return opts.relayKeepsTls ? false : slot.inProcess;
    },
    dial: () => slot.dial(),
    onChange: (fn) => slot.onChange(fn),
    async close() {
      await within(client.stop(), WAIT_MS, "TunnelClient.stop()");
      await within(slot.close(), WAIT_MS, "the tunnel slot to close");
      await within(listener.close(), WAIT_MS, "the controller listener to close");
    },
  };
  out.tunnel = {
    transport,
    slot,
    policy,
    routed,
    async reconnect(takesPlain) {
      await within(client.stop(), WAIT_MS, "TunnelClient.stop()");
      client = await start(takesPlain);
    },
  };
  return transport;
}

async function withRelay(
  opts: { takesPlain: boolean; relayKeepsTls?: boolean },
  fn: (h: Awaited<ReturnType<typeof relayHarness>>, t: PlainTunnel) => Promise<void>,
): Promise<void> {
  const out: { tunnel?: PlainTunnel } = {};
  const h = await relayHarness((accept, fleet, leaf, acceptInProcess) =>
    plainTunnel(fleet, leaf, accept, acceptInProcess, opts, out)
  );
  try {
    await fn(h, out.tunnel!);
  } finally {
    await h.close();
  }
}

/** A unary echo, a failing call with its trailers, and a bidi round trip. */
async function callsPass(client: any): Promise<void> {
  const ok = await unary(client, "Unary", { text: "hello" });
  assert.equal(ok.res.text, "hello");
  assert.equal(ok.trailers["x-echo-trailer"], "done");
  await assert.rejects(unary(client, "Unary", { text: "no", fail_code: 7 }), (e: any) => {
    assert.equal(e.code, grpc.status.PERMISSION_DENIED);
    assert.equal(e.metadata.get("x-echo-trailer")[0], "failed");
    return true;
  });
  const call = client.Bidi();
  const got: string[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on("data", (m: any) => got.push(m.text));
    call.on("error", reject);
    call.on("end", resolve);
  });
  for (const t of ["a", "b", "c"]) call.write({ text: t, blob: new Uint8Array(70_000) });
  call.end();
  await within(done, WAIT_MS, "the bidi call");
  assert.deepEqual(got, ["A", "B", "C"]);
}

Deno.test("plain h2: a controller that takes it gets substreams without inner TLS", async () => {
  await withRelay({ takesPlain: true }, async (h, t) => {
    assert.equal(t.slot.inProcess, true);
    await callsPass(h.client());
    assert.deepEqual(t.routed, { tls: 0, plain: 1 });
  });
});

Deno.test("plain h2: a controller without it (as the original) gets inner TLS", async () => {
  await withRelay({ takesPlain: false }, async (h, t) => {
    assert.equal(t.policy.plainH2, false);
    assert.equal(t.slot.inProcess, false);
    await callsPass(h.client());
    assert.equal(t.routed.tls, 1);
  });
});

Deno.test("plain h2: a relay that keeps the inner TLS is still served by a controller that takes plain", async () => {
  await withRelay({ takesPlain: true, relayKeepsTls: true }, async (h, t) => {
    assert.equal(t.slot.inProcess, true); // announced, but this relay ignores it
    await callsPass(h.client());
    assert.deepEqual(t.routed, { tls: 1, plain: 0 });
  });
});

Deno.test("plain h2: a new session from a controller without it switches the relay back to TLS", async () => {
  await withRelay({ takesPlain: true }, async (h, t) => {
    await callsPass(h.client());
    await t.reconnect(false);
    await until(() => t.slot.connected, WAIT_MS, "the new tunnel");
    assert.equal(t.slot.inProcess, false);
    await callsPass(h.client());
    assert.equal(t.routed.tls, 1);
    assert.equal(t.routed.plain, 1);
  });
});

Deno.test("plain h2: a policy whose plain_h2 is not a boolean is refused and changes nothing", () => {
  const p = new RelayPolicy();
  assert.equal(
    p.apply(JSON.stringify({
      v: 1,
      revision: 1,
      revoked_serials: [],
      egress_allow: [],
      plain_h2: true,
    })),
    true,
  );
  assert.throws(
    () =>
      p.apply(JSON.stringify({
        v: 1,
        revision: 2,
        revoked_serials: ["0a"],
        egress_allow: [],
        plain_h2: "yes",
      })),
    (e: unknown) => e instanceof PolicyError && e.code === "malformed",
  );
  assert.equal(p.plainH2, true);
  assert.equal(p.revision, 1);
  assert.equal(p.revoked.size, 0);
});
