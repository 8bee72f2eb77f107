/**
 * Issue 9 §3: the profile reader accepts what the original Go controller
 * writes — cascade MTUs below 1280, `null` for every empty list, and one
 * unusable `profiles[]` entry skipped (with its reason) instead of failing
 * the whole document. Vectors: tests/vectors/profile/go_controller/.
 */
import assert from "node:assert/strict";
import { originalCascadeMtu } from "../../core/dataplane/mod.ts";
import { PharosError } from "../../core/errors.ts";
import {
  amneziaConfigText,
  decodeProfileDocument,
  encodeProfileDocument,
  knownProtocols,
  MAX_PROFILE_BYTES,
  MAX_PROFILES,
  parseProfileDocument,
  type ProfileDocument,
  ProfileError,
  ProfileFieldError,
  type ProfileReadResult,
  readPharos,
  readProfileDocument,
  readProfileFile,
  readProfilePayload,
  type SkippedProfile,
} from "../../core/profile/mod.ts";
import {
  type Json,
  loadVector,
  mutateJson,
  mutateText,
  prng,
  SAMPLE_PROFILE_TEXT,
} from "./seal_support.ts";

const DIR = "profile/go_controller";
const vectorText = (name: string) =>
  Deno.readTextFileSync(new URL(`../vectors/${DIR}/${name}`, import.meta.url));

interface Expected {
  fleet_id: string;
  revision: number;
  profiles: { id: string; name: string; mtu: number; hops: number }[];
  skipped: Omit<SkippedProfile, "reason">[];
}
const vectors = loadVector<{ null_lists: string[]; expected: Record<string, Expected> }>(
  `${DIR}/expected.json`,
);

/** The payload object of an enc-none `.pharos` vector. */
const payloadOf = (name: string): Json => JSON.parse(vectorText(name)).payload;
const sample = (): Json => JSON.parse(SAMPLE_PROFILE_TEXT);

async function expectCode(fn: () => unknown, code: string, path?: string): Promise<PharosError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof PharosError, `expected a PharosError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (path !== undefined) {
      assert.ok(e instanceof ProfileFieldError, `${e}`);
      assert.equal(e.path, path);
    }
    return e;
  }
  assert.fail(`expected ${code}, nothing thrown`);
}

/** The value at a path like `profiles[0].nodes[1].endpoints` (undefined when a step is missing). */
function at(value: unknown, path: string): unknown {
  let v = value as Json;
  for (const step of path.match(/[^.[\]]+/g)!) v = v?.[/^\d+$/.test(step) ? Number(step) : step];
  return v;
}

function checkAgainst(result: ProfileReadResult, exp: Expected): void {
  const { document, skipped } = result;
  assert.equal(document.fleet_id, exp.fleet_id);
  assert.equal(document.revision, exp.revision);
  assert.deepEqual(
    document.profiles.map((p) => ({
      id: p.id,
      name: p.name,
      mtu: p.mtu,
      hops: p.path?.hops.length,
    })),
    exp.profiles,
  );
  assert.deepEqual(skipped.map(({ reason: _, ...rest }) => rest), exp.skipped);
  for (const s of skipped) assert.ok(s.reason.startsWith(`${s.path}: `), s.reason);
}

/** A valid one-profile document built from the sample's first node. */
function oneProfile(): Json {
  const d = sample();
  d.profiles[0].nodes = d.profiles[0].nodes.slice(0, 1);
  return d;
}

/** `base` with `profiles` = [good, bad, good], the middle one built by `mutate`. */
function withBrokenMiddle(mutate: (entry: Json) => Json | void): Json {
  const d = oneProfile();
  const good = d.profiles[0];
  const bad = structuredClone(good);
  bad.id = "pspec_bad";
  bad.name = "Bad one";
  const replaced = mutate(bad);
  d.profiles = [
    { ...good, id: "pspec_a" },
    replaced === undefined ? bad : replaced,
    { ...good, id: "pspec_c" },
  ];
  return d;
}

// ------------------------------------------------------------ Go vectors

Deno.test("go vectors: controller export and client store keep 3 profiles, skip the broken and the empty one", async () => {
  const exp = vectors.expected["controller_export.pharos"];
  for (const name of ["controller_export.pharos", "client_store.pharos"]) {
    const result = await readProfileFile(vectorText(name), {});
    checkAgainst(result, exp);
    // The same through the payload reader, from compact bytes as sealed by Go.
    const bytes = new TextEncoder().encode(JSON.stringify(payloadOf(name)));
    assert.deepEqual(readProfilePayload(bytes), result);
  }
});

Deno.test("go vectors: cascade MTUs are the original's 1420 − 80 × (hops − 1): 1260 and 1180", async () => {
  const { document } = await readProfileFile(vectorText("controller_export.pharos"), {});
  const cascades = document.profiles.filter((p) => (p.path?.hops.length ?? 0) > 1);
  assert.deepEqual(cascades.map((p) => p.mtu), [1260, 1180]);
  for (const p of cascades) assert.equal(p.mtu, originalCascadeMtu(p.path!.hops.length));
  assert.deepEqual(document.profiles[2].path!.hops.map((h) => h.role), [
    "entry",
    "mid",
    "mid",
    "exit",
  ]);
  // The exporter renders them (no IPv6 warning channel there: the caller passes the MTU).
  for (const p of cascades) {
    assert.ok(amneziaConfigText(p.nodes[0], { mtu: p.mtu }).includes(`\nMTU = ${p.mtu}\n`));
  }
});

Deno.test("go vectors: every null list reads as an empty list (required) or as absent (optional)", async () => {
  const raw = payloadOf("controller_export.pharos");
  const { document } = await readProfileFile(vectorText("controller_export.pharos"), {});
  const byId = new Map(document.profiles.map((p) => [p.id, p]));
  for (const path of vectors.null_lists) {
    assert.equal(at(raw, path), null, `${path} is null in the vector`);
    const index = Number(/^profiles\[(\d+)\]/.exec(path)![1]);
    const kept = byId.get(raw.profiles[index].id);
    if (!kept) continue; // profiles[4] is skipped (no nodes)
    const read = at({ profiles: { [index]: kept } }, path);
    const optional = /params\.(endpoints|allowed_ips)$/.test(path);
    assert.deepEqual(read, optional ? undefined : [], path);
  }
  // Written back, required lists are arrays again and nothing is skipped.
  const again = readProfilePayload(encodeProfileDocument(document));
  assert.deepEqual(again, { document, skipped: [] });
  assert.deepEqual(decodeProfileDocument(encodeProfileDocument(document)), document);
});

Deno.test('go vectors: "profiles": null is a document with no profiles, not an error', async () => {
  const result = await readProfileFile(vectorText("no_profiles.pharos"), {});
  checkAgainst(result, vectors.expected["no_profiles.pharos"]);
  assert.deepEqual(decodeProfileDocument(JSON.stringify(payloadOf("no_profiles.pharos"))), {
    ...result.document,
  });
});

Deno.test("go vectors: the strict reader reports the first unusable entry", async () => {
  await expectCode(
    () => parseProfileDocument(payloadOf("controller_export.pharos")),
    "invalid-field",
    "profiles[2].nodes[0].protocols[0].params.public_key",
  );
  const d = payloadOf("controller_export.pharos");
  d.profiles.splice(2, 1);
  await expectCode(() => parseProfileDocument(d), "no-usable-node", "profiles[3].nodes");
});

// ------------------------------------------------------------ null lists

Deno.test("null lists: every list field of the §4.6 schema reads null", () => {
  const awgParams = "profiles[0].nodes[0].protocols[0].params";
  const xrayParams = "profiles[0].nodes[0].protocols[1].params";
  const cases: [string, (d: Json) => void, (doc: ProfileDocument) => unknown, unknown][] = [
    [
      "node endpoints",
      (d) => (d.profiles[0].nodes[0].endpoints = null),
      (doc) => doc.profiles[0].nodes[0].endpoints,
      [],
    ],
    [
      "node protocols",
      (d) => (d.profiles[0].nodes[1].protocols = null),
      (doc) => doc.profiles[0].nodes[1].protocols,
      [],
    ],
    ["path hops", (d) => (d.profiles[0].path.hops = null), (doc) => doc.profiles[0].path?.hops, []],
    [
      "hop ips",
      (d) => (d.profiles[0].path.hops[1].ips = null),
      (doc) => doc.profiles[0].path?.hops[1].ips,
      [],
    ],
    [
      "awg endpoint pool",
      (d) => (at(d, awgParams) as Json).endpoints = null,
      (doc) => at(doc, `${awgParams}.endpoints`),
      undefined,
    ],
    [
      "awg allowed_ips",
      (d) => (at(d, awgParams) as Json).allowed_ips = null,
      (doc) => at(doc, `${awgParams}.allowed_ips`),
      undefined,
    ],
    [
      "xray endpoint pool",
      (d) => (at(d, xrayParams) as Json).endpoints = null,
      (doc) => at(doc, `${xrayParams}.endpoints`),
      undefined,
    ],
    [
      "xray allowed_ips",
      (d) => (at(d, xrayParams) as Json).allowed_ips = null,
      (doc) => at(doc, `${xrayParams}.allowed_ips`),
      undefined,
    ],
    ["profiles", (d) => (d.profiles = null), (doc) => doc.profiles, []],
  ];
  for (const [what, mutate, pick, expected] of cases) {
    const d = sample();
    mutate(d);
    const { document, skipped } = readProfileDocument(d);
    assert.deepEqual(skipped, [], what);
    assert.deepEqual(pick(document), expected, what);
    // The strict reader agrees (nothing here makes an entry unusable).
    assert.deepEqual(parseProfileDocument(d), document, what);
  }
  // A profile whose nodes are null has nothing to dial: skipped, not an error.
  const d = withBrokenMiddle((e) => void (e.nodes = null));
  const { document, skipped } = readProfileDocument(d);
  assert.deepEqual(document.profiles.map((p) => p.id), ["pspec_a", "pspec_c"]);
  assert.deepEqual(skipped.map((s) => [s.index, s.path, s.code]), [
    [1, "profiles[1].nodes", "no-usable-node"],
  ]);
});

Deno.test("null: optional objects and fields may be null; an empty preshared_key means none", () => {
  const d = oneProfile();
  const p = d.profiles[0];
  Object.assign(p, { path: null, mtu: null, name: null, protocol: null });
  Object.assign(d, { control: null, issued_at: null, expires_at: null });
  p.nodes[0].protocols[0].params.rotation = null;
  p.nodes[0].protocols[0].params.preshared_key = "";
  const { document, skipped } = readProfileDocument(d);
  assert.deepEqual(skipped, []);
  const entry = document.profiles[0];
  assert.equal(entry.path ?? entry.mtu ?? entry.name ?? document.control, undefined);
  const awg = knownProtocols(entry.nodes[0])[0];
  assert.ok(awg.type === "amneziawg");
  assert.equal(awg.params.preshared_key, "");
  assert.equal(amneziaConfigText(entry.nodes[0]).includes("PresharedKey"), false);
});

// ------------------------------------------------------------ MTU

Deno.test("mtu: 0 and 576–65535 are accepted, cascade values included", () => {
  for (const mtu of [0, 576, 1180, 1260, 1279, 1280, 1340, 1420, 9000, 65535]) {
    const d = oneProfile();
    d.profiles[0].mtu = mtu;
    const { document, skipped } = readProfileDocument(d);
    assert.deepEqual(skipped, [], `mtu ${mtu}`);
    assert.equal(document.profiles[0].mtu, mtu);
  }
});

Deno.test("mtu: below 576, above 65535 or not an integer skips the entry with its reason", () => {
  for (const mtu of [575, 1, -1, -1420, 65536, 100000, 1.5, "1420", true, [1420], {}]) {
    const { document, skipped } = readProfileDocument(withBrokenMiddle((e) => void (e.mtu = mtu)));
    assert.deepEqual(document.profiles.map((p) => p.id), ["pspec_a", "pspec_c"], `mtu ${mtu}`);
    assert.equal(skipped.length, 1);
    const [s] = skipped;
    assert.deepEqual([s.index, s.id, s.name, s.path, s.code], [
      1,
      "pspec_bad",
      "Bad one",
      "profiles[1].mtu",
      "invalid-field",
    ]);
    assert.match(
      s.reason,
      /^profiles\[1\]\.mtu: must be 0 \(default 1420\) or an integer in 576-65535/,
    );
  }
});

// ------------------------------------------------------------ bad entries

Deno.test("bad entries: each kind is skipped with its reason, the others are kept", () => {
  const node0 = "profiles[1].nodes[0]";
  const cases: [string, (e: Json) => Json | void, string, string][] = [
    ["not an object", () => "pspec_bad", "profiles[1]", "invalid-field"],
    ["null entry", () => null, "profiles[1]", "invalid-field"],
    ["an array", () => [], "profiles[1]", "invalid-field"],
    ["missing id", (e) => void delete e.id, "profiles[1].id", "invalid-field"],
    ["empty id", (e) => void (e.id = ""), "profiles[1].id", "invalid-field"],
    ["nodes not a list", (e) => void (e.nodes = {}), "profiles[1].nodes", "invalid-field"],
    [
      "too many nodes",
      (e) => void (e.nodes = Array(257).fill(e.nodes[0])),
      "profiles[1].nodes",
      "invalid-field",
    ],
    ["no nodes", (e) => void (e.nodes = []), "profiles[1].nodes", "no-usable-node"],
    ["bad node id", (e) => void (e.nodes[0].id = 7), `${node0}.id`, "invalid-field"],
    [
      "node endpoint with a port",
      (e) => void (e.nodes[0].endpoints = ["203.0.113.1:443"]),
      `${node0}.endpoints[0]`,
      "invalid-field",
    ],
    [
      "key of the wrong length",
      (e) => void (e.nodes[0].protocols[0].params.public_key = "AAAA"),
      `${node0}.protocols[0].params.public_key`,
      "invalid-field",
    ],
    [
      "config injection in a template",
      (e) => void (e.nodes[0].protocols[0].params.obfuscation.i1 = "<b 0x01>\nPostUp = sh"),
      `${node0}.protocols[0].params.obfuscation.i1`,
      "invalid-field",
    ],
    [
      "missing obfuscation",
      (e) => void delete e.nodes[0].protocols[0].params.obfuscation,
      `${node0}.protocols[0].params.obfuscation`,
      "invalid-field",
    ],
    [
      "protocol entry not an object",
      (e) => void (e.nodes[0].protocols[0] = "amneziawg"),
      `${node0}.protocols[0]`,
      "invalid-field",
    ],
    [
      "only unknown protocols",
      (e) => void (e.nodes[0].protocols = [{ type: "hysteria2", v: 1, params: {} }]),
      "profiles[1].nodes",
      "no-usable-node",
    ],
    [
      "only an unknown version of a known protocol",
      (e) => void (e.nodes[0].protocols = [{ ...e.nodes[0].protocols[0], v: 3 }]),
      "profiles[1].nodes",
      "no-usable-node",
    ],
    [
      "no protocols",
      (e) => void (e.nodes[0].protocols = null),
      "profiles[1].nodes",
      "no-usable-node",
    ],
    [
      "unknown hop role",
      (e) => void (e.path.hops[0].role = "relay"),
      "profiles[1].path.hops[0].role",
      "invalid-field",
    ],
    [
      "too many hops",
      (e) => void (e.path.hops = Array(17).fill(e.path.hops[0])),
      "profiles[1].path.hops",
      "invalid-field",
    ],
    [
      "control character in the name",
      (e) => void (e.name = "a\nb"),
      "profiles[1].name",
      "invalid-field",
    ],
  ];
  for (const [what, mutate, path, code] of cases) {
    const { document, skipped } = readProfileDocument(withBrokenMiddle(mutate));
    assert.deepEqual(document.profiles.map((p) => p.id), ["pspec_a", "pspec_c"], what);
    assert.equal(skipped.length, 1, what);
    assert.equal(skipped[0].index, 1, what);
    assert.equal(skipped[0].path, path, what);
    assert.equal(skipped[0].code, code, what);
    assert.ok(skipped[0].reason.startsWith(`${path}: `), skipped[0].reason);
  }
});

Deno.test("bad entries: the reason names unknown protocols; id and name only when displayable", () => {
  const { skipped } = readProfileDocument(withBrokenMiddle((e) => {
    e.nodes[0].protocols = [{ type: "hysteria2", v: 1 }, { ...e.nodes[0].protocols[0], v: 3 }];
  }));
  assert.deepEqual(skipped, [{
    index: 1,
    id: "pspec_bad",
    name: "Bad one",
    path: "profiles[1].nodes",
    code: "no-usable-node",
    reason:
      'profiles[1].nodes: no node has a protocol this reader supports (found "hysteria2" v1, "amneziawg" v3)',
  }]);
  const badName = readProfileDocument(withBrokenMiddle((e) => void (e.name = "line\nbreak")));
  assert.deepEqual(badName.skipped.map((s) => [s.id, s.name, s.path]), [
    ["pspec_bad", undefined, "profiles[1].name"],
  ]);
  const noId = readProfileDocument(withBrokenMiddle(() => 42)).skipped[0];
  assert.deepEqual(Object.keys(noId), ["index", "path", "code", "reason"]);
});

Deno.test("bad entries: a node with only unknown protocols next to a usable one keeps the profile", () => {
  const d = sample();
  d.profiles[0].nodes[1].protocols = [{ type: "hysteria2", v: 1, params: {} }];
  const { document, skipped } = readProfileDocument(d);
  assert.deepEqual(skipped, []);
  assert.equal(document.profiles[0].nodes.length, 10);
  assert.deepEqual(knownProtocols(document.profiles[0].nodes[1]), []);
});

Deno.test("bad entries: a document whose every entry is unusable is returned with an empty list", () => {
  const d = withBrokenMiddle((e) => void (e.mtu = 1));
  d.profiles[0].nodes = null;
  d.profiles[2].id = "";
  const { document, skipped } = readProfileDocument(d);
  assert.deepEqual(document.profiles, []);
  assert.deepEqual(skipped.map((s) => [s.index, s.code, s.path]), [
    [0, "no-usable-node", "profiles[0].nodes"],
    [1, "invalid-field", "profiles[1].mtu"],
    [2, "invalid-field", "profiles[2].id"],
  ]);
  // Written back, only the (empty) usable list remains.
  assert.deepEqual(JSON.parse(encodeProfileDocument(document)).profiles, []);
});

Deno.test("unknown fields and protocols are still preserved by the lenient reader", () => {
  const { document, skipped } = readProfilePayload(SAMPLE_PROFILE_TEXT);
  assert.deepEqual(skipped, []);
  assert.deepEqual(document, decodeProfileDocument(SAMPLE_PROFILE_TEXT));
  assert.equal(
    JSON.stringify(JSON.parse(encodeProfileDocument(document))),
    JSON.stringify(sample()),
  );
});

// ------------------------------------------------------------ document-level errors

Deno.test("bad documents: still an error, with a clear code", async () => {
  await expectCode(() => readProfilePayload("{"), "not-json");
  await expectCode(() => readProfilePayload(new Uint8Array([0xc3, 0x28])), "not-json");
  await expectCode(() => readProfilePayload("[".repeat(MAX_PROFILE_BYTES + 1)), "input-too-large");
  for (const top of ["[]", "null", '"profiles"', "14", "true"]) {
    await expectCode(() => readProfilePayload(top), "wrong-format");
  }
  const fields: [string, (d: Json) => void][] = [
    ["profiles", (d) => void delete d.profiles],
    ["profiles", (d) => void (d.profiles = {})],
    ["profiles", (d) => void (d.profiles = "pspec_default")],
    ["profiles", (d) => void (d.profiles = Array(MAX_PROFILES + 1).fill(d.profiles[0]))],
    ["fleet_id", (d) => void delete d.fleet_id],
    ["revision", (d) => void (d.revision = "14")],
    ["revision", (d) => void (d.revision = -1)],
    ["issued_at", (d) => void (d.issued_at = "2025-06-03")],
    ["control.lat", (d) => void (d.control.lat = 91)],
  ];
  for (const [path, mutate] of fields) {
    const d = sample();
    mutate(d);
    await expectCode(() => readProfileDocument(d), "invalid-field", path);
  }
  // Envelope-level problems of a .pharos file are errors too.
  const file = JSON.parse(vectorText("client_store.pharos"));
  await expectCode(() => readProfileFile(JSON.stringify({ ...file, v: 2 }), {}), "unknown-version");
  await expectCode(
    () => readProfileFile(JSON.stringify({ ...file, v: "1" }), {}),
    "unknown-version",
  );
  await expectCode(
    () => readProfileFile(JSON.stringify({ ...file, fmt: "pharos-device" }), {}),
    "wrong-format",
  );
  await expectCode(
    () => readProfileFile(JSON.stringify({ ...file, payload: [file.payload] }), {}),
    "header-mismatch",
  );
});

Deno.test(".pharos: null kdf and nonce in a none envelope read as absent; password mode still needs them", async () => {
  const file = JSON.parse(vectorText("client_store.pharos"));
  const withNulls = JSON.stringify({ ...file, kdf: null, nonce: null });
  assert.equal(readPharos(withNulls).enc, "none");
  assert.equal((await readProfileFile(withNulls, {})).document.profiles.length, 3);
  await expectCode(() => readPharos(JSON.stringify({ ...file, kdf: {} })), "header-mismatch");
  await expectCode(
    () => readPharos(JSON.stringify({ ...file, enc: "password", kdf: null, payload: "AAAA" })),
    "header-mismatch",
  );
});

Deno.test("lenient fuzz: 2,000 mutations give a result whose kept entries are all valid, or a typed error", () => {
  const r = prng(0x9090);
  const baseText = JSON.stringify(payloadOf("controller_export.pharos"));
  const base = JSON.parse(baseText);
  let read = 0;
  let moreSkipped = 0;
  for (let i = 0; i < 2000; i++) {
    const input = i % 4 === 0 ? mutateText(baseText, r) : JSON.stringify(mutateJson(base, r));
    try {
      const { document, skipped } = readProfilePayload(input);
      if (skipped.length > 2) moreSkipped++;
      // What was kept passes the strict reader and survives a write/read.
      assert.deepEqual(decodeProfileDocument(encodeProfileDocument(document)), document);
      for (const s of skipped) assert.ok(s.reason.startsWith(`${s.path}: `), `case ${i}`);
      read++;
    } catch (e) {
      assert.ok(e instanceof ProfileError, `case ${i}: ${e}`);
    }
  }
  // Most mutations that are still read hit one entry, which is then skipped.
  assert.ok(read > 400 && moreSkipped > 50, `read=${read} moreSkipped=${moreSkipped}`);
});
