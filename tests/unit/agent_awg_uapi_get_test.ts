/**
 * The agent's amneziawg-go sync against what amneziawg-go really answers to
 * `get=1`: every release omits a device key whose value is zero (jc, jmin,
 * jmax, s1–s4, h1–h4) instead of printing `key=0`. A set with zeros in it
 * (an AmneziaWG 1.0 set from an original node has s3 = s4 = 0) must still be
 * recognised as applied, or every sync would push the obfuscation again.
 */
import assert from "node:assert/strict";
import { parseUapiGet, renderUapiSet } from "../../core/dataplane/mod.ts";
import { diffRequest } from "../../agent/dataplane/awg.ts";
import { fakeKey } from "./dataplane_golden.ts";

const hex = (n: number) => new Uint8Array(32).fill(n).toHex();

/** An AmneziaWG 1.0 set: no cookie/transport padding, no i-packets. */
const AWG10 = {
  jc: 4,
  jmin: 40,
  jmax: 900,
  s1: 20,
  s2: 30,
  s3: 0,
  s4: 0,
  h1: 1_000_001,
  h2: 1_000_002,
  h3: 1_000_003,
  h4: 1_000_004,
};

const config = {
  privateKey: fakeKey(0x11),
  listenPort: 443,
  obfuscation: AWG10,
  peers: [{ publicKey: fakeKey(0x21), allowedIps: ["10.8.0.2/32"] }],
};

/** A get reply in amneziawg-go's shape for `config` applied: s3 and s4 are absent, not 0. */
function amneziawgGoReply(h1 = AWG10.h1): string {
  return [
    `private_key=${hex(0x11)}`,
    "listen_port=443",
    "jc=4",
    "jmin=40",
    "jmax=900",
    "s1=20",
    "s2=30",
    `h1=${h1}`,
    `h2=${AWG10.h2}`,
    `h3=${AWG10.h3}`,
    `h4=${AWG10.h4}`,
    `public_key=${hex(0x21)}`,
    `preshared_key=${"0".repeat(64)}`,
    "protocol_version=1",
    "endpoint=192.0.2.2:51820",
    "last_handshake_time_sec=1",
    "last_handshake_time_nsec=0",
    "tx_bytes=100",
    "rx_bytes=200",
    "persistent_keepalive_interval=0",
    "allowed_ip=10.8.0.2/32",
    "errno=0",
    "",
    "",
  ].join("\n");
}

Deno.test("agent sync: a set with zero values, read back from amneziawg-go (zeros omitted), is in force", () => {
  const live = parseUapiGet(amneziawgGoReply());
  assert.equal(diffRequest(live, config, true), null, "nothing to change");
});

Deno.test("agent sync: a different live header still resends the whole set, zeros included", () => {
  const live = parseUapiGet(amneziawgGoReply(7));
  const req = diffRequest(live, config, true);
  assert.ok(req);
  const text = renderUapiSet(req);
  assert.match(text, /^h1=1000001$/m);
  assert.match(text, /^s3=0$/m, "a zero is sent explicitly, so a stale value is cleared");
  assert.doesNotMatch(text, /^public_key=/m, "the unchanged peer is left alone");
});
