import assert from "node:assert/strict";
import { PharosError } from "../../core/errors.ts";
import {
  formatCidr,
  formatEndpoint,
  formatHost,
  formatIp,
  isCidr,
  isHost,
  isHostname,
  isIpv4,
  isIpv6,
  joinHostPort,
  NetError,
  type NetFault,
  parseCidr,
  parseEndpoint,
  parseHost,
  parseHostname,
  parseIp,
} from "../../core/net/mod.ts";

type Pair = [string, string];
interface Vectors {
  ip: { canonical: Pair[]; hexMapped: Pair[]; invalid: string[] };
  hostname: {
    valid: Pair[];
    invalid: string[];
    trailingDotOnly: string[];
    numericLastLabelOnly: string[];
  };
  cidr: { canonical: Pair[]; hostBits: Pair[]; invalid: string[] };
  endpoint: { canonical: [string, string, boolean][]; invalid: string[] };
}
const vectors: Vectors = JSON.parse(
  await Deno.readTextFile(new URL("../vectors/net/address.json", import.meta.url)),
);

function assertFault(fn: () => unknown, code: NetFault, input: unknown): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof NetError, `${JSON.stringify(input)}: expected NetError, got ${e}`);
    assert.ok(e instanceof PharosError);
    assert.equal(e.code, code, `${JSON.stringify(input)}: ${e.message}`);
    if (typeof input === "string") assert.ok(e.message.includes(JSON.stringify(input)));
    return true;
  });
}

/** mulberry32, so every generated case can be replayed. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** A random IPv6 address (zero runs likely) and a random legal spelling of it. */
function randomIpv6(int: (n: number) => number): { words: number[]; text: string } {
  const words = Array.from({ length: 8 }, () => (int(3) === 0 ? int(0x10000) : 0));
  if (int(4) === 0) words.splice(0, 6, 0, 0, 0, 0, 0, 0xffff);
  const hex = words.map((w) => {
    const h = w.toString(16).padStart(int(2) === 0 ? 4 : 1, "0");
    return int(2) === 0 ? h.toUpperCase() : h;
  });
  let text = hex.join(":");
  const start = int(8);
  const len = int(9 - start);
  if (len > 0 && words.slice(start, start + len).every((w) => w === 0)) {
    text = `${hex.slice(0, start).join(":")}::${hex.slice(start + len).join(":")}`;
  }
  return { words, text };
}

Deno.test("net: IPv4 dotted quads parse to their octets and back", () => {
  const int = rng(4);
  for (let i = 0; i < 2000; i++) {
    const octets = [int(256), int(256), int(256), int(256)];
    const text = octets.join(".");
    assert.ok(isIpv4(text), text);
    const ip = parseIp(text);
    assert.equal(ip.family, 4);
    assert.deepEqual([...ip.bytes], octets);
    assert.equal(formatIp(ip), text);
    const padded = octets.map((o, k) => (k === i % 4 ? `0${o}` : `${o}`)).join(".");
    assert.equal(isIpv4(padded), false, `leading zero accepted: ${padded}`);
  }
});

Deno.test("net: IP vectors: canonical forms (RFC 5952) and rejections", () => {
  for (const [input, want] of vectors.ip.canonical) {
    const ip = parseIp(input);
    assert.equal(formatIp(ip), want, input);
    assert.equal(formatIp(parseIp(want)), want, `${want} is not a fixed point`);
    assert.equal(isIpv4(input), ip.family === 4, input);
    assert.equal(isIpv6(input), ip.family === 6, input);
  }
  for (const [input, want] of vectors.ip.hexMapped) {
    assert.equal(formatIp(parseIp(input), { hexMapped: true }), want, input);
  }
  for (const bad of vectors.ip.invalid) {
    assert.equal(isIpv4(bad) || isIpv6(bad), false, JSON.stringify(bad));
    assertFault(() => parseIp(bad), "bad-ip", bad);
  }
});

Deno.test("net: IPv6 canonical form agrees with the WHATWG URL parser", () => {
  const int = rng(6);
  for (let i = 0; i < 3000; i++) {
    const { words, text } = randomIpv6(int);
    const ip = parseIp(text);
    assert.equal(ip.family, 6, text);
    const got = Array.from({ length: 8 }, (_, k) => (ip.bytes[2 * k] << 8) | ip.bytes[2 * k + 1]);
    assert.deepEqual(got, words, text);
    const whatwg = new URL(`http://[${text}]/`).hostname.slice(1, -1);
    assert.equal(formatIp(ip, { hexMapped: true }), whatwg, text);
    const canonical = formatIp(ip);
    assert.equal(formatIp(parseIp(canonical)), canonical, text);
    assert.ok(canonical.length <= 39 && canonical === canonical.toLowerCase(), canonical);
  }
});

Deno.test("net: host names: LDH labels, lower-cased; trailing dot and numeric TLD only on request", () => {
  for (const [input, want] of vectors.hostname.valid) {
    assert.ok(isHostname(input), input);
    assert.equal(parseHostname(input), want);
  }
  const label63 = "a".repeat(63);
  assert.equal(parseHostname(`${label63}.com`), `${label63}.com`);
  assert.equal(isHostname(`${"a".repeat(64)}.com`), false);
  const longest = `${"a.".repeat(125)}com`;
  assert.equal(longest.length, 253);
  assert.ok(isHostname(longest));
  assert.equal(isHostname(`a${longest}`), false);
  for (const bad of vectors.hostname.invalid) {
    assert.equal(isHostname(bad), false, JSON.stringify(bad));
    assertFault(() => parseHostname(bad), "bad-hostname", bad);
  }
  for (const name of vectors.hostname.trailingDotOnly) {
    assert.equal(isHostname(name), false, name);
    assert.ok(isHostname(name, { trailingDot: true }), name);
    assert.equal(parseHostname(name.toUpperCase(), { trailingDot: true }), name);
  }
  assert.equal(isHostname("a..", { trailingDot: true }), false);
  for (const name of vectors.hostname.numericLastLabelOnly) {
    assert.equal(isHostname(name), false, name);
    assert.ok(isHostname(name, { numericLastLabel: true }), name);
  }
});

Deno.test("net: parseHost: the characters choose the grammar, each with its fault", () => {
  assert.deepEqual(parseHost("Example.COM"), { kind: "name", name: "example.com" });
  assert.equal(formatHost(parseHost("2001:DB8::0:1")), "2001:db8::1");
  assert.equal(formatHost(parseHost("192.0.2.1")), "192.0.2.1");
  assert.equal(formatHost(parseHost("::ffff:192.0.2.1"), { hexMapped: true }), "::ffff:c000:201");
  const faults: [string, NetFault][] = [
    ["1.2.3.999", "bad-ipv4"],
    ["1.2.3", "bad-ipv4"],
    ["1.2.3.4.", "bad-ipv4"],
    ["fe80::1%eth0", "bad-ipv6"],
    ["1:2", "bad-ipv6"],
    ["[::1]", "bad-ipv6"],
    ["a_b", "bad-hostname"],
    ["a b", "bad-hostname"],
    ["", "bad-hostname"],
    ["a.123", "bad-hostname"],
  ];
  for (const [input, code] of faults) {
    assertFault(() => parseHost(input), code, input);
    assert.equal(isHost(input), false, input);
  }
  assert.ok(isHost("a.123.", { trailingDot: true, numericLastLabel: true }));
  assert.equal(isHost("1.2.3.4.", { trailingDot: true, numericLastLabel: true }), false);
});

Deno.test("net: CIDR: canonical prefixes, host bits only when allowed", () => {
  for (const [input, want] of vectors.cidr.canonical) {
    assert.equal(formatCidr(parseCidr(input)), want, input);
    assert.ok(isCidr(input), input);
  }
  for (const [input, want] of vectors.cidr.hostBits) {
    assertFault(() => parseCidr(input), "bad-cidr", input);
    assert.equal(isCidr(input), false, input);
    assert.equal(formatCidr(parseCidr(input, { allowHostBits: true })), want, input);
  }
  for (const bad of vectors.cidr.invalid) {
    assertFault(() => parseCidr(bad, { allowHostBits: true }), "bad-cidr", bad);
    assert.equal(isCidr(bad, { allowHostBits: true }), false, JSON.stringify(bad));
  }
});

Deno.test("net: CIDR host-bit check matches the mask arithmetic", () => {
  const int = rng(9);
  for (let i = 0; i < 3000; i++) {
    // Half the time a single set bit, so that one stray host bit is tried.
    const value = int(2) === 0 ? 2 ** int(32) : (int(0x10000) * 0x10000 + int(0x10000)) >>> 0;
    const prefix = int(33);
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    const text = [24, 16, 8, 0].map((s) => (value >>> s) & 0xff).join(".") + `/${prefix}`;
    assert.equal(isCidr(text), ((value & ~mask) >>> 0) === 0, text);
    assert.ok(isCidr(text, { allowHostBits: true }), text);
  }
  for (let prefix = 0; prefix <= 128; prefix++) {
    const address = formatIp({ family: 6, bytes: new Uint8Array(16).fill(0xff) });
    assert.equal(isCidr(`${address}/${prefix}`), prefix === 128, `/${prefix}`);
  }
});

Deno.test("net: endpoints: IPv4, bracketed IPv6, names on request", () => {
  for (const [input, want, allowHostname] of vectors.endpoint.canonical) {
    const endpoint = parseEndpoint(input, { allowHostname });
    assert.equal(formatEndpoint(endpoint), want, input);
    assert.equal(formatEndpoint(parseEndpoint(want, { allowHostname })), want);
    if (!allowHostname) continue;
    assertFault(() => parseEndpoint(input), "bad-endpoint", input);
  }
  for (const bad of vectors.endpoint.invalid) {
    assertFault(() => parseEndpoint(bad, { allowHostname: true }), "bad-endpoint", bad);
  }
  assert.equal(
    parseEndpoint("a.example.:443", { allowHostname: true, trailingDot: true }).port,
    443,
  );
  assert.deepEqual(parseEndpoint("A.1:2", { allowHostname: true, numericLastLabel: true }).host, {
    kind: "name",
    name: "a.1",
  });
  const int = rng(12);
  for (let i = 0; i < 500; i++) {
    const port = 1 + int(65535);
    const { text } = randomIpv6(int);
    const endpoint = parseEndpoint(joinHostPort(text, port));
    assert.equal(endpoint.port, port);
    assert.equal(formatEndpoint(endpoint), `[${formatIp(parseIp(text))}]:${port}`);
  }
});

Deno.test("net: joinHostPort brackets exactly the hosts with a colon", () => {
  const hosts = ["192.0.2.1", "example.com", "::1", "2001:db8::1", "::ffff:192.0.2.1"];
  for (const host of hosts) {
    const joined = joinHostPort(host, 8443);
    assert.equal(joined.startsWith("["), host.includes(":"), joined);
    assert.equal(joined.slice(joined.lastIndexOf(":") + 1), "8443");
  }
});

Deno.test("net: injection characters, whitespace, zone ids never pass any parser", () => {
  const seeds = ["192.0.2.1", "2001:db8::1", "example.com", "10.0.0.0/8", "192.0.2.1:443"];
  const hostile = ["\n", "\r", "\t", " ", "\u0000", ";", "$", "`", "'", '"', "%", "&", "|", "#"];
  for (const seed of seeds) {
    for (const ch of hostile) {
      for (const text of [seed + ch, ch + seed, seed.slice(0, 3) + ch + seed.slice(3)]) {
        const where = JSON.stringify(text);
        assert.equal(isIpv4(text) || isIpv6(text), false, where);
        assert.equal(isHostname(text, { trailingDot: true, numericLastLabel: true }), false, where);
        assert.equal(isHost(text, { trailingDot: true, numericLastLabel: true }), false, where);
        assert.equal(isCidr(text, { allowHostBits: true }), false, where);
        assertFault(() => parseEndpoint(text, { allowHostname: true }), "bad-endpoint", text);
      }
    }
  }
});

Deno.test("net: non-strings are a typed not-a-string fault; predicates say false", () => {
  for (const value of [undefined, null, 42, {}, ["1.2.3.4"], new Uint8Array(4)]) {
    assertFault(() => parseIp(value), "not-a-string", value);
    assertFault(() => parseCidr(value), "not-a-string", value);
    assertFault(() => parseHostname(value), "not-a-string", value);
    assertFault(() => parseHost(value), "not-a-string", value);
    assertFault(() => parseEndpoint(value), "not-a-string", value);
    const text = value as unknown as string;
    assert.equal(isIpv4(text) || isIpv6(text) || isHostname(text) || isHost(text), false);
    assert.equal(isCidr(text), false);
  }
});

Deno.test("net: random input yields a result or a NetError, nothing else", () => {
  const alphabet = "0123456789abcdefABCDEFxyz:.[]/-_ %\n\t\u00e9@";
  const int = rng(15);
  let accepted = 0;
  for (let i = 0; i < 4000; i++) {
    let text = "";
    const n = int(30);
    for (let k = 0; k < n; k++) text += alphabet[int(alphabet.length)];
    const parsers = [
      () => parseIp(text),
      () => parseCidr(text, { allowHostBits: true }),
      () => parseHostname(text),
      () => parseHost(text),
      () => parseEndpoint(text, { allowHostname: true }),
    ];
    for (const parse of parsers) {
      try {
        parse();
        accepted++;
      } catch (e) {
        assert.ok(e instanceof NetError, `${JSON.stringify(text)}: ${e}`);
      }
    }
  }
  assert.ok(accepted > 0, "the generator never produced a valid input");
});
