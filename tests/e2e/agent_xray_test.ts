// deno-lint-ignore-file no-explicit-any
/**
 * Xray VLESS + REALITY managed by the agent, for real: the agent runs the
 * xray it was given (built from the Go module proxy in test setup), a
 * second xray in client mode sits in the client namespace, the REALITY
 * decoy (`dest`) is a Go HTTPS server (tests/support/go/tlsdecoy) in the
 * "internet" namespace, so nothing leaves the machine. A client with the right UUID and key reaches
 * a TCP service in the internet namespace; a wrong UUID or a wrong REALITY
 * key is refused. Users are added and removed live through Xray's API
 * (the process is not restarted); a crashed xray is restarted; the config
 * comes back from disk when the agent restarts. Skips only without Go.
 */
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import { generateRealityKeyPair, renderXrayClientConfig } from "../../core/dataplane/mod.ts";
import { exportPrivateKeyPem, generateKeyPair } from "../../core/pki/mod.ts";
import { encodeConfig, nodeTypes } from "../../agent/proto.ts";
import { Buffer } from "node:buffer";
import {
  agentCapability,
  eventually,
  labTest,
  type Proc,
  startNodeAgent,
} from "../support/agent_harness.ts";
import { buildGoPeer } from "../support/go_peer.ts";
import { buildXray, xrayCapability } from "../support/xray.ts";

const goCap = xrayCapability("e2e agent xray");
const cap = agentCapability("e2e agent xray");
const INET = "203.0.113.80";
const SOCKS = { user: "pharos-test", pass: "socks-secret-1" };

/** A self-signed certificate for the decoy's name, as PEM files. */
async function decoyCert(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const keys = await generateKeyPair("P-256");
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: name }])],
  });
  const paths = { cert: `${dir}/decoy.crt`, key: `${dir}/decoy.key` };
  await Deno.writeTextFile(paths.cert, cert.toString("pem"));
  await Deno.writeTextFile(paths.key, await exportPrivateKeyPem(keys.privateKey));
  return paths;
}

labTest(
  "e2e agent xray: VLESS+REALITY through the agent's xray; wrong UUID or key refused; live users",
  cap.ignore || goCap.ignore,
  async (lab) => {
    const xray = await buildXray();
    const node = await lab.ns("n");
    const client = await lab.ns("c");
    const inet = await lab.ns("i");
    await lab.link(client, "192.0.2.2/30", node, "192.0.2.1/30");
    await lab.link(node, "198.51.100.1/30", inet, "198.51.100.2/30");
    await lab.exec(node, ["ip", "route", "add", "default", "via", "198.51.100.2"]);
    await lab.exec(inet, ["ip", "addr", "add", `${INET}/32`, "dev", "lo"]);
    await lab.echoServer(inet, 7000);
    const decoy = await decoyCert(lab.tmp, "decoy.example");
    const tlsDecoy = lab.spawn(inet, [
      await buildGoPeer("tlsdecoy"),
      "-listen",
      `${INET}:8443`,
      "-cert",
      decoy.cert,
      "-key",
      decoy.key,
    ], { label: "decoy" });
    await tlsDecoy.line(/^listening/);

    const { agent } = await startNodeAgent(lab, node, {
      extra: ["--xray", xray, "--xray-api-port", "10085"],
    });
    let status = await agent.call("GetStatus", {});
    assert.equal(status.services[1].detail, "not configured");
    const realityKey = status.xray.public_key;

    const uuid1 = crypto.randomUUID();
    const push = (peers: Record<string, unknown>[], revision: string) =>
      agent.call("PushConfig", {
        protocol: "PROTOCOL_XRAY_REALITY",
        revision,
        config: Buffer.from(encodeConfig(nodeTypes.XRayRealityConfig, {
          peers,
          dest: `${INET}:8443`,
          server_names: ["decoy.example"],
          short_ids: ["", "0123abcd"],
          port: 443,
        })),
      });
    const pushed = await push([{ public_key: uuid1, flow: "xtls-rprx-vision" }], "1");
    assert.deepEqual([pushed.applied_revision, pushed.reloaded], ["1", true]);
    status = await agent.call("GetStatus", {});
    assert.equal(status.services[1].running, true);
    assert.equal(status.services[1].detail, "REALITY :443");
    assert.equal(status.services[1].peer_count, 1);

    // Client-side xray processes (each its own SOCKS port).
    const clients: Proc[] = [];
    const startClient = async (
      port: number,
      uuid: string,
      publicKey: string,
      flow = "xtls-rprx-vision",
    ) => {
      const file = `${lab.tmp}/client-${port}.json`;
      await Deno.writeTextFile(
        file,
        renderXrayClientConfig({
          address: "192.0.2.1",
          port: 443,
          uuid,
          flow,
          serverName: "decoy.example",
          fingerprint: "chrome",
          publicKey,
          shortId: "0123abcd",
          socks: { port, ...SOCKS },
        }),
      );
      const p = lab.spawn(client, [xray, "run", "-c", file], { label: `xray client ${port}` });
      await p.line(/started/, 30_000);
      clients.push(p);
      return `127.0.0.1:${port}`;
    };
    const through = (socks: string) =>
      lab.tcpProbe(client, INET, 7000, { socks, ...SOCKS, timeoutMs: 4000 });
    const works = (socks: string) => eventually(async () => (await through(socks)).ok, 20_000, 300);

    const good = await startClient(1080, uuid1, realityKey);
    assert.ok(await works(good), "the right UUID and key reach the service");
    assert.deepEqual(await through(good), { ok: true, from: "198.51.100.1" });

    const wrongUuid = await startClient(1081, crypto.randomUUID(), realityKey);
    const other = generateRealityKeyPair();
    const wrongKey = await startClient(1082, uuid1, other.publicKey);
    for (const [what, socks] of [["wrong UUID", wrongUuid], ["wrong REALITY key", wrongKey]]) {
      for (let i = 0; i < 3; i++) {
        const r = await through(socks);
        assert.equal(r.ok, false, `${what} must be refused: ${JSON.stringify(r)}`);
      }
    }

    // A user added live: no xray restart (one "ready" line so far), the new UUID works.
    const ready = () => agent.proc.err.filter((l) => l.includes('"code":"xray-ready"')).length;
    assert.equal(ready(), 1);
    const uuid2 = crypto.randomUUID();
    const add = await agent.call("AddPeer", {
      peer: {
        id: uuid2,
        protocol: "PROTOCOL_XRAY_REALITY",
        public_key: uuid2,
        flow: "xtls-rprx-vision",
      },
    });
    assert.deepEqual(add, { peer_id: uuid2, applied: true });
    const again = await agent.call("AddPeer", {
      peer: { protocol: "PROTOCOL_XRAY_REALITY", public_key: uuid2 },
    });
    assert.equal(again.applied, false, "an existing UUID is not added twice");
    const second = await startClient(1083, uuid2, realityKey);
    assert.ok(await works(second), "the live-added user works");
    assert.equal(ready(), 1, "xray was not restarted for a new user");
    const list = await agent.call("ListPeers", { protocol: "PROTOCOL_XRAY_REALITY" });
    assert.deepEqual(list.peers.map((p: any) => p.peer.public_key).sort(), [uuid1, uuid2].sort());

    // Removed live: refused again, still without a restart.
    const rm = await agent.call("RemovePeer", {
      protocol: "PROTOCOL_XRAY_REALITY",
      public_key: uuid2,
    });
    assert.deepEqual(rm, { peer_id: uuid2, applied: true });
    assert.equal((await through(second)).ok, false, "the removed user is refused");
    assert.ok((await through(good)).ok);
    assert.equal(ready(), 1);

    // xray crashes: the agent restarts it.
    const pids = (await lab.exec(node, ["ip", "netns", "pids", node])).split("\n").filter(
      Boolean,
    );
    let killed = 0;
    for (const pid of pids) {
      const cmd = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
      if (cmd.startsWith(xray + "\0")) {
        Deno.kill(Number(pid), "SIGKILL");
        killed++;
      }
    }
    assert.equal(killed, 1);
    await agent.proc.line(/"code":"process-crashed".*"program":"xray"/);
    assert.ok(await eventually(() => ready() === 2, 30_000), "restarted");
    assert.ok(await works(good), "serving again after the crash");

    // Cold start: the agent restarts with no controller; Xray comes back from disk.
    assert.equal((await agent.stop()).code, 0);
    assert.equal((await through(good)).ok, false, "down while the agent is down");
    await agent.start();
    assert.ok(await works(good), "restored from disk");
    status = await agent.call("GetStatus", {});
    assert.equal(status.services[1].running, true);
    assert.equal(status.services[1].peer_count, 1);
    const same = await push([{ public_key: uuid1, flow: "xtls-rprx-vision" }], "1");
    assert.equal(same.reloaded, false, "equal revision while running: no-op");
    await assert.rejects(
      push([], "0"),
      (e: any) => e.code === 13 && /stale revision 0/.test(e.details),
    );
    assert.equal((await agent.stop()).code, 0);
  },
);
