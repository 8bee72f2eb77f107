/**
 * The relay as operators run it: a separate `relay` process configured by
 * flags, environment and config file, keyed by its own `gen-csr`, reached
 * by the controller's tunnel, surviving a restart of the process.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { certPem, deviceFingerprint, issueLeaf } from "../../core/pki/mod.ts";
import type { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import { startEchoBackend } from "../support/echo_backend.ts";
import { makeFleet } from "../support/pki_fixture.ts";
import {
  deviceClient,
  loopbackPorts,
  type RelayProcess,
  ROOT,
  startRelayProcess,
  tunnelToRelay,
  unary,
  writeRelayDir,
  writeRelayTrust,
} from "../support/relay_harness.ts";
import { run } from "../support/run.ts";
import { WAIT_MS, within } from "../support/wait.ts";

// Exactly what operators run: the task, with its permission set.
const RELAY = ["task", "--quiet", "relay"];

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function stop(p: RelayProcess): Promise<void> {
  const status = await p.proc.stop("SIGTERM", WAIT_MS);
  assert.equal(status.code, 0, `the relay stops cleanly on SIGTERM:\n${p.proc.tail()}`);
}

/** `deno task relay …` to completion, killed past the bound. */
function relayCommand(args: string[], env?: Record<string, string>) {
  return run(Deno.execPath(), [...RELAY, ...args], { cwd: ROOT, env, timeoutMs: WAIT_MS * 2 });
}

Deno.test({
  name:
    "relay process: gen-csr, run from flags/env/config, serve through the tunnel, survive a restart",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const fleet = await makeFleet();
    const dir = await Deno.makeTempDir({ prefix: "pharos-relay-" });
    const backend = await startEchoBackend(fleet);
    let tunnel: TunnelClient | undefined;
    let relay: RelayProcess | undefined;
    const clients: grpc.Client[] = [];
    try {
      // 1. The relay makes its own key; the controller signs the CSR.
      const csr = await relayCommand(["gen-csr", "--dir", dir]);
      assert.equal(csr.code, 0, csr.stderr);
      assert.equal((await Deno.stat(`${dir}/relay.key`)).mode! & 0o777, 0o600);
      const leaf = await issueLeaf(fleet.pki, csr.stdout, {
        kind: "relay",
        hosts: ["127.0.0.1", "localhost"],
      });
      await Deno.writeTextFile(`${dir}/relay.crt`, certPem(leaf) + certPem(fleet.pki.fleet.cert));
      await writeRelayTrust(fleet, dir);

      // 2. Settings from all three sources: config file, environment, flag.
      const [clientPort, tunnelPort] = [freePort(), freePort()];
      await Deno.writeTextFile(
        `${dir}/relay.json`,
        JSON.stringify({
          dir,
          clientAddr: "127.0.0.1:1",
          egressAddr: "off",
          tunnelAddr: "127.0.0.1:2",
        }),
      );
      const args = ["--config", `${dir}/relay.json`, "--client-addr", `127.0.0.1:${clientPort}`];
      const env = { PHAROS_RELAY_TUNNEL_ADDR: `127.0.0.1:${tunnelPort}` };
      relay = await startRelayProcess(null, args, undefined, env);
      assert.deepEqual(relay.ports, { client: clientPort, tunnel: tunnelPort, egress: null });

      // 3. The controller dials in; a device calls through.
      tunnel = await tunnelToRelay(fleet, backend, relay);
      const device = await fleet.issue({ kind: "device", name: "phone" });
      const client = () => {
        const c = deviceClient(fleet, device, clientPort);
        clients.push(c);
        return c;
      };
      const callUntilOk = async (text: string) => {
        let last: unknown;
        for (let i = 0; i < 50; i++) {
          try {
            return (await unary(client(), "Unary", { text })).res;
          } catch (e) {
            last = e;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
        throw last;
      };
      const md = new grpc.Metadata();
      md.set("pharos-session", "secret-session-token");
      const res = (await unary(client(), "Unary", { text: "hello" }, md)).res;
      assert.equal(res.text, "hello");
      assert.equal(res.metadata["x-pharos-device-fp"], await deviceFingerprint(device.cert));

      // One JSON log line per call, with the client's address:port; no secrets.
      const line = await relay.proc.waitLog((l) => l.msg === "call", WAIT_MS, "the call log line");
      assert.equal(line.method, "/pharos.test.v1.Echo/Unary");
      assert.equal(line.status, 0);
      assert.equal(typeof line.ms, "number");
      assert.match(line.remote, /^127\.0\.0\.1:\d+$/);
      assert.notEqual(Number(line.remote.split(":")[1]), clientPort, "the client's port, not ours");
      assert.ok(!relay.proc.stderr.join("\n").includes("secret-session-token"));

      // 4. Restart the relay process: the controller redials, calls work again.
      // The test's grpc-js clients are closed first: Deno 2.9's node:http2
      // client intermittently segfaults when its server dies under an open
      // connection (seen here; the controller's own tunnel is unaffected).
      for (const c of clients.splice(0)) c.close();
      await stop(relay);
      relay = await startRelayProcess(null, args, undefined, env);
      assert.equal((await callUntilOk("after restart")).text, "after restart");
    } finally {
      for (const c of clients) c.close();
      if (tunnel) await within(tunnel.stop(), WAIT_MS, "the controller's TunnelClient.stop()");
      if (relay) await stop(relay).catch(() => {});
      backend.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("relay process: bad material or settings stop it with a clear message", async () => {
  const fleet = await makeFleet();
  const dir = await Deno.makeTempDir({ prefix: "pharos-relay-" });
  try {
    const missing = await relayCommand(["run", "--dir", dir, "--client-addr", "127.0.0.1:0"]);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /error: cannot read .*relay\.key, .*relay\.crt, .*device-ca\.crt; run "relay gen-csr/,
    );

    // A node certificate installed as relay.crt is refused at start.
    const node = await fleet.issue({ kind: "node", host: "127.0.0.1" });
    await writeRelayDir(fleet, dir, node);
    const wrong = await relayCommand(["run", "--dir", dir]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /error: a node certificate was presented where relay is required/);

    const badAddr = await relayCommand(["run", "--dir", dir], {
      PHAROS_RELAY_CLIENT_ADDR: "nowhere",
    });
    assert.equal(badAddr.code, 1);
    assert.match(badAddr.stderr, /PHAROS_RELAY_CLIENT_ADDR = "nowhere": expected host:port/);

    await Deno.writeTextFile(`${dir}/bad.json`, "[1,2]");
    const badFile = await relayCommand(["run", "--config", `${dir}/bad.json`]);
    assert.equal(badFile.code, 1);
    assert.match(badFile.stderr, /is not a JSON object/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("relay process: a port it may not bind is reported with the setting to change", async () => {
  const fleet = await makeFleet();
  const dir = await Deno.makeTempDir({ prefix: "pharos-relay-" });
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await writeRelayDir(fleet, dir);
    const port = (busy.addr as Deno.NetAddr).port;
    const r = await relayCommand(["run", "--dir", dir, "--client-addr", `127.0.0.1:${port}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*--client-addr`));
  } finally {
    busy.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: 'relay process: SIGINT closes it gracefully, logs "stopped" and exits 0',
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const fleet = await makeFleet();
    const dir = await Deno.makeTempDir({ prefix: "pharos-relay-" });
    try {
      await writeRelayDir(fleet, dir);
      const relay = await startRelayProcess(dir, loopbackPorts(true));
      assert.equal(relay.ready.ready, true);
      const status = await relay.proc.stop("SIGINT", WAIT_MS);
      assert.equal(status.code, 0, relay.proc.tail());
      const logs = relay.proc.stderr.map((l) => JSON.parse(l));
      const last = logs.at(-1);
      assert.equal(last.msg, "stopped", relay.proc.tail());
      assert.equal(last.component, "relay");
      assert.equal(last.level, "info");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
