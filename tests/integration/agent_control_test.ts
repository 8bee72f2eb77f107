// deno-lint-ignore-file no-explicit-any
/**
 * NodeControl's door and its input checks, against the agent process in a
 * namespace (wireguard-go as the data plane):
 * - TLS 1.3 only, ALPN h2, the node's chain;
 * - only the controller role may call (CONTRACTS.md §7.1): device, node and
 *   relay certificates of the same fleet get PERMISSION_DENIED, a revoked
 *   controller too (revoked.txt, no restart), certificates of another PKI
 *   and callers without one UNAUTHENTICATED;
 * - bad pushes (malformed bytes, unknown protocol, invalid keys,
 *   out-of-range obfuscation, a newline or shell text in any field, a
 *   path-like interface name) get a clear error, nothing is written to the
 *   state directory and the previous config keeps serving (§7.6).
 */
import assert from "node:assert/strict";
import * as tls from "node:tls";
import * as net from "node:net";
import { Buffer } from "node:buffer";
import { certPem } from "../../core/pki/mod.ts";
import { encodeConfig, nodeTypes } from "../../agent/proto.ts";
import {
  agentCapability,
  eventually,
  labTest,
  psk,
  startNodeAgent,
  wgKeyPair,
} from "../support/agent_harness.ts";
import { makeFleet } from "../support/pki_fixture.ts";

const cap = agentCapability("integration agent NodeControl");

function grpcCode(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  return p.then(
    () => ({ code: 0, details: "" }),
    (e: any) => ({ code: e.code, details: String(e.details ?? e.message) }),
  );
}

/** Every regular file under `dir` (but the runtime scratch) → its bytes, hex. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string, depth: number) => {
    if (depth > 4) return;
    for await (const e of Deno.readDir(`${dir}/${rel}`)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory && e.name !== "run") await walk(path, depth + 1);
      else if (e.isFile) out[path] = (await Deno.readFile(`${dir}/${path}`)).toHex();
    }
  };
  await walk("", 0);
  return out;
}

/** A raw TLS connection through the agent's forwarder socket. */
function rawTls(socket: string, opts: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ path: socket });
    raw.once("error", reject);
    raw.once("connect", () => {
      const t = tls.connect({ ...opts, socket: raw, servername: "localhost" });
      t.once("secureConnect", () => resolve(t));
      t.once("error", reject);
    });
  });
}

labTest(
  "integration agent: TLS 1.3 + h2, controller role only, revocation without restart",
  cap.ignore,
  async (lab) => {
    const ns = await lab.ns("n");
    const { agent, pki, dir } = await startNodeAgent(lab, ns);

    // TLS: 1.3 with ALPN h2 and the node's chain; 1.2 is refused.
    const ca = pki.fleet.rootPem;
    const ok = await rawTls(agent.socket, {
      ca,
      key: pki.controller.keyPem,
      cert: pki.controller.chainPem,
      ALPNProtocols: ["h2"],
    });
    assert.equal(ok.getProtocol(), "TLSv1.3");
    assert.equal(ok.alpnProtocol, "h2");
    assert.match(String(ok.getPeerCertificate().subject.O), /PharosVPN Node/);
    ok.destroy();
    await assert.rejects(
      rawTls(agent.socket, { ca, maxVersion: "TLSv1.2", ALPNProtocols: ["h2"] }),
    );

    const call = (leaf: any, root?: string) =>
      grpcCode(agent.call("GetStatus", {}, agent.client(leaf, root)));
    assert.equal((await call(pki.controller)).code, 0);
    const device = await pki.fleet.issue({ kind: "device", name: "phone" });
    const node = await pki.fleet.issue({ kind: "node", host: "other.example" });
    const relay = await pki.fleet.issue({ kind: "relay", hosts: ["relay.example"] });
    for (const [what, leaf] of [["device", device], ["node", node], ["relay", relay]] as const) {
      const r = await call(leaf);
      assert.equal(r.code, 7, `${what}: expected PERMISSION_DENIED, got ${r.code} ${r.details}`);
      assert.match(r.details, /only the controller may call NodeControl/);
    }
    // Every method is guarded, streaming included.
    const watch = agent.client(device).WatchEvents({});
    const denied = await new Promise<any>((resolve) => watch.on("error", resolve));
    assert.equal(denied.code, 7);
    assert.equal(
      (await grpcCode(
        agent.call("SetNetworkConfig", { config: { forwarding: true } }, agent.client(relay)),
      ))
        .code,
      7,
    );
    // Another fleet's controller, and no certificate at all: not authenticated.
    const other = await makeFleet();
    const foreign = await other.issue({ kind: "controller-client" });
    assert.equal((await call(foreign)).code, 16);
    assert.equal((await call(null)).code, 16);
    assert.ok(agent.proc.err.some((l) => l.includes('"code":"caller-wrong-role"')));

    // Revocation: the controller's serial in revoked.txt, picked up without a restart.
    const serial = pki.controller.cert.serialNumber;
    await Deno.writeTextFile(`${dir}/revoked.txt`, `# revoked by the test\n${serial}\n`);
    assert.ok(
      await eventually(async () => (await call(pki.controller)).code === 7, 20_000),
      "revoked controller refused",
    );
    const fresh = await pki.fleet.issue({ kind: "controller-client" });
    assert.equal((await call(fresh)).code, 0, "a new controller certificate works");
    await Deno.remove(`${dir}/revoked.txt`);
    assert.ok(await eventually(async () => (await call(pki.controller)).code === 0, 20_000));
    assert.equal(certPem(pki.fleet.pki.root.cert), ca);
    assert.equal((await agent.stop()).code, 0);
  },
);

labTest(
  "integration agent: bad pushes are refused with a clear error, nothing written, old config serving",
  cap.ignore,
  async (lab) => {
    const ns = await lab.ns("n");
    const { agent, iface, dir } = await startNodeAgent(lab, ns);
    const [inner] = await lab.names.reserve(1);
    const good = wgKeyPair();
    const goodPsk = psk();
    await agent.pushAwg([{
      public_key: good.pub,
      allowed_ips: ["10.8.0.2/32"],
      preshared_key: goodPsk,
    }], 3);
    await agent.setPolicy({ forwarding: true, masquerade: false });
    const exit = wgKeyPair();
    const obf = (await agent.call("GetStatus", {})).amneziawg.obfuscation;
    const linkOk = {
      interface: inner,
      listen_port: 51820,
      mtu: 1340,
      peer_obfuscation: obf,
      exit: { public_key: exit.pub, allowed_ips: ["0.0.0.0/0"], endpoints: ["192.0.2.10:443"] },
    };
    await agent.call("ConfigureInnerLink", { revision: "1", config: linkOk });
    const before = await snapshot(dir);
    const liveBefore = await lab.exec(ns, ["wg", "show", iface, "dump"]);

    const peer = (p: Record<string, unknown>) => ({
      protocol: "PROTOCOL_AMNEZIAWG",
      public_key: wgKeyPair().pub,
      allowed_ips: ["10.8.0.9/32"],
      ...p,
    });
    const awgBytes = (peers: Record<string, unknown>[]) =>
      Buffer.from(encodeConfig(nodeTypes.AmneziaWGConfig, { peers }));
    const push = (config: Uint8Array, protocol = "PROTOCOL_AMNEZIAWG", revision = "9") =>
      agent.call("PushConfig", { protocol, revision, config });
    const xrayBytes = (p: Record<string, unknown>) =>
      Buffer.from(encodeConfig(nodeTypes.XRayRealityConfig, {
        peers: [{ public_key: crypto.randomUUID() }],
        dest: "www.example.com:443",
        server_names: ["www.example.com"],
        short_ids: [""],
        port: 443,
        ...p,
      }));
    const cases: [string, () => Promise<unknown>, number, RegExp][] = [
      [
        "malformed config bytes",
        () => push(new Uint8Array([0x0a, 0xff, 0xff, 0x01])),
        3,
        /config: not a valid AmneziaWGConfig/,
      ],
      [
        "unknown protocol",
        () => push(awgBytes([]), "PROTOCOL_UNSPECIFIED"),
        12,
        /not served here/,
      ],
      [
        "unknown protocol number",
        () => push(awgBytes([]), 7 as unknown as string),
        12,
        /not served here/,
      ],
      [
        "short public key",
        () => push(awgBytes([peer({ public_key: "c2hvcnQ=" })])),
        3,
        /config\.peers\[0\]\.public_key/,
      ],
      [
        "missing public key",
        () => push(awgBytes([peer({ public_key: "" })])),
        3,
        /public_key: empty/,
      ],
      [
        "bad preshared key",
        () => push(awgBytes([peer({ preshared_key: "x".repeat(44) })])),
        3,
        /preshared_key/,
      ],
      [
        "newline in a key",
        () => push(awgBytes([peer({ public_key: good.pub.slice(0, 43) + "\n[Peer]" })])),
        3,
        /public_key/,
      ],
      [
        "shell text in allowed IPs",
        () => push(awgBytes([peer({ allowed_ips: ["10.8.0.9/32; reboot"] })])),
        3,
        /allowed_ips\[0\]/,
      ],
      [
        "newline in allowed IPs",
        () => push(awgBytes([peer({ allowed_ips: ["10.8.0.9/32\nPostUp = id"] })])),
        3,
        /allowed_ips\[0\]/,
      ],
      [
        "shell text in an endpoint",
        () => push(awgBytes([peer({ endpoints: ["192.0.2.1:443 $(reboot)"] })])),
        3,
        /endpoints\[0\]/,
      ],
      [
        "duplicate peers",
        () => push(awgBytes([peer({ public_key: good.pub }), peer({ public_key: good.pub })])),
        3,
        /listed twice/,
      ],
      ["negative revision", () => push(awgBytes([]), "PROTOCOL_AMNEZIAWG", "-1"), 3, /revision/],
      [
        "AddPeer shell text",
        () => agent.call("AddPeer", { peer: peer({ allowed_ips: ["`reboot`"] }) }),
        3,
        /peer\.allowed_ips\[0\]/,
      ],
      ["AddPeer without a peer", () => agent.call("AddPeer", {}), 3, /peer: missing/],
      [
        "AddPeer unknown protocol",
        () => agent.call("AddPeer", { peer: peer({ protocol: "PROTOCOL_UNSPECIFIED" }) }),
        12,
        /not served/,
      ],
      [
        "RemovePeer bad key",
        () => agent.call("RemovePeer", { protocol: "PROTOCOL_AMNEZIAWG", public_key: "../x" }),
        3,
        /public_key/,
      ],
      [
        "obfuscation jmin > jmax",
        () =>
          agent.call("ConfigureInnerLink", {
            revision: "2",
            config: {
              ...linkOk,
              peer_obfuscation: {
                ...obf,
                jc: 4,
                jmin: 900,
                jmax: 100,
                h1: 5,
                h2: 6,
                h3: 7,
                h4: 8,
              },
            },
          }),
        3,
        /peer_obfuscation\.jmin/,
      ],
      [
        "obfuscation jc out of range",
        () =>
          agent.call("ConfigureInnerLink", {
            revision: "2",
            config: { ...linkOk, peer_obfuscation: { ...obf, jc: 5000 } },
          }),
        3,
        /peer_obfuscation\.jc/,
      ],
      [
        "template with a newline",
        () =>
          agent.call("ConfigureInnerLink", {
            revision: "2",
            config: { ...linkOk, peer_obfuscation: { ...obf, i1: "<b 0x00>\nPostUp = id" } },
          }),
        3,
        /peer_obfuscation\.i1/,
      ],
      [
        "path-like inner interface",
        () =>
          agent.call("ConfigureInnerLink", {
            revision: "2",
            config: { ...linkOk, interface: "../../etc/passwd" },
          }),
        3,
        /config\.interface/,
      ],
      [
        "interface with a slash",
        () =>
          agent.call("ConfigureInnerLink", {
            revision: "2",
            config: { ...linkOk, interface: "awg1/../x" },
          }),
        3,
        /config\.interface/,
      ],
      [
        "inner link on the client interface",
        () =>
          agent.call("ConfigureInnerLink", {
            revision: "2",
            config: { ...linkOk, interface: iface },
          }),
        3,
        /client interface/,
      ],
      [
        "RemoveInnerLink path",
        () => agent.call("RemoveInnerLink", { interface: "../etc" }),
        3,
        /interface/,
      ],
      [
        "exit endpoint shell text",
        () =>
          agent.call("ConfigureInnerLink", {
            revision: "2",
            config: { ...linkOk, exit: { ...linkOk.exit, endpoints: ["exit.example:443;id"] } },
          }),
        3,
        /exit\.endpoints\[0\]/,
      ],
      [
        "transit with argv injection",
        () =>
          agent.setPolicy({
            forwarding: true,
            transits: [{
              device_cidr: "10.8.0.2/32 -j ACCEPT",
              inner_interface: inner,
              mark: 7100,
              table: 7100,
            }],
          }),
        3,
        /deviceCidr/,
      ],
      [
        "transit interface with shell text",
        () =>
          agent.setPolicy({
            forwarding: true,
            transits: [{
              device_cidr: "10.8.0.2/32",
              inner_interface: "awg1;reboot",
              mark: 7100,
              table: 7100,
            }],
          }),
        3,
        /innerInterface/,
      ],
      [
        "masquerade without forwarding",
        () => agent.setPolicy({ forwarding: false, masquerade: true }),
        3,
        /requires forwarding/,
      ],
      [
        "xray port 0",
        () => push(xrayBytes({ port: 0 }), "PROTOCOL_XRAY_REALITY"),
        3,
        /config\.port/,
      ],
      [
        "xray bad UUID",
        () => push(xrayBytes({ peers: [{ public_key: "not-a-uuid\n" }] }), "PROTOCOL_XRAY_REALITY"),
        3,
        /UUID/,
      ],
      [
        "xray newline in dest",
        () => push(xrayBytes({ dest: "www.example.com:443\n" }), "PROTOCOL_XRAY_REALITY"),
        3,
        /dest/,
      ],
      [
        "xray shell text in a server name",
        () => push(xrayBytes({ server_names: ["$(reboot)"] }), "PROTOCOL_XRAY_REALITY"),
        3,
        /serverNames\[0\]/,
      ],
    ];
    for (const [what, fn, code, re] of cases) {
      const r = await grpcCode(fn());
      assert.equal(r.code, code, `${what}: expected ${code}, got ${r.code} ${r.details}`);
      assert.match(r.details, re, `${what}: ${r.details}`);
      assert.ok(!/\n/.test(r.details), `${what}: one-line message`);
    }
    assert.deepEqual(await snapshot(dir), before, "nothing was written");
    assert.equal(
      await lab.exec(ns, ["wg", "show", iface, "dump"]),
      liveBefore,
      "interface untouched",
    );
    const status = await agent.call("GetStatus", {});
    assert.equal(status.applied_revision, "3");
    assert.equal(status.services[0].running, true);
    const list = await agent.call("ListPeers", { protocol: "PROTOCOL_AMNEZIAWG" });
    assert.deepEqual(list.peers.map((p: any) => p.peer.public_key), [good.pub]);
    // Each refusal is one JSON log line with its code.
    const refusals = agent.proc.err.filter((l) => l.includes('"msg":"NodeControl call failed"'));
    assert.ok(refusals.length >= cases.length);
    for (const l of refusals) assert.ok(typeof JSON.parse(l).code === "string");
    assert.equal((await agent.stop()).code, 0);
  },
);
