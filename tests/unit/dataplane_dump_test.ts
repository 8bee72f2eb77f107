import assert from "node:assert/strict";
import { formatWgDump, parseWgDump } from "../../core/dataplane/mod.ts";
import { assertRejects, fakeKey, readVector } from "./dataplane_golden.ts";

Deno.test("dump: the wg sample parses field by field", () => {
  const dump = parseWgDump(readVector("wg_dump.txt"));
  assert.deepEqual(dump.interface, {
    privateKey: fakeKey(17),
    publicKey: fakeKey(18),
    listenPort: 443,
    awgFields: [],
    fwmark: null,
  });
  assert.equal(dump.peers.length, 3);
  const [a, b, c] = dump.peers;
  assert.equal(a.publicKey, fakeKey(33));
  assert.equal(a.presharedKey, fakeKey(49));
  assert.equal(a.endpoint, "203.0.113.50:51234");
  assert.deepEqual(a.allowedIps, ["10.0.0.3/32", "fd00::3/128"]);
  assert.equal(a.latestHandshake, 1718000000);
  assert.equal(a.rxBytes, 123456n);
  assert.equal(a.txBytes, 654321n);
  assert.equal(a.persistentKeepalive, null);
  assert.equal(b.presharedKey, null);
  assert.equal(b.endpoint, "[2001:db8::5]:40000");
  assert.equal(b.persistentKeepalive, 25);
  assert.equal(c.endpoint, null);
  assert.deepEqual(c.allowedIps, []);
  assert.equal(c.rxBytes, (1n << 64n) - 1n);
  assert.equal(c.txBytes, 9007199254740993n); // beyond Number precision: kept exact
});

Deno.test("dump: awg interface line keeps the AmneziaWG columns and hex fwmark", () => {
  const dump = parseWgDump(readVector("awg_dump.txt"));
  assert.equal(dump.interface.privateKey, null);
  assert.equal(dump.interface.listenPort, 0);
  assert.deepEqual(dump.interface.awgFields, [
    "4",
    "40",
    "800",
    "52",
    "83",
    "1234567891",
    "987654321",
    "555555555",
    "123456789",
  ]);
  assert.equal(dump.interface.fwmark, 0x1bbc);
  assert.equal(dump.peers[0].allowedIps[0], "0.0.0.0/0");
});

Deno.test("dump: round trip text → parse → format → same text and same parse", () => {
  for (const name of ["wg_dump.txt", "awg_dump.txt"]) {
    const text = readVector(name);
    const parsed = parseWgDump(text);
    assert.equal(formatWgDump(parsed), text);
    assert.deepEqual(parseWgDump(formatWgDump(parsed)), parsed);
  }
  const noPeers = parseWgDump(`(none)\t(none)\t0\toff`);
  assert.deepEqual(noPeers.peers, []);
  assert.equal(formatWgDump(noPeers), "(none)\t(none)\t0\toff\n");
});

Deno.test("dump: malformed lines are typed errors naming line and column", () => {
  const text = readVector("wg_dump.txt");
  const [head, peer] = text.split("\n");
  const cols = peer.split("\t");
  const withPeer = (i: number, v: string) =>
    `${head}\n${cols.map((c, j) => (j === i ? v : c)).join("\t")}\n`;
  const cases: [string, string][] = [
    ["", "dump line 1"],
    ["\n", "dump line 1"],
    [`${head.split("\t").slice(0, 3).join("\t")}\n`, "dump line 1"],
    [head.replace("off", "0xZZ"), "dump line 1 fwmark"],
    [head.replace("\t443\t", "\t70000\t"), "dump line 1 listen port"],
    [head.replace(fakeKey(17), "garbage"), "dump line 1 private key"],
    [`${head}\n${cols.slice(0, 7).join("\t")}`, "dump line 2"],
    [`${head}\n${cols.join("\t")}\textra`, "dump line 2"],
    [withPeer(0, "(none)"), "dump line 2 public key"],
    [withPeer(1, fakeKey(1).slice(0, 43)), "dump line 2 preshared key"],
    [withPeer(2, "2001:db8::1:443"), "dump line 2 endpoint"],
    [withPeer(3, "10.0.0.3/32, fd00::3/128"), "dump line 2 allowed ip 2"],
    [withPeer(3, "10.0.0.3/33"), "dump line 2 allowed ip 1"],
    [withPeer(4, "-1"), "dump line 2 latest handshake"],
    [withPeer(4, "1.5"), "dump line 2 latest handshake"],
    [withPeer(5, "18446744073709551616"), "dump line 2 rx bytes"],
    [withPeer(6, "0x10"), "dump line 2 tx bytes"],
    [withPeer(7, "on"), "dump line 2 persistent keepalive"],
    [`${head}\r\n${peer}`, "dump line 1 fwmark"],
    [`${head}\n\n${peer}`, "dump line 2"],
  ];
  for (const [bad, field] of cases) assertRejects(() => parseWgDump(bad), "bad-dump", field);
  assertRejects(() => parseWgDump(undefined as unknown as string), "bad-dump", "dump");
});
