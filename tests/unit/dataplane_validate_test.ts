import assert from "node:assert/strict";
import {
  canonicalCidr,
  canonicalEndpoint,
  canonicalHost,
  checkClientInterface,
  checkInnerInterface,
  checkKeepalive,
  checkLinuxInterface,
  checkMark,
  checkMtu,
  checkPort,
  checkTable,
  checkWgKey,
  formatIp,
  parseHostname,
  parseIp,
  wgKeyFromHex,
  wgKeyToHex,
} from "../../core/dataplane/mod.ts";
import { assertRejects, fakeKey } from "./dataplane_golden.ts";

Deno.test("wg key: canonical 32-byte base64 accepted, hex round trip", () => {
  for (let fill = 0; fill < 256; fill += 17) {
    const key = fakeKey(fill);
    assert.equal(checkWgKey(key, "k"), key);
    const hex = wgKeyToHex(key, "k");
    assert.equal(hex, new Uint8Array(32).fill(fill).toHex());
    assert.equal(wgKeyFromHex(hex, "k"), key);
  }
});

Deno.test("wg key: everything else is rejected, naming the field", () => {
  const good = fakeKey(7);
  const bad: unknown[] = [
    good.slice(0, 43), // no padding
    good + "\n", // trailing newline
    good.slice(0, 20) + "\n" + good.slice(21), // newline inside
    good.slice(0, 43) + "\n", // newline instead of '='
    good + " ", // trailing space
    " " + good.slice(1),
    new Uint8Array(33).toBase64(),
    new Uint8Array(31).toBase64(),
    good.replace(/^./, "-"), // base64url alphabet
    good.slice(0, 42) + "B=", // non-zero trailing bits
    "",
    42,
    null,
    undefined,
    { key: good },
    good + "\nPostUp = rm -rf /",
  ];
  for (const value of bad) {
    assertRejects(() => checkWgKey(value, "peers[0].publicKey"), "bad-key", "peers[0].publicKey");
  }
  assertRejects(() => wgKeyFromHex("AB".repeat(32), "k"), "bad-key", "k");
  assertRejects(() => wgKeyFromHex("ab".repeat(31), "k"), "bad-key", "k");
});

Deno.test("interface names: client, inner link and Linux patterns", () => {
  for (const ok of ["awg0", "awg1", "awg42", "awg999", "awg00"]) {
    assert.equal(checkClientInterface(ok, "i"), ok);
  }
  for (const ok of ["awg1", "awg10", "awg999"]) assert.equal(checkInnerInterface(ok, "i"), ok);
  for (const ok of ["eth0", "ens3", "enp0s31f6", "ens3.100", "br_lan", "wlan-1"]) {
    assert.equal(checkLinuxInterface(ok, "e"), ok);
  }
  const clientBad = [
    "awg",
    "awg1000",
    "AWG0",
    "wg0",
    "awg0; rm -rf /",
    "../awg0",
    "awg0\n",
    " awg0",
    "awg-1",
    0,
    null,
  ];
  for (const bad of clientBad) {
    assertRejects(() => checkClientInterface(bad, "iface"), "bad-interface", "iface");
  }
  const innerBad = [
    "awg0",
    "awg01",
    "awg1000",
    "awg1 ",
    "awg1;reboot",
    "../../etc/passwd",
    "awg1/x",
    "",
  ];
  for (const bad of innerBad) {
    assertRejects(() => checkInnerInterface(bad, "inner"), "bad-interface", "inner");
  }
  const linuxBad = [
    "",
    ".",
    "..",
    "a/b",
    "x".repeat(16),
    "eth0 ",
    "-eth0",
    "-j",
    "eth0\n",
    "eth0;ls",
    "$(id)",
  ];
  for (const bad of linuxBad) {
    assertRejects(() => checkLinuxInterface(bad, "egress"), "bad-interface", "egress");
  }
});

Deno.test("numbers: ports, MTU, marks, tables, keepalive are range-checked", () => {
  assert.equal(checkPort(1, "p"), 1);
  assert.equal(checkPort(65535, "p"), 65535);
  assert.equal(checkMtu(1280, "m"), 1280);
  assert.equal(checkMark(0xffffffff, "m"), 0xffffffff);
  assert.equal(checkTable(7100, "t"), 7100);
  assert.equal(checkKeepalive(25, "k"), 25);
  const cases: [(v: unknown, f: string) => number, unknown[]][] = [
    [checkPort, [0, 65536, 1.5, "443", NaN, Infinity, -1, null]],
    [checkMtu, [1279, 9001, "1420", 1420.5]],
    [checkMark, [0, 0x100000000, -5, "7100"]],
    [checkTable, [0, 253, 254, 255, 0x100000000, "7100"]],
    [checkKeepalive, [0, 65536, "25"]],
  ];
  for (const [fn, values] of cases) {
    for (const v of values) assertRejects(() => fn(v, "field.x"), "out-of-range", "field.x");
  }
});

Deno.test("IP addresses: strict parsing and RFC 5952 output", () => {
  const canonical: [string, string][] = [
    ["192.0.2.1", "192.0.2.1"],
    ["2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"],
    ["2001:db8::0001", "2001:db8::1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["::1", "::1"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["1:0:0:2:0:0:3:4", "1::2:0:0:3:4"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["::FFFF:C000:0201", "::ffff:192.0.2.1"],
    ["FD00::3", "fd00::3"],
    ["1::", "1::"],
  ];
  for (const [input, want] of canonical) assert.equal(formatIp(parseIp(input, "ip")), want, input);
  const bad = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3.4 ",
    "1:2:3:4:5:6:7:8:9",
    "1::2::3",
    ":1::",
    "1:::2",
    "fe80::1%eth0",
    "12345::",
    "g::1",
    "1.2.3.4::",
    "::1.2.3.4:1",
    "1.2.3.4::1.2.3.4",
  ];
  for (const b of bad) assertRejects(() => parseIp(b, "ip"), "bad-ip", "ip");
});

Deno.test("CIDR: parsed and re-serialised; host bits, spaces and junk rejected", () => {
  const ok: [string, string][] = [
    ["10.0.0.0/8", "10.0.0.0/8"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["::/0", "::/0"],
    ["FD00:0:0::3/128", "fd00::3/128"],
    ["10.0.0.3/32", "10.0.0.3/32"],
  ];
  for (const [input, want] of ok) assert.equal(canonicalCidr(input, "c"), want);
  assert.equal(canonicalCidr("10.8.0.2/24", "a", { allowHostBits: true }), "10.8.0.2/24");
  const bad = [
    "10.0.0.3/32 ",
    " 10.0.0.0/8",
    "10.0.0.0",
    "10.0.0.0/33",
    "fd00::/129",
    "10.0.0.1/24",
    "010.0.0.0/8",
    "10.0.0.0/08",
    "10.0.0.0/-1",
    "1.2.3.4/32\n",
    "fe80::1%eth0/64",
    "10.0.0.0/8,10.1.0.0/16",
    "10.0.0.0/8\nPostUp = reboot",
    "0.0.0.0/0; rm -rf /",
    "",
  ];
  for (const b of bad) {
    assertRejects(() => canonicalCidr(b, "allowedIps[0]"), "bad-cidr", "allowedIps[0]");
  }
  assertRejects(() => canonicalCidr(5, "c"), "not-a-string", "c");
});

Deno.test("endpoints: IPv4, bracketed IPv6, strict host names", () => {
  const ok: [string, string, boolean][] = [
    ["1.2.3.4:443", "1.2.3.4:443", false],
    ["[2001:DB8::0:1]:51820", "[2001:db8::1]:51820", false],
    ["[::ffff:1.2.3.4]:443", "[::ffff:1.2.3.4]:443", false],
    ["VPN.Example.com:443", "vpn.example.com:443", true],
    ["localhost:1", "localhost:1", true],
  ];
  for (const [input, want, allowHostname] of ok) {
    assert.equal(canonicalEndpoint(input, "e", { allowHostname }), want);
  }
  const bad = [
    "2001:db8::1:443",
    "1.2.3.4:0",
    "1.2.3.4:65536",
    "1.2.3.4:0443",
    "1.2.3.4",
    "[::1]443",
    "[::1:443",
    "host_name:443",
    "-bad.com:443",
    "a..b:443",
    "1.2.3.256:443",
    "example.com.:443",
    "$(reboot):443",
    "1.2.3.4:443\nPostUp = x",
    "1.2.3.4:443 ",
    "[fe80::1%eth0]:443",
    "123.com.456:443",
    "",
  ];
  for (const b of bad) {
    assertRejects(
      () => canonicalEndpoint(b, "peers[0].endpoint", { allowHostname: true }),
      "bad-endpoint",
      "peers[0].endpoint",
    );
  }
  assertRejects(() => canonicalEndpoint("vpn.example.com:443", "e"), "bad-endpoint", "e");
});

Deno.test("host names and hosts", () => {
  assert.equal(parseHostname("WWW.Microsoft.com", "h"), "www.microsoft.com");
  assert.equal(canonicalHost("2001:DB8::1", "h"), "2001:db8::1");
  assert.equal(canonicalHost("203.0.113.7", "h"), "203.0.113.7");
  const label63 = "a".repeat(63);
  assert.equal(parseHostname(`${label63}.com`, "h"), `${label63}.com`);
  const bad = [
    "",
    `${"a".repeat(64)}.com`,
    `${"a.".repeat(127)}com`,
    "a b.com",
    "a_b.com",
    "x.",
    ".x",
    "1.2",
    "ex\nample.com",
    "../etc",
  ];
  for (const b of bad) assertRejects(() => parseHostname(b, "host"), "bad-hostname", "host");
  assertRejects(() => canonicalHost("1.2.3.999", "host"), "bad-ip", "host");
});
