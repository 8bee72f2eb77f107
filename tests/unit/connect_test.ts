import assert from "node:assert/strict";
import {
  ConnectError,
  encodeConnect,
  formatConnectTarget,
  MAX_CONNECT_LINE,
  parseConnectTarget,
  readConnectLine,
  splitConnectStream,
} from "../../core/connect/mod.ts";

interface Vectors {
  valid: { line: string; host: string; port: number; kind: string }[];
  invalid: { line: string; code: string }[];
}
const vectors: Vectors = JSON.parse(
  await Deno.readTextFile(new URL("../vectors/connect_lines.json", import.meta.url)),
);
const utf8 = (s: string) => new TextEncoder().encode(s);
const isCode = (code: string) => (e: unknown) => e instanceof ConnectError && e.code === code;

/** A readable that yields `bytes` cut into the given chunk sizes (cycled). */
function chunked(bytes: Uint8Array, sizes: number[], end = true): ReadableStream<Uint8Array> {
  let off = 0;
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (off >= bytes.length) {
        if (end) c.close();
        return;
      }
      const n = Math.max(1, sizes[i++ % sizes.length]);
      c.enqueue(bytes.slice(off, off + n));
      off += n;
    },
  });
}

async function drain(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: number[] = [];
  for await (const c of readable) parts.push(...c);
  return new Uint8Array(parts);
}

Deno.test("connect: valid vector lines parse to host, port and kind, and format back", () => {
  for (const v of vectors.valid) {
    const t = parseConnectTarget(v.line);
    assert.deepEqual(t, { host: v.host, port: v.port, kind: v.kind }, v.line);
    assert.equal(formatConnectTarget(t.host, t.port), v.line);
    assert.deepEqual(encodeConnect(t.host, t.port), utf8(v.line + "\n"));
  }
});

Deno.test("connect: every malformed vector line gives its ConnectError code", async () => {
  for (const v of vectors.invalid) {
    assert.throws(() => parseConnectTarget(v.line), isCode(v.code), JSON.stringify(v.line));
    // The byte reader agrees (non-ASCII text arrives as UTF-8 bytes).
    const reader = chunked(utf8(v.line + "\n"), [3]).getReader();
    await assert.rejects(readConnectLine(reader), isCode(v.code), JSON.stringify(v.line));
  }
});

Deno.test("connect: the 255-byte limit is exact", async () => {
  const host = (n: number) =>
    Array.from({ length: Math.ceil(n / 62) }, () => "a".repeat(61)).join(".").slice(0, n);
  const fits = `${host(MAX_CONNECT_LINE - 6)}:65535`; // 249 + 6 = 255
  assert.equal(fits.length, MAX_CONNECT_LINE);
  const hostPart = fits.slice(0, fits.lastIndexOf(":"));
  if (hostPart.length > 253 || hostPart.endsWith(".")) {
    assert.fail("test host construction is wrong");
  }
  assert.equal(parseConnectTarget(fits).port, 65535);
  const r = await readConnectLine(chunked(utf8(fits + "\nX"), [100]).getReader());
  assert.equal(r.target.host, hostPart);
  assert.deepEqual(r.rest, utf8("X"));
  const tooLong = "b" + fits;
  assert.throws(() => parseConnectTarget(tooLong), isCode("too-long"));
  await assert.rejects(
    readConnectLine(chunked(utf8(tooLong + "\n"), [7]).getReader()),
    isCode("too-long"),
  );
  // Without a newline the reader gives up after 255 bytes without waiting for more input.
  const endless = chunked(utf8("c".repeat(300)), [64], false);
  await assert.rejects(readConnectLine(endless.getReader()), isCode("too-long"));
});

Deno.test("connect: input that ends before the newline is refused", async () => {
  for (const text of ["", "host:22", "[::1]:2"]) {
    await assert.rejects(
      readConnectLine(chunked(utf8(text), [2]).getReader()),
      isCode("no-newline"),
    );
  }
});

Deno.test("connect: bytes after the newline are the payload, whatever the chunking", async () => {
  const line = utf8("[2001:db8::7]:7443\n");
  const payload = crypto.getRandomValues(new Uint8Array(1000));
  const all = new Uint8Array([...line, ...payload]);
  for (
    const sizes of [
      [1],
      [2, 3],
      [line.length - 1],
      [line.length],
      [line.length + 1],
      [all.length],
      [5, 400],
    ]
  ) {
    const { target, payload: rest } = await splitConnectStream(chunked(all, sizes));
    assert.deepEqual(target, { host: "2001:db8::7", port: 7443, kind: "ipv6" });
    assert.deepEqual(await drain(rest), payload, `chunk sizes ${sizes}`);
  }
  // readConnectLine with a reader the caller keeps: rest + later reads = payload.
  const reader = chunked(all, [line.length + 10, 50]).getReader();
  const { rest } = await readConnectLine(reader);
  const more: number[] = [...rest];
  for (let i = 0; i < 1000; i++) {
    const r = await reader.read();
    if (r.done) break;
    more.push(...r.value);
  }
  assert.deepEqual(new Uint8Array(more), payload);
});

Deno.test("connect: splitConnectStream cancels the source on a malformed line", async () => {
  let cancelled: unknown = null;
  const source = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(utf8("bad host:22\n"));
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  await assert.rejects(splitConnectStream(source), isCode("bad-character"));
  assert.ok(isCode("bad-character")(cancelled));
});

Deno.test("connect: encodeConnect brackets IPv6 and validates its arguments", () => {
  assert.deepEqual(encodeConnect("::1", 22), utf8("[::1]:22\n"));
  assert.deepEqual(encodeConnect("[::1]", 22), utf8("[::1]:22\n"));
  assert.deepEqual(encodeConnect("10.1.2.3", 7443), utf8("10.1.2.3:7443\n"));
  const bad: [unknown, unknown, string][] = [
    ["", 22, "empty-host"],
    ["host", 0, "port-out-of-range"],
    ["host", 65536, "port-out-of-range"],
    ["host", 22.5, "bad-port"],
    ["host", NaN, "bad-port"],
    ["host", "22", "bad-port"],
    [42, 22, "bad-argument"],
    ["a b", 22, "bad-character"],
    ["host\n", 22, "bad-character"],
    ["::g", 22, "bad-ipv6"],
    ["[[::1]]", 22, "bad-brackets"],
    ["x".repeat(300), 22, "too-long"],
  ];
  for (const [host, port, code] of bad) {
    assert.throws(
      () => encodeConnect(host as string, port as number),
      isCode(code),
      `${host}:${port}`,
    );
  }
  assert.throws(() => parseConnectTarget(7 as unknown as string), isCode("bad-argument"));
});
