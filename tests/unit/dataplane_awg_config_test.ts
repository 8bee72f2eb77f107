import assert from "node:assert/strict";
import {
  type AwgObfuscation,
  type AwgServerConfig,
  generateObfuscation,
  MANAGED_HEADER,
  NEUTRAL_OBFUSCATION,
  renderClientConfig,
  renderServerConfig,
  renderUapiSet,
  stripAwgKeys,
  stripAwgUapiKeys,
} from "../../core/dataplane/mod.ts";
import { assertGolden, assertRejects, fakeKey, SAMPLE_OBFUSCATION } from "./dataplane_golden.ts";

const OBF: AwgObfuscation = {
  ...SAMPLE_OBFUSCATION,
  i1: "<b 0xc0ffee><r 16>",
  i3: "<t> <rc 8>",
};

const AWG0: AwgServerConfig = {
  interfaceName: "awg0",
  innerLink: false,
  privateKey: fakeKey(0x11),
  listenPort: 443,
  obfuscation: OBF,
  peers: [
    {
      publicKey: fakeKey(0x21),
      presharedKey: fakeKey(0x31),
      allowedIps: ["10.0.0.3/32", "fd00::3/128"],
    },
    { publicKey: fakeKey(0x22), allowedIps: ["10.0.0.4/32"] },
    { publicKey: fakeKey(0x23), presharedKey: "" },
  ],
};

const INNER: AwgServerConfig = {
  interfaceName: "awg1",
  innerLink: true,
  privateKey: fakeKey(0x11),
  listenPort: 51820,
  mtu: 1340,
  obfuscation: { ...OBF, i1: undefined, i3: undefined },
  peers: [{
    publicKey: fakeKey(0x41),
    presharedKey: fakeKey(0x51),
    allowedIps: ["0.0.0.0/0"],
    endpoint: "198.51.100.20:443",
  }],
};

Deno.test("server config: awg0 layout matches the golden file (§5.2)", () => {
  const text = renderServerConfig(AWG0);
  assertGolden("awg_server_awg0.conf", text);
  assert.ok(text.startsWith(MANAGED_HEADER + "\n[Interface]\n"));
  assert.ok(text.includes("\nListenPort = 443\n"));
  assert.ok(text.includes("\nMTU = 1420\n"));
  assert.ok(text.includes("\nAllowedIPs = 10.0.0.3/32, fd00::3/128\n"));
  assert.ok(!text.includes("Table = off") && !text.includes("Endpoint"));
  assert.equal(text.split("\n\n[Peer]\n").length, 1 + AWG0.peers.length);
});

Deno.test("server config: inner link has Table = off and the exit's Endpoint", () => {
  const text = renderServerConfig(INNER);
  assertGolden("awg_server_inner.conf", text);
  assert.ok(text.includes("\nMTU = 1340\nTable = off\nJc = "));
  assert.ok(text.endsWith("Endpoint = 198.51.100.20:443\n"));
  assert.ok(!/^I[1-5] = /m.test(text));
  // mtu 0 means the default.
  assert.ok(renderServerConfig({ ...INNER, mtu: 0 }).includes("\nMTU = 1420\n"));
});

Deno.test("client config: wg-quick layout of the Amnezia export (§6)", () => {
  const text = renderClientConfig({
    addresses: ["10.8.0.2/32"],
    privateKey: fakeKey(0x61),
    mtu: 1340,
    obfuscation: OBF,
    peer: { publicKey: fakeKey(0x21), presharedKey: fakeKey(0x31), endpoint: "203.0.113.7:443" },
  });
  assertGolden("awg_client.conf", text);
  const minimal = renderClientConfig({
    addresses: ["10.8.0.2/24", "FD00::2/64"],
    dns: ["9.9.9.9", "2620:FE::FE"],
    privateKey: fakeKey(0x61),
    obfuscation: OBF,
    peer: { publicKey: fakeKey(0x21), endpoint: "[2001:DB8::7]:443", allowedIps: ["0.0.0.0/0"] },
  });
  assert.ok(minimal.includes("Address = 10.8.0.2/24, fd00::2/64\nDNS = 9.9.9.9, 2620:fe::fe\n"));
  assert.ok(minimal.includes("\nMTU = 1420\n") && !minimal.includes("PresharedKey"));
  assert.ok(minimal.endsWith("Endpoint = [2001:db8::7]:443\nPersistentKeepalive = 25\n"));
});

Deno.test("client config: a deep cascade's MTU (576-1279) renders, with a warning for IPv6", () => {
  const base = {
    addresses: ["10.8.0.2/32"],
    privateKey: fakeKey(0x61),
    obfuscation: OBF,
    peer: { publicKey: fakeKey(0x21), endpoint: "203.0.113.7:443" },
  };
  const warnings: string[] = [];
  const onWarning = (w: { code: string }) => warnings.push(w.code);
  for (const mtu of [1260, 1180, 576]) {
    const text = renderClientConfig({ ...base, mtu }, { onWarning });
    assert.ok(text.includes(`\nMTU = ${mtu}\n`));
  }
  assert.deepEqual(warnings, [], "no IPv6 address, no warning");
  renderClientConfig({ ...base, addresses: ["10.8.0.2/32", "fd00::2/128"], mtu: 1180 }, {
    onWarning,
  });
  assert.deepEqual(warnings, ["ipv6-mtu"]);
  renderClientConfig({ ...base, addresses: ["fd00::2/128"], mtu: 1280 }, { onWarning });
  assert.deepEqual(warnings, ["ipv6-mtu"], "1280 carries IPv6");
  assertRejects(() => renderClientConfig({ ...base, mtu: 575 }), "out-of-range", "mtu");
  assertRejects(() => renderClientConfig({ ...base, mtu: 9001 }), "out-of-range", "mtu");
});

Deno.test("UAPI set: §5.3 order, keys in hex, terminated by a blank line", () => {
  const text = renderUapiSet({
    privateKey: fakeKey(0x61),
    obfuscation: OBF,
    peers: [{
      publicKey: fakeKey(0x21),
      presharedKey: fakeKey(0x31),
      endpoint: "203.0.113.7:443",
      persistentKeepalive: 25,
      allowedIps: ["0.0.0.0/0", "::/0"],
    }],
  });
  assertGolden("uapi_client.txt", text);
  assert.ok(text.includes(`\nprivate_key=${new Uint8Array(32).fill(0x61).toHex()}\n`));
  assert.ok(text.endsWith("allowed_ip=::/0\n\n"));
  const server = renderUapiSet({
    privateKey: fakeKey(0x11),
    listenPort: 443,
    fwmark: 0,
    replacePeers: true,
    obfuscation: OBF,
    peers: [{ publicKey: fakeKey(0x21), replaceAllowedIps: true, allowedIps: ["10.0.0.3/32"] }],
  });
  assert.ok(server.includes("\nlisten_port=443\nfwmark=0\nreplace_peers=true\njc=4\n"));
  assert.ok(server.includes("\nreplace_allowed_ips=true\nallowed_ip=10.0.0.3/32\n"));
  assertRejects(
    () =>
      renderUapiSet({
        privateKey: fakeKey(1),
        obfuscation: OBF,
        peers: [{ publicKey: fakeKey(2), endpoint: "vpn.example.com:443", allowedIps: [] }],
      }),
    "bad-endpoint",
    "peers[0].endpoint",
  );
});

Deno.test("strip: AWG-only keys removed; wg-setconf also loses wg-quick keys", () => {
  const server = renderServerConfig(AWG0);
  const forQuick = stripAwgKeys(server, "wg-quick");
  const forSetconf = stripAwgKeys(server, "wg-setconf");
  const keys = (t: string) =>
    t.split("\n").filter((l) => l.includes(" = ")).map((l) => l.split(" = ")[0]);
  const awgKeys = [
    "Jc",
    "Jmin",
    "Jmax",
    "S1",
    "S2",
    "S3",
    "S4",
    "H1",
    "H2",
    "H3",
    "H4",
    "I1",
    "I3",
  ];
  for (const k of awgKeys) {
    assert.ok(keys(server).includes(k));
    assert.ok(!keys(forQuick).includes(k) && !keys(forSetconf).includes(k));
  }
  assert.ok(keys(forQuick).includes("MTU") && !keys(forSetconf).includes("MTU"));
  assert.ok(!stripAwgKeys(renderServerConfig(INNER), "wg-setconf").includes("Table"));
  // Everything else survives, in order.
  const kept = server.split("\n").filter((l) =>
    !awgKeys.includes(l.split(" = ")[0]) && !l.startsWith("MTU")
  );
  assert.equal(forSetconf, kept.join("\n"));
  const uapi = renderUapiSet({ privateKey: fakeKey(1), obfuscation: OBF, peers: [] });
  assert.equal(
    stripAwgUapiKeys(uapi),
    `set=1\nprivate_key=${new Uint8Array(32).fill(1).toHex()}\n\n`,
  );
});

Deno.test("renderers: neutral obfuscation only with allowNeutral", () => {
  const neutral = { ...AWG0, obfuscation: NEUTRAL_OBFUSCATION };
  assertRejects(() => renderServerConfig(neutral), "bad-obfuscation", "obfuscation.h1");
  assert.ok(renderServerConfig(neutral, { allowNeutral: true }).includes("\nJc = 0\n"));
});

Deno.test("renderers: every bad or injected field is a typed error naming it", () => {
  const peer0 = AWG0.peers[0];
  const cases: [Partial<AwgServerConfig>, string, string][] = [
    [{ privateKey: fakeKey(1).slice(0, 43) + "\n" }, "bad-key", "privateKey"],
    [{ interfaceName: "awg0; rm -rf /" }, "bad-interface", "interfaceName"],
    [{ interfaceName: "../awg0" }, "bad-interface", "interfaceName"],
    [{ interfaceName: "awg0\n[Interface]" }, "bad-interface", "interfaceName"],
    [{ listenPort: 0 }, "out-of-range", "listenPort"],
    [{ mtu: 70000 }, "out-of-range", "mtu"],
    [{ obfuscation: { ...OBF, i1: "<c>\nPostUp = reboot" } }, "bad-template", "obfuscation.i1"],
    [
      { peers: [{ ...peer0, publicKey: fakeKey(2) + "\nPostUp = id" }] },
      "bad-key",
      "peers[0].publicKey",
    ],
    [{ peers: [{ ...peer0, presharedKey: "x" }] }, "bad-key", "peers[0].presharedKey"],
    [{ peers: [{ ...peer0, allowedIps: ["10.0.0.3/32 "] }] }, "bad-cidr", "peers[0].allowedIps[0]"],
    [
      { peers: [{ ...peer0, allowedIps: ["10.0.0.3/32", "10.0.0.3/32"] }] },
      "duplicate",
      "peers[0].allowedIps[1]",
    ],
    [
      { peers: [{ ...peer0, endpoint: "1.2.3.4:443\nPostUp = id" }] },
      "bad-endpoint",
      "peers[0].endpoint",
    ],
    [{ peers: [peer0, { ...peer0 }] }, "duplicate", "peers[1].publicKey"],
    [{ peers: "none" as unknown as [] }, "not-an-array", "peers"],
    [{ peers: [null as unknown as typeof peer0] }, "bad-key", "peers[0].publicKey"],
  ];
  for (const [patch, code, field] of cases) {
    assertRejects(() => renderServerConfig({ ...AWG0, ...patch }), code, field);
  }
  assertRejects(
    () => renderServerConfig({ ...INNER, interfaceName: "awg0" }),
    "bad-interface",
    "interfaceName",
  );
  const client = {
    addresses: ["10.8.0.2/32"],
    privateKey: fakeKey(1),
    obfuscation: OBF,
    peer: { publicKey: fakeKey(2), endpoint: "203.0.113.7:443" },
  };
  assertRejects(() => renderClientConfig({ ...client, addresses: [] }), "missing", "addresses");
  assertRejects(
    () => renderClientConfig({ ...client, dns: ["1.1.1.1; reboot"] }),
    "bad-ip",
    "dns[0]",
  );
  assertRejects(
    () => renderClientConfig({ ...client, peer: { ...client.peer, endpoint: "" } }),
    "bad-endpoint",
    "peer.endpoint",
  );
  assertRejects(
    () => renderClientConfig({ ...client, peer: { ...client.peer, persistentKeepalive: 0 } }),
    "out-of-range",
    "peer.persistentKeepalive",
  );
});

Deno.test("renderers: random valid inputs never yield a line outside the grammar", () => {
  const line =
    /^(?:# Managed by node \u2014 edits will be overwritten\.|\[Interface\]|\[Peer\]|[A-Za-z0-9]+ = [A-Za-z0-9+/=.:, [\]<>-]+|)$/;
  for (let n = 0; n < 200; n++) {
    const peers = Array.from({ length: n % 5 }, (_, i) => ({
      publicKey: fakeKey(i + 1),
      presharedKey: i % 2 ? fakeKey(i + 100) : undefined,
      allowedIps: [`10.${n}.${i}.0/24`, `fd00:${n.toString(16)}::/64`],
      endpoint: i === 0 ? `[2001:db8::${n.toString(16)}]:${1000 + n}` : undefined,
    }));
    const text = renderServerConfig({
      interfaceName: `awg${n % 3 + 1}`,
      innerLink: n % 2 === 0,
      privateKey: fakeKey(200),
      listenPort: 51820 + n,
      obfuscation: generateObfuscation(),
      peers,
    });
    for (const l of text.split("\n")) assert.match(l, line);
    assert.equal(text.split("[Peer]").length - 1, peers.length);
  }
});
