/**
 * Accounts end to end, in network namespaces, with real parts throughout:
 * a node onboarded over SSH (real sshd, the real agent with wireguard-go in
 * its namespace), the controller with its embedded relay, the admin using
 * `cox users add` and `cox tickets create`, and the reference client
 * (`agent/client/main.ts`) in a client namespace: it claims the ticket
 * through the relay, decrypts the profile, brings the tunnel up and pings
 * through the node to an "internet" host. Then `cox devices revoke`: the
 * tunnel stops carrying traffic and the relay refuses the device.
 *
 * The node is driven the way a real one is: its namespace has an address
 * (NODE) on a veth from the host's namespace, and that one address is where
 * SSH (bridged to the test sshd), NodeControl and AmneziaWG answer. The
 * controller's own fleet driver dials NODE:control_port from the node row
 * onboarding wrote; its reconcile loop observes the node, records the
 * node's key (accounts.nodeKeyObserved), pushes each device's peer and
 * removes a revoked one. The test writes none of that; it only reads what
 * the controller recorded (reconcile_heals, audit) and what the node lists.
 *
 * Client namespace → relay: TCP 127.0.0.1:8443 in the client namespace →
 * unix socket → the embedded relay on the host's loopback.
 */
import assert from "node:assert/strict";
import { loadState } from "../../agent/client/state_file.ts";
import { resolveConfig } from "../../controller/config.ts";
import { onboardNode } from "../../controller/onboarding/mod.ts";
import { type RunningController, startController } from "../../controller/serve.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { deviceFingerprint, parseCertificate } from "../../core/pki/mod.ts";
import {
  assertHealed,
  devicePeerKey,
  healActions,
  nodePeerKeys,
  reportedNodeKey,
  rootLink,
  setReconcileInterval,
} from "../support/accounts_e2e.ts";
import { agentCapability, eventually, Lab, Proc } from "../support/agent_harness.ts";
import { ACTOR, DENO, OnboardingLab, ROOT } from "../support/onboarding_fixture.ts";
import {
  type RunningTestRelay,
  runTestRelay,
  writeRelayMaterial,
} from "../support/remote_relay.ts";
import { sshdCapability } from "../support/sshd.ts";

const sshCap = sshdCapability("accounts end to end");
const cap = sshCap.ignore ? sshCap : agentCapability("accounts end to end");
const SUPPORT = `${ROOT}tests/support`;
const CLIENT = `${ROOT}agent/client/main.ts`;
const COX = `${ROOT}controller/cli/main.ts`;
const FWD = ["run", "--allow-net", "--allow-read", "--allow-write"];
const INTERNET_HOST = "203.0.113.80";

/** TCP `nsHost`:`nsPort` in namespace `ns` reaches 127.0.0.1:`hostPort` of this host. */
async function bridge(
  lab: Lab,
  ns: string,
  hostPort: number,
  nsPort: number,
  nsHost = "127.0.0.1",
): Promise<void> {
  const sock = `${lab.tmp}/bridge-${nsPort}.sock`;
  const hostSide = new Proc(
    new Deno.Command(DENO, {
      args: [...FWD, `${SUPPORT}/ns_forward.ts`, sock, "127.0.0.1", String(hostPort)],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
    `bridge ${nsPort} (host side)`,
  );
  lab.procs.push(hostSide);
  await hostSide.line(/^ready$/, 30_000);
  const nsSide = lab.spawn(ns, [
    DENO,
    ...FWD,
    `${SUPPORT}/tcp_to_unix.ts`,
    nsHost,
    String(nsPort),
    sock,
  ]);
  await nsSide.line(/^ready$/, 30_000);
}

async function cox(state: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(DENO, {
    args: ["run", "-A", COX, "--state", state, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assert.equal(r.code, 0, `cox ${args.join(" ")}: ${dec.decode(r.stderr)}`);
  return dec.decode(r.stdout);
}

Deno.test({
  name:
    "e2e accounts: SSH-onboarded node; claims via the embedded and a remote relay; tunnel; revoke",
  ignore: cap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const o = await OnboardingLab.create();
    const lab = await Lab.create();
    let ctl: RunningController | undefined;
    let remote: RunningTestRelay | undefined;
    const dir = o.hostDir("n1");
    try {
      // Topology: client c ─ node n ─ internet i (host 203.0.113.80 echoes TCP 7000), and
      // this host ─ n: NODE, n's public address, is where SSH, NodeControl and AmneziaWG answer.
      const node = await lab.ns("n");
      const client = await lab.ns("c");
      const inet = await lab.ns("i");
      const { nsIp: NODE } = await rootLink(lab, node);
      await lab.link(client, "192.0.2.2/30", node, "192.0.2.1/30");
      await lab.link(node, "198.51.100.1/30", inet, "198.51.100.2/30");
      await lab.exec(node, ["ip", "route", "add", "default", "via", "198.51.100.2"]);
      // The client reaches NODE only (no default route: nothing passes outside the tunnel).
      await lab.exec(client, ["ip", "route", "add", `${NODE}/32`, "via", "192.0.2.1"]);
      await lab.exec(inet, ["ip", "addr", "add", `${INTERNET_HOST}/32`, "dev", "lo"]);
      await lab.echoServer(inet, 7000);
      const [nodeIface, clientIface] = await lab.names.reserve(2);
      assert.equal(
        await lab.ping(client, INTERNET_HOST),
        false,
        "the internet host is not reachable without the tunnel",
      );

      // The node's SSH port (NODE:22) leads to the test sshd; onboarding dials NODE like a real
      // host and records it, so the node row says NODE, control port 8444.
      await bridge(lab, node, o.sshd.port, 22, NODE);
      const agent = ["ip", "netns", "exec", node, DENO, "run", "-A", `${ROOT}agent/main.ts`, "run"];
      agent.push("--state", "{dir}", "--listen", `${NODE}:8444`, "--interface", nodeIface);
      agent.push("--awg-port", "443", "--poll-interval", "1s");
      await onboardNode(o.state, ACTOR, {
        target: { user: "root", host: NODE, port: 22 },
        name: "n1",
        credentials: { kind: "key" },
        sudo: false,
        setup: o.setup(dir, o.background(dir, agent)),
        ready: { attempts: 120, intervalMs: 500, callTimeoutMs: 5000 },
      });
      const n1 = new Nodes(o.service).require("n1");
      const nodeId = n1.id;
      assert.equal(n1.host, NODE);
      assert.equal(n1.controlPort, 8444);
      const keyIn = (db: typeof o.state.db) =>
        (db.prepare("SELECT awg_public_key AS k FROM nodes WHERE id = ?").get(nodeId) as {
          k: string | null;
        }).k;
      assert.equal(keyIn(o.state.db), null, "no node key before the controller saw the node");
      // Short sweeps for the test (the loop is nudged on every change anyway).
      setReconcileInterval(o.service, 1000, ACTOR);

      // A remote relay (certificate from the controller's Fleet CA) the controller tunnels to.
      const relayLogs: string[] = [];
      await writeRelayMaterial(o.state.pki.cas, `${o.tmp}/relay`);
      remote = await runTestRelay(`${o.tmp}/relay`, relayLogs);

      // The controller on the same state, its embedded relay on the host's loopback. Its fleet
      // driver dials NODE:8444; its reconcile loop observes the node and records its key.
      const stateDir = `${o.tmp}/state`;
      ctl = await startController(resolveConfig({
        state: stateDir,
        "ui-listen": "127.0.0.1:0",
        "relay-listen": "127.0.0.1:0",
        "relay-hosts": "127.0.0.1",
        "relay-tunnels": `127.0.0.1:${remote.ports.tunnel}`,
        "log-level": "error",
      }, () => undefined));
      const c = ctl;
      const recordedKey = () => keyIn(c.state.db);
      assert.ok(
        await eventually(() => recordedKey() !== null, 30_000),
        `the controller did not record the node's key: ${ctl.reconciler.lastError(nodeId)}`,
      );
      assert.equal(recordedKey(), await reportedNodeKey(ctl, nodeId));
      const keyAudit = ctl.state.db.prepare(
        "SELECT actor FROM audit_log WHERE action = 'node.awg_key' AND target_id = ?",
      ).all(nodeId) as { actor: string }[];
      assert.deepEqual(
        keyAudit.map((a) => a.actor),
        ["system:controller"],
        "recorded by accounts.nodeKeyObserved",
      );

      // Client namespace → embedded relay (8443) and → remote relay (8445).
      await bridge(lab, client, ctl.relays.embedded!.port, 8443);
      await bridge(lab, client, remote.ports.client, 8445);

      // The admin: a user and a ticket naming the relay as the client reaches it.
      await cox(stateDir, ["users", "add", "alice@example.com"]);
      const ticket = await cox(stateDir, [
        "tickets",
        "create",
        "alice@example.com",
        "--relay",
        "127.0.0.1:8443",
      ]);
      const link = ticket.split("\n").find((l) => l.startsWith("pharosvpn://enroll?"));
      assert.ok(link, ticket);
      assert.match(
        ticket.trimEnd().split("\n").at(-1)!,
        /^ticket \S+ for alice@example\.com: single use/,
      );

      // The client claims it through the relay and decrypts its profile.
      const healsBefore = healActions(ctl.state.db, nodeId).length;
      const clientDir = `${lab.tmp}/client`;
      const enrolled = await lab.run(client, [
        DENO,
        "run",
        "-A",
        CLIENT,
        "enroll",
        link,
        "--state",
        clientDir,
        "--name",
        "laptop",
      ]);
      assert.equal(enrolled.code, 0, enrolled.stderr);
      assert.match(
        enrolled.stdout,
        /^enrolled as \S+; profile revision \d+; node n1; config \S+pharos\.conf\n$/,
      );
      const conf = await Deno.readTextFile(`${clientDir}/pharos.conf`);
      // The address onboarding recorded, the key the controller observed.
      assert.ok(conf.includes(`Endpoint = ${NODE}:443`), conf);
      assert.ok(conf.includes(`PublicKey = ${recordedKey()}`), conf);

      // The reconcile loop (nudged by the claim) gives the node the device's peer.
      const saved = await loadState(clientDir);
      const device = ctl.devices.byFingerprint(
        await deviceFingerprint(parseCertificate(saved.deviceCertPem)),
      );
      assert.ok(device);
      const peerKey = devicePeerKey(ctl.state.db, device.id, nodeId);
      assert.ok(peerKey, "the claim made the device a peer on n1");
      assert.ok(
        await eventually(async () => (await nodePeerKeys(c, nodeId)).has(peerKey), 30_000),
        `the node never got the device's peer: ${ctl.reconciler.lastError(nodeId)}`,
      );
      await assertHealed(ctl.state.db, nodeId, healsBefore, "add-peer", peerKey);

      const up = lab.spawn(client, [
        DENO,
        "run",
        "-A",
        CLIENT,
        "up",
        "--state",
        clientDir,
        "--interface",
        clientIface,
        "--dataplane",
        "wireguard-go",
      ], { label: "client up" });
      await up.line(/^tunnel \S+ up: /, 120_000);
      assert.ok(
        await eventually(() => lab.ping(client, INTERNET_HOST), 30_000),
        `no ping through the tunnel\n${up.tail()}`,
      );
      assert.deepEqual(await lab.tcpProbe(client, INTERNET_HOST, 7000), {
        ok: true,
        from: "198.51.100.1",
      });

      // A second device claims its ticket through the remote relay (reverse tunnel).
      const ticket2 = await cox(stateDir, [
        "tickets",
        "create",
        "alice@example.com",
        "--relay",
        "127.0.0.1:8445",
      ]);
      const link2 = ticket2.split("\n").find((l) => l.startsWith("pharosvpn://enroll?"))!;
      const clientDir2 = `${lab.tmp}/client2`;
      let last = "";
      // Until the controller's tunnel to the relay is up the relay answers UNAVAILABLE
      // (nothing reaches the controller, so the ticket stays unused).
      const viaRemote = await eventually(
        async () => {
          const r = await lab.run(client, [
            DENO,
            "run",
            "-A",
            CLIENT,
            "enroll",
            link2,
            "--state",
            clientDir2,
            "--name",
            "phone",
          ]);
          last = r.stderr;
          return r.code === 0 && /^enrolled as \S+; profile revision \d+; node n1;/.test(r.stdout);
        },
        60_000,
        1000,
      );
      assert.ok(viaRemote, `enrollment through the remote relay: ${last}`);
      // The first device syncs through the remote relay too (same fleet, same pinned root).
      const synced = await lab.run(client, [
        DENO,
        "run",
        "-A",
        CLIENT,
        "sync",
        "--state",
        clientDir,
        "--relay",
        "127.0.0.1:8445",
      ]);
      assert.equal(synced.code, 0, synced.stderr);

      // Revoke with the CLI (another process): the reconcile loop removes the peer, the tunnel
      // stops, the relay refuses the device.
      const healsBeforeRevoke = healActions(ctl.state.db, nodeId).length;
      const revoked = await cox(stateDir, ["devices", "revoke", device.id, "--reason", "lost"]);
      assert.match(revoked, /^revoked device /);
      assert.ok(
        await eventually(async () => !(await nodePeerKeys(c, nodeId)).has(peerKey), 30_000),
        `the revoked device's peer is still on the node: ${ctl.reconciler.lastError(nodeId)}`,
      );
      await assertHealed(ctl.state.db, nodeId, healsBeforeRevoke, "remove-peer", peerKey);
      const device2 = ctl.devices.byFingerprint(
        await deviceFingerprint(parseCertificate((await loadState(clientDir2)).deviceCertPem)),
      );
      assert.ok(device2);
      const peerKey2 = devicePeerKey(ctl.state.db, device2.id, nodeId);
      assert.ok(peerKey2);
      let left: string[] = [];
      assert.ok(
        await eventually(async () => {
          left = [...await nodePeerKeys(c, nodeId)];
          return left.length === 1 && left[0] === peerKey2;
        }, 30_000),
        `only the second device's peer is left, not ${JSON.stringify(left)}`,
      );
      assert.ok(
        await eventually(async () => !(await lab.ping(client, INTERNET_HOST)), 15_000),
        "revoked device still passes traffic",
      );
      const refused = await lab.run(client, [
        DENO,
        "run",
        "-A",
        CLIENT,
        "sync",
        "--state",
        clientDir,
      ]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /refused/);
      // … and through the remote relay (revocation pushed to it, and checked by the controller).
      assert.ok(
        await eventually(
          async () => {
            const r = await lab.run(client, [
              DENO,
              "run",
              "-A",
              CLIENT,
              "sync",
              "--state",
              clientDir,
              "--relay",
              "127.0.0.1:8445",
            ]);
            return r.code === 1 && /refused/.test(r.stderr);
          },
          30_000,
          1000,
        ),
        "the remote relay path still serves the revoked device",
      );
      const other = await lab.run(client, [
        DENO,
        "run",
        "-A",
        CLIENT,
        "sync",
        "--state",
        clientDir2,
      ]);
      assert.equal(other.code, 0, `the other device is untouched: ${other.stderr}`);
      await up.stop();
    } finally {
      await ctl?.shutdown().catch(() => {});
      await remote?.close().catch(() => {});
      await o.stopService(dir);
      await lab.cleanup();
      await o.close();
    }
  },
});
