import assert from "node:assert/strict";
import { x25519 } from "@noble/curves/ed25519.js";
import { fromBase64Url, toBase64Url } from "../../core/encoding.ts";
import {
  generateRealityKeyPair,
  realityPublicKey,
  renderXrayClientConfig,
  renderXrayServerConfig,
  type XrayClientConfig,
  type XrayServerConfig,
} from "../../core/dataplane/mod.ts";
import { assertGolden, assertRejects, readVector } from "./dataplane_golden.ts";

/** A fixed REALITY private key (RFC 7748 Alice) for the golden files. */
const PRIVATE = toBase64Url(
  Uint8Array.fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
);

Deno.test("reality keys: RFC 7748 vectors, base64url without padding", () => {
  const { pairs } = JSON.parse(readVector("x25519_rfc7748.json"));
  for (const { private: priv, public: pub } of pairs) {
    const out = realityPublicKey(toBase64Url(Uint8Array.fromHex(priv)));
    assert.equal(out, toBase64Url(Uint8Array.fromHex(pub)));
    assert.match(out, /^[A-Za-z0-9_-]{43}$/);
  }
});

Deno.test("reality keys: generated private keys are clamped and match their public key", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const kp = generateRealityKeyPair();
    const priv = fromBase64Url(kp.privateKey, "privateKey", 32);
    assert.equal(priv[0] & 7, 0);
    assert.equal(priv[31] & 128, 0);
    assert.equal(priv[31] & 64, 64);
    assert.equal(kp.publicKey, toBase64Url(x25519.getPublicKey(priv)));
    assert.equal(realityPublicKey(kp.privateKey), kp.publicKey);
    seen.add(kp.privateKey);
  }
  assert.equal(seen.size, 200);
  for (const bad of ["", "A".repeat(42), "A".repeat(43) + "=", "+".repeat(43), "A".repeat(44)]) {
    assertRejects(() => realityPublicKey(bad), "bad-key", "privateKey");
  }
});

const SERVER: XrayServerConfig = {
  port: 443,
  privateKey: PRIVATE,
  dest: "www.microsoft.com:443",
  serverNames: ["www.microsoft.com"],
  shortIds: ["", "0123456789abcdef"],
  clients: [
    { id: "6F1C2E1A-4B8E-4C2A-9D6E-1A2B3C4D5E6F", flow: "xtls-rprx-vision" },
    { id: "0b9a3c1e-2f4d-4e6a-8b7c-9d0e1f2a3b4c" },
  ],
};

const CLIENT: XrayClientConfig = {
  address: "203.0.113.7",
  port: 443,
  uuid: "6f1c2e1a-4b8e-4c2a-9d6e-1a2b3c4d5e6f",
  flow: "xtls-rprx-vision",
  serverName: "www.microsoft.com",
  publicKey: realityPublicKey(PRIVATE),
  shortId: "0123456789abcdef",
  socks: { port: 10808, user: "pharos-local", pass: "s3cret-0123456789" },
};

Deno.test("xray server: §5.4 inbound/outbound, blackholed private destinations", () => {
  const text = renderXrayServerConfig(SERVER);
  assertGolden("xray_server.json", text);
  const doc = JSON.parse(text);
  const inbound = doc.inbounds[0];
  assert.equal(inbound.protocol, "vless");
  assert.deepEqual(inbound.settings.clients[1], { id: SERVER.clients[1].id });
  assert.equal(inbound.settings.clients[0].id, SERVER.clients[0].id.toLowerCase());
  assert.equal(inbound.streamSettings.realitySettings.privateKey, PRIVATE);
  assert.equal(doc.outbounds[0].protocol, "freedom");
  assert.ok(doc.routing.rules[0].ip.includes("169.254.0.0/16"));
});

Deno.test("xray client: authenticated local SOCKS, VLESS + REALITY outbound", () => {
  const text = renderXrayClientConfig(CLIENT);
  assertGolden("xray_client.json", text);
  const doc = JSON.parse(text);
  assert.equal(doc.inbounds[0].listen, "127.0.0.1");
  assert.equal(doc.inbounds[0].settings.auth, "password");
  const reality = doc.outbounds[0].streamSettings.realitySettings;
  assert.equal(reality.fingerprint, "chrome");
  assert.equal(reality.spiderX, "/");
  const v6 = JSON.parse(renderXrayClientConfig({ ...CLIENT, address: "2001:DB8::7", flow: "" }));
  assert.equal(v6.outbounds[0].settings.vnext[0].address, "2001:db8::7");
  assert.equal(v6.outbounds[0].settings.vnext[0].users[0].flow, "");
});

Deno.test("xray: every bad field is a typed error naming it", () => {
  const server: [Partial<XrayServerConfig>, string, string][] = [
    [{ port: 0 }, "out-of-range", "port"],
    [{ privateKey: "x" }, "bad-key", "privateKey"],
    [{ dest: "www.microsoft.com" }, "bad-endpoint", "dest"],
    [{ dest: "www.microsoft.com:443\n" }, "bad-endpoint", "dest"],
    [{ serverNames: ["example.com"] }, "bad-server-names", "serverNames"],
    [{ serverNames: ["www.microsoft.com", "bad name"] }, "bad-hostname", "serverNames[1]"],
    [{ shortIds: ["abc"] }, "bad-short-id", "shortIds[0]"],
    [{ shortIds: ["ABCD"] }, "bad-short-id", "shortIds[0]"],
    [{ shortIds: ["00".repeat(9)] }, "bad-short-id", "shortIds[0]"],
    [{ shortIds: [] }, "bad-short-id", "shortIds"],
    [{ clients: [{ id: "not-a-uuid" }] }, "bad-uuid", "clients[0].id"],
    [
      { clients: [{ id: SERVER.clients[1].id, flow: "xtls-rprx-direct" }] },
      "bad-flow",
      "clients[0].flow",
    ],
    [{ clients: [SERVER.clients[1], SERVER.clients[1]] }, "duplicate", "clients[1].id"],
  ];
  for (const [patch, code, field] of server) {
    assertRejects(() => renderXrayServerConfig({ ...SERVER, ...patch }), code, field);
  }
  assert.ok(
    renderXrayServerConfig({ ...SERVER, dest: "203.0.113.9:443", serverNames: ["a.example"] }),
  );
  const client: [Partial<XrayClientConfig>, string, string][] = [
    [{ address: "1.2.3.4; rm -rf /" }, "bad-hostname", "address"],
    [{ address: "999.1.1.1" }, "bad-ip", "address"],
    [{ port: 70000 }, "out-of-range", "port"],
    [{ uuid: "" }, "bad-uuid", "uuid"],
    [{ fingerprint: "netscape" }, "bad-fingerprint", "fingerprint"],
    [{ publicKey: "AAAA" }, "bad-key", "publicKey"],
    [{ shortId: "xyz" }, "bad-short-id", "shortId"],
    [{ serverName: "" }, "bad-hostname", "serverName"],
    [{ socks: { ...CLIENT.socks, pass: "short" } }, "bad-socks", "socks.pass"],
    [{ socks: { ...CLIENT.socks, user: "a b c d e f g h" } }, "bad-socks", "socks.user"],
    [{ socks: { ...CLIENT.socks, port: 0 } }, "out-of-range", "socks.port"],
  ];
  for (const [patch, code, field] of client) {
    assertRejects(() => renderXrayClientConfig({ ...CLIENT, ...patch }), code, field);
  }
});
