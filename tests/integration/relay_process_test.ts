// deno-lint-ignore-file no-explicit-any
/**
 * The relay as operators run it: a separate `relay` process configured by
 * flags, environment and config file, keyed by its own `gen-csr`, reached
 * by the controller's tunnel, surviving a restart of the process.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createLogger } from "../../core/log.ts";
import { certPem, deviceFingerprint, issueLeaf } from "../../core/pki/mod.ts";
import { TunnelClient } from "../../controller/relay/tunnel_client.ts";
import { echoPkg, startEchoBackend } from "../support/echo_backend.ts";
import { makeFleet } from "../support/pki_fixture.ts";
import { unary } from "../support/relay_harness.ts";
import { run } from "../support/run.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
// Exactly what operators run: the task, with its permission set.
const RELAY = ["task", "--quiet", "relay"];

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

interface RelayProcess {
  child: Deno.ChildProcess;
  stderr: string[];
  /** Resolves once stderr is closed (every line is in `stderr`). */
  stderrDone: Promise<void>;
  ready: any;
}

async function startRelayProcess(
  args: string[],
  env: Record<string, string> = {},
): Promise<RelayProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...RELAY, "run", ...args],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr: string[] = [];
  const stderrDone = (async () => {
    for await (
      const line of child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(lines())
    ) stderr.push(line);
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lines()).getReader();
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const first = await reader.read();
  clearTimeout(timer);
  reader.releaseLock();
  if (first.done) throw new Error(`relay exited before ready:\n${stderr.join("\n")}`);
  return { child, stderr, stderrDone, ready: JSON.parse(first.value) };
}

function lines(): TransformStream<string, string> {
  let buf = "";
  return new TransformStream({
    transform(chunk, c) {
      buf += chunk;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      for (const p of parts) c.enqueue(p);
    },
    flush(c) {
      if (buf) c.enqueue(buf);
    },
  });
}

async function stop(p: RelayProcess): Promise<void> {
  p.child.kill("SIGTERM");
  const status = await exited(p.child, "the relay process to exit on SIGTERM");
  assert.equal(status.code, 0, "the relay stops cleanly on SIGTERM");
}

/** The child's exit status; past the bound it is killed and the test fails naming `what`. */
function exited(child: Deno.ChildProcess, what: string): Promise<Deno.CommandStatus> {
  return within(child.status, WAIT_MS, what, () => child.kill("SIGKILL"));
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
      await Deno.writeTextFile(`${dir}/ca.crt`, fleet.rootPem);
      await Deno.writeTextFile(`${dir}/fleet-ca.crt`, certPem(fleet.pki.fleet.cert));
      await Deno.writeTextFile(`${dir}/device-ca.crt`, certPem(fleet.pki.device.cert));

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
      relay = await startRelayProcess(args, env);
      assert.deepEqual(relay.ready.ports, { client: clientPort, tunnel: tunnelPort, egress: null });

      // 3. The controller dials in; a device calls through.
      const ctl = await fleet.issue({ kind: "controller-client" });
      tunnel = new TunnelClient({
        target: { host: "127.0.0.1", port: tunnelPort },
        identity: {
          certPem: ctl.chainPem,
          keyPem: ctl.keyPem,
          caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
          trust: fleet.trust,
        },
        accept: (c) => backend.accept(c),
        policy: () => ({ v: 1, revision: Date.now(), revoked_serials: [], egress_allow: [] }),
        log: createLogger("ctl", { sink: () => {} }),
        backoff: { initialMs: 200, maxMs: 1000, stableMs: 5000 },
      });
      tunnel.start();
      const device = await fleet.issue({ kind: "device", name: "phone" });
      const client = () => {
        const c = new echoPkg.Echo(
          `localhost:${clientPort}`,
          grpc.credentials.createSsl(
            Buffer.from(fleet.rootPem),
            Buffer.from(device.keyPem),
            Buffer.from(device.chainPem),
          ),
        );
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
      await within(tunnel.whenUp(), WAIT_MS, "the controller's tunnel to come up");
      await until(
        () => relay!.stderr.some((l) => l.includes("controller tunnel up")),
        WAIT_MS,
        "tunnel up in the relay",
      );
      const res = (await unary(client(), "Unary", { text: "hello" }, md)).res;
      assert.equal(res.text, "hello");
      assert.equal(res.metadata["x-pharos-device-fp"], await deviceFingerprint(device.cert));

      // One JSON log line per call, no secrets.
      await until(
        () => relay!.stderr.some((l) => l.includes('"msg":"call"')),
        WAIT_MS,
        "the call log line",
      );
      const line = JSON.parse(relay.stderr.find((l) => l.includes('"msg":"call"'))!);
      assert.equal(line.method, "/pharos.test.v1.Echo/Unary");
      assert.equal(line.status, 0);
      assert.equal(typeof line.ms, "number");
      assert.ok(!relay.stderr.join("\n").includes("secret-session-token"));

      // 4. Restart the relay process: the controller redials, calls work again.
      // The test's grpc-js clients are closed first: Deno 2.9's node:http2
      // client intermittently segfaults when its server dies under an open
      // connection (seen here; the controller's own tunnel is unaffected).
      for (const c of clients.splice(0)) c.close();
      await stop(relay);
      relay = await startRelayProcess(args, env);
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
    await Deno.writeTextFile(`${dir}/relay.key`, node.keyPem);
    await Deno.writeTextFile(`${dir}/relay.crt`, node.chainPem);
    await Deno.writeTextFile(`${dir}/ca.crt`, fleet.rootPem);
    await Deno.writeTextFile(`${dir}/fleet-ca.crt`, certPem(fleet.pki.fleet.cert));
    await Deno.writeTextFile(`${dir}/device-ca.crt`, certPem(fleet.pki.device.cert));
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
    const leaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
    await Deno.writeTextFile(`${dir}/relay.key`, leaf.keyPem);
    await Deno.writeTextFile(`${dir}/relay.crt`, leaf.chainPem);
    await Deno.writeTextFile(`${dir}/ca.crt`, fleet.rootPem);
    await Deno.writeTextFile(`${dir}/fleet-ca.crt`, certPem(fleet.pki.fleet.cert));
    await Deno.writeTextFile(`${dir}/device-ca.crt`, certPem(fleet.pki.device.cert));
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
      const leaf = await fleet.issue({ kind: "relay", hosts: ["127.0.0.1"] });
      await Deno.writeTextFile(`${dir}/relay.key`, leaf.keyPem);
      await Deno.writeTextFile(`${dir}/relay.crt`, leaf.chainPem);
      await Deno.writeTextFile(`${dir}/ca.crt`, fleet.rootPem);
      await Deno.writeTextFile(`${dir}/fleet-ca.crt`, certPem(fleet.pki.fleet.cert));
      await Deno.writeTextFile(`${dir}/device-ca.crt`, certPem(fleet.pki.device.cert));
      const relay = await startRelayProcess([
        "--dir",
        dir,
        "--client-addr",
        "127.0.0.1:0",
        "--tunnel-addr",
        "127.0.0.1:0",
        "--egress-addr",
        "127.0.0.1:0",
      ]);
      assert.equal(relay.ready.ready, true);
      relay.child.kill("SIGINT");
      const status = await exited(relay.child, "the relay process to exit on SIGINT");
      await within(relay.stderrDone, WAIT_MS, "the end of the relay's stderr");
      assert.equal(status.code, 0, relay.stderr.join("\n"));
      const logs = relay.stderr.map((l) => JSON.parse(l));
      const last = logs.at(-1);
      assert.equal(last.msg, "stopped", relay.stderr.join("\n"));
      assert.equal(last.component, "relay");
      assert.equal(last.level, "info");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
