/**
 * What the agent added to core/dataplane, and how its drivers use it:
 * peer-only and removing UAPI requests, the UAPI `get` reply parser, the
 * `awg setconf` strip target, the Xray API option; and the AmneziaWG
 * obfuscation the agent sends through UAPI, pinned by a golden file
 * (amneziawg-go cannot be had here, so this text is the proof the
 * obfuscation reaches the interface; the packet path is proven with
 * wireguard-go in the e2e suites).
 */
import assert from "node:assert/strict";
import {
  parseUapiErrno,
  parseUapiGet,
  renderServerConfig,
  renderUapiSet,
  renderXrayServerConfig,
  stripAwgKeys,
  type WgDump,
  XRAY_INBOUND_TAG,
} from "../../core/dataplane/mod.ts";
import { diffRequest } from "../../agent/dataplane/awg.ts";
import { wgPublicKey } from "../../agent/identity.ts";
import { assertRejects, fakeKey, readVector, SAMPLE_OBFUSCATION } from "./dataplane_golden.ts";

const OBF = { ...SAMPLE_OBFUSCATION, i1: "<b 0xc0ffee><r 16>", i3: "<t> <rc 8>" };

const AGENT_VECTORS = new URL("../vectors/agent/", import.meta.url);
function assertAgentGolden(name: string, actual: string) {
  if (Deno.env.get("PHAROS_UPDATE_GOLDEN") === "1") {
    Deno.writeTextFileSync(new URL(name, AGENT_VECTORS), actual);
    return;
  }
  assert.equal(
    actual,
    Deno.readTextFileSync(new URL(name, AGENT_VECTORS)),
    `differs from tests/vectors/agent/${name}`,
  );
}

const hex = (n: number) => new Uint8Array(32).fill(n).toHex();

Deno.test("uapi: peer-only requests, removal, and no AmneziaWG keys when obfuscation is absent", () => {
  assert.equal(
    renderUapiSet({
      peers: [{ publicKey: fakeKey(0x21), allowedIps: ["10.8.0.2/32"], replaceAllowedIps: true }],
    }),
    `set=1\npublic_key=${hex(0x21)}\nreplace_allowed_ips=true\nallowed_ip=10.8.0.2/32\n\n`,
  );
  assert.equal(
    renderUapiSet({ peers: [{ publicKey: fakeKey(0x21), remove: true }] }),
    `set=1\npublic_key=${hex(0x21)}\nremove=true\n\n`,
  );
  assertRejects(
    () => renderUapiSet({ peers: [{ publicKey: fakeKey(0x21), remove: true, allowedIps: [] }] }),
    "bad-peer",
    "peers[0].allowedIps",
  );
  const plain = renderUapiSet({ privateKey: fakeKey(0x11), listenPort: 443, peers: [] });
  assert.equal(plain, `set=1\nprivate_key=${hex(0x11)}\nlisten_port=443\n\n`);
  // The golden client request is unchanged by these additions.
  assert.equal(
    renderUapiSet({
      privateKey: fakeKey(0x61),
      obfuscation: OBF,
      peers: [{
        publicKey: fakeKey(0x21),
        presharedKey: fakeKey(0x31),
        endpoint: "203.0.113.7:443",
        persistentKeepalive: 25,
        allowedIps: ["0.0.0.0/0", "::/0"],
      }],
    }),
    readVector("uapi_client.txt"),
  );
});

Deno.test("uapi: a get reply parses like `wg show dump`, derives the public key, maps zero PSK to none", () => {
  const reply = [
    `private_key=${hex(0x11)}`,
    "listen_port=443",
    "jc=4",
    "h1=1234567891",
    `public_key=${hex(0x21)}`,
    `preshared_key=${"0".repeat(64)}`,
    "protocol_version=1",
    "endpoint=192.0.2.2:40000",
    "last_handshake_time_sec=1800000000",
    "last_handshake_time_nsec=5",
    "tx_bytes=148",
    "rx_bytes=92",
    "persistent_keepalive_interval=0",
    "allowed_ip=10.8.0.2/32",
    "allowed_ip=fd00::2/128",
    `public_key=${hex(0x22)}`,
    `preshared_key=${hex(0x31)}`,
    "last_handshake_time_sec=0",
    "tx_bytes=0",
    "rx_bytes=0",
    "persistent_keepalive_interval=25",
    "errno=0",
    "",
    "",
  ].join("\n");
  const d = parseUapiGet(reply);
  assert.equal(d.interface.privateKey, fakeKey(0x11));
  assert.equal(d.interface.publicKey, wgPublicKey(fakeKey(0x11)));
  assert.deepEqual(d.interface.awgFields, ["jc=4", "h1=1234567891"]);
  assert.deepEqual(d.peers[0], {
    publicKey: fakeKey(0x21),
    presharedKey: null,
    endpoint: "192.0.2.2:40000",
    allowedIps: ["10.8.0.2/32", "fd00::2/128"],
    latestHandshake: 1800000000,
    rxBytes: 92n,
    txBytes: 148n,
    persistentKeepalive: null,
  });
  assert.deepEqual([d.peers[1].presharedKey, d.peers[1].persistentKeepalive], [fakeKey(0x31), 25]);
  assertRejects(() => parseUapiGet("errno=-22\n\n"), "uapi-errno");
  assertRejects(() => parseUapiGet("listen_port=443\n\n"), "bad-uapi");
  assertRejects(
    () => parseUapiGet(`public_key=${hex(0x21)}\nendpoint=x;id\nerrno=0\n\n`),
    "bad-endpoint",
  );
  assert.equal(parseUapiErrno("errno=0\n\n"), 0);
  assertRejects(() => parseUapiErrno("errno=0\nextra\n\n"), "bad-uapi");
});

Deno.test("awg setconf: wg-quick keys go, AmneziaWG keys stay", () => {
  const conf = renderServerConfig({
    interfaceName: "awg1",
    innerLink: true,
    privateKey: fakeKey(0x11),
    listenPort: 51820,
    mtu: 1340,
    obfuscation: OBF,
    peers: [],
  });
  const out = stripAwgKeys(conf, "awg-setconf");
  assert.ok(out.includes("\nJc = 4\n") && out.includes("\nH4 = "));
  assert.ok(!/\nMTU = |\nTable = /.test(out));
});

Deno.test("xray: the API option tags the inbound, gives users an email, listens on loopback only", () => {
  const base = {
    port: 443,
    privateKey: "SMcCHdPNTSlKBlbOYMSgJpt6M3M6nMWtSKsOl6QUJnk",
    dest: "www.example.com:443",
    serverNames: ["www.example.com"],
    shortIds: [""],
    clients: [{ id: "11111111-1111-4111-8111-111111111111", flow: "xtls-rprx-vision" }],
  };
  const without = JSON.parse(renderXrayServerConfig(base));
  assert.equal(without.api, undefined);
  assert.equal(without.inbounds[0].tag, undefined);
  const withApi = JSON.parse(renderXrayServerConfig({ ...base, api: { port: 10085 } }));
  assert.deepEqual(withApi.api, {
    tag: "api",
    listen: "127.0.0.1:10085",
    services: ["HandlerService"],
  });
  assert.equal(withApi.inbounds[0].tag, XRAY_INBOUND_TAG);
  assert.deepEqual(withApi.inbounds[0].settings.clients, [{
    ...base.clients[0],
    email: base.clients[0].id,
  }]);
  assertRejects(
    () => renderXrayServerConfig({ ...base, api: { port: 443 } }),
    "bad-port",
    "api.port",
  );
});

Deno.test("agent sync: the UAPI request carries the node's obfuscation (golden) and only what differs", () => {
  const live: WgDump = {
    interface: { privateKey: null, publicKey: null, listenPort: 0, awgFields: [], fwmark: null },
    peers: [],
  };
  const config = {
    privateKey: fakeKey(0x11),
    listenPort: 443,
    obfuscation: OBF,
    peers: [
      { publicKey: fakeKey(0x21), presharedKey: fakeKey(0x31), allowedIps: ["10.8.0.2/32"] },
      { publicKey: fakeKey(0x22), allowedIps: ["10.8.0.3/32"] },
    ],
  };
  const first = diffRequest(live, config, true)!;
  assertAgentGolden("uapi_awg_sync.txt", renderUapiSet(first));
  // Plain WireGuard: the same change without a single AmneziaWG key.
  const plain = renderUapiSet(diffRequest(live, config, false)!);
  assert.ok(!/^(jc|jmin|jmax|s[1-4]|h[1-4]|i[1-5])=/m.test(plain));
  // Once applied, nothing differs; a changed or vanished peer is all that is sent.
  const applied: WgDump = {
    interface: {
      privateKey: fakeKey(0x11),
      publicKey: null,
      listenPort: 443,
      awgFields: renderUapiSet({ obfuscation: OBF, peers: [] }).split("\n").filter((l) =>
        /=/.test(l) && l !== "set=1"
      ),
      fwmark: null,
    },
    peers: config.peers.map((p) => ({
      publicKey: p.publicKey,
      presharedKey: p.presharedKey ?? null,
      endpoint: "192.0.2.2:1234",
      allowedIps: p.allowedIps,
      latestHandshake: 1,
      rxBytes: 1n,
      txBytes: 1n,
      persistentKeepalive: null,
    })),
  };
  assert.equal(diffRequest(applied, config, true), null);
  const next = diffRequest(applied, {
    ...config,
    peers: [{ ...config.peers[1], allowedIps: ["10.8.0.9/32"] }],
  }, true)!;
  assert.equal(
    renderUapiSet(next),
    `set=1\npublic_key=${hex(0x21)}\nremove=true\npublic_key=${
      hex(0x22)
    }\nreplace_allowed_ips=true\nallowed_ip=10.8.0.9/32\n\n`,
  );
});
