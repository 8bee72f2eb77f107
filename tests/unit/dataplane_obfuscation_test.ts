import assert from "node:assert/strict";
import {
  type AwgObfuscation,
  checkTemplate,
  generateObfuscation,
  GENERATOR_RANGES,
  NEUTRAL_OBFUSCATION,
  OBFUSCATION_LIMITS,
  OBFUSCATION_NUMBER_KEYS,
  OBFUSCATION_TEMPLATE_KEYS,
  obfuscationMessage,
  obfuscationsAlike,
  validateObfuscation,
} from "../../core/dataplane/mod.ts";
import { assertRejects, SAMPLE_OBFUSCATION } from "./dataplane_golden.ts";

const DRAWS = 10_000;

/** The §5.1 generator constraints, checked independently of the validator. */
function assertWithinGeneratorRanges(o: AwgObfuscation): void {
  const R = GENERATOR_RANGES;
  const within = (x: number, [lo, hi]: readonly [number, number]) =>
    Number.isInteger(x) && x >= lo && x <= hi;
  assert.ok(within(o.jc, R.jc), `jc ${o.jc}`);
  assert.ok(within(o.jmin, R.jmin), `jmin ${o.jmin}`);
  assert.ok(within(o.jmax - o.jmin, R.jmaxOverJmin), `jmax ${o.jmax}`);
  assert.ok(o.jmax > o.jmin);
  for (const s of [o.s1, o.s2, o.s3, o.s4]) assert.ok(within(s, R.s), `s ${s}`);
  assert.notEqual(o.s2, o.s1 + 56);
  // Padded handshake sizes (init 148 + s1, response 92 + s2, cookie 64 + s3) all differ.
  assert.equal(new Set([148 + o.s1, 92 + o.s2, 64 + o.s3]).size, 3);
  const hs = [o.h1, o.h2, o.h3, o.h4];
  for (const h of hs) assert.ok(within(h, R.h), `h ${h}`);
  assert.equal(new Set(hs).size, 4);
  for (const k of ["i1", "i2", "i3", "i4", "i5"] as const) assert.equal(o[k], undefined);
}

Deno.test(`generator: ${DRAWS} draws all satisfy §5.1 and cover every range inclusively`, () => {
  const seen = {
    jc: new Set<number>(),
    jmin: new Set<number>(),
    over: new Set<number>(),
    s: new Set<number>(),
  };
  const jcCounts = new Map<number, number>();
  let hMin = Infinity, hMax = -Infinity;
  for (let i = 0; i < DRAWS; i++) {
    const o = generateObfuscation();
    assertWithinGeneratorRanges(o);
    assert.deepEqual(validateObfuscation(o), o);
    seen.jc.add(o.jc);
    seen.jmin.add(o.jmin);
    seen.over.add(o.jmax - o.jmin);
    for (const s of [o.s1, o.s2, o.s3, o.s4]) seen.s.add(s);
    jcCounts.set(o.jc, (jcCounts.get(o.jc) ?? 0) + 1);
    hMin = Math.min(hMin, o.h1, o.h2, o.h3, o.h4);
    hMax = Math.max(hMax, o.h1, o.h2, o.h3, o.h4);
  }
  const R = GENERATOR_RANGES;
  const size = ([lo, hi]: readonly [number, number]) => hi - lo + 1;
  // Every value of the small ranges, both ends included, shows up.
  assert.equal(seen.jc.size, size(R.jc));
  assert.equal(seen.jmin.size, size(R.jmin));
  assert.equal(seen.over.size, size(R.jmaxOverJmin));
  assert.equal(seen.s.size, size(R.s));
  // Uniform jc: each value within 6 standard deviations of its expectation.
  const p = 1 / size(R.jc);
  const sigma = Math.sqrt(DRAWS * p * (1 - p));
  for (const count of jcCounts.values()) assert.ok(Math.abs(count - DRAWS * p) < 6 * sigma);
  // h values spread over the whole 31-bit range.
  const hSpan = R.h[1] - R.h[0];
  assert.ok(hMin < R.h[0] + hSpan * 0.01 && hMax > R.h[1] - hSpan * 0.01);
});

Deno.test("generator: no two nodes alike when each avoids the sets before it", () => {
  const fleet: AwgObfuscation[] = [];
  for (let i = 0; i < 300; i++) fleet.push(generateObfuscation({ avoid: fleet }));
  for (let i = 0; i < fleet.length; i++) {
    for (let j = i + 1; j < fleet.length; j++) {
      assert.ok(!obfuscationsAlike(fleet[i], fleet[j]), `nodes ${i} and ${j} alike`);
    }
  }
});

/** A random source that replays `values` (then zeros): deterministic draws. */
function replay(values: number[]): (out: Uint32Array) => void {
  let i = 0;
  return (out) => {
    for (let k = 0; k < out.length; k++) out[k] = values[i++] ?? 0;
  };
}

Deno.test("generator: s2 is redrawn while s2 = s1 + 56, h values while equal", () => {
  const [sLo] = GENERATOR_RANGES.s;
  const [hLo] = GENERATOR_RANGES.h;
  // jc, jmin, jmax-jmin, s1 = sLo, s2 = sLo + 56 (rejected), s2 = sLo + 57, s3, s4,
  // h1 = hLo, h2 = hLo (rejected), hLo + 1, hLo + 2, hLo + 3.
  const o = generateObfuscation({ random: replay([0, 0, 0, 0, 56, 57, 0, 0, 0, 0, 1, 2, 3]) });
  assert.equal(o.s1, sLo);
  assert.equal(o.s2, sLo + 57);
  assert.deepEqual([o.h1, o.h2, o.h3, o.h4], [hLo, hLo + 1, hLo + 2, hLo + 3]);
  assertWithinGeneratorRanges(o);
});

Deno.test("generator: typed errors when the avoid list or the random source leaves no way out", () => {
  // Replays the same 11 draws forever (jc … s4 at their minimum, h = 5, 6, 7, 8): always one set.
  const stuck = () => {
    const cycle = [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3];
    let i = 0;
    return (out: Uint32Array) => out.forEach((_, k) => out[k] = cycle[i++ % cycle.length]);
  };
  const first = generateObfuscation({ random: stuck() });
  assertRejects(
    () => generateObfuscation({ avoid: [first], random: stuck() }),
    "obfuscation-exhausted",
    "obfuscation",
  );
  // 0xffffffff is above the rejection limit for a 51-value range (jmin).
  assert.notEqual(0x100000000 % 51, 0);
  assertRejects(
    () => generateObfuscation({ random: (out) => out.fill(0xffffffff) }),
    "random-failure",
    "obfuscation",
  );
});

Deno.test("alike: a shared header value or identical sizes", () => {
  const a = generateObfuscation();
  const b = generateObfuscation({ avoid: [a] });
  assert.ok(obfuscationsAlike(a, a));
  assert.ok(!obfuscationsAlike(a, b));
  assert.ok(obfuscationsAlike(a, { ...b, h3: a.h1 }));
  const sizes = { jc: a.jc, jmin: a.jmin, jmax: a.jmax, s1: a.s1, s2: a.s2, s3: a.s3, s4: a.s4 };
  assert.ok(obfuscationsAlike(a, { ...b, ...sizes }));
});

const VALID = SAMPLE_OBFUSCATION;

Deno.test("validator: §5.1 rules and upstream bounds each reject with the field named", () => {
  assert.deepEqual(validateObfuscation(VALID), VALID);
  const L = OBFUSCATION_LIMITS;
  const cases: [Partial<Record<string, unknown>>, string, string][] = [
    [{ jmin: 801 }, "bad-obfuscation", "obfuscation.jmin"],
    [{ h2: 4 }, "bad-obfuscation", "obfuscation.h2"],
    [{ h4: 0 }, "bad-obfuscation", "obfuscation.h4"],
    [{ h3: VALID.h1 }, "bad-obfuscation", "obfuscation.h1"],
    [{ s2: VALID.s1 + 56 }, "bad-obfuscation", "obfuscation.s2"],
    [{ jc: L.jc + 1 }, "out-of-range", "obfuscation.jc"],
    [{ jmax: L.jmax + 1 }, "out-of-range", "obfuscation.jmax"],
    [{ s1: L.s1 + 1 }, "out-of-range", "obfuscation.s1"],
    [{ s2: L.s2 + 1 }, "out-of-range", "obfuscation.s2"],
    [{ s3: L.s3 + 1 }, "out-of-range", "obfuscation.s3"],
    [{ s4: L.s4 + 1 }, "out-of-range", "obfuscation.s4"],
    [{ h1: L.h + 1 }, "out-of-range", "obfuscation.h1"],
    [{ jc: -1 }, "out-of-range", "obfuscation.jc"],
    [{ jc: 4.5 }, "out-of-range", "obfuscation.jc"],
    [{ jc: "4" }, "out-of-range", "obfuscation.jc"],
    [{ jc: undefined }, "out-of-range", "obfuscation.jc"],
    [{ i1: "<c>\n<t>" }, "bad-template", "obfuscation.i1"],
    [{ i5: "<b 0xdead>; rm -rf /" }, "bad-template", "obfuscation.i5"],
    [{ i2: 7 }, "bad-template", "obfuscation.i2"],
  ];
  for (const [patch, code, field] of cases) {
    assertRejects(() => validateObfuscation({ ...VALID, ...patch }), code, field);
  }
  for (const notObject of [null, 5, "x", []]) {
    assertRejects(() => validateObfuscation(notObject), "bad-obfuscation", "obfuscation");
  }
});

Deno.test("validator: templates kept, empty ones dropped; neutral set only on request", () => {
  const withTemplates = validateObfuscation({
    ...VALID,
    i1: "<b 0xc0ffee><r 8>",
    i2: "",
    i3: null,
  });
  assert.equal(withTemplates.i1, "<b 0xc0ffee><r 8>");
  assert.ok(!("i2" in withTemplates) && !("i3" in withTemplates));
  assertRejects(
    () => validateObfuscation(NEUTRAL_OBFUSCATION),
    "bad-obfuscation",
    "obfuscation.h1",
  );
  assert.deepEqual(
    validateObfuscation(NEUTRAL_OBFUSCATION, { allowNeutral: true }),
    NEUTRAL_OBFUSCATION,
  );
  // "Neutral" means exactly the neutral set: a template or any other value re-enables the rules.
  assertRejects(
    () => validateObfuscation({ ...NEUTRAL_OBFUSCATION, i1: "<c>" }, { allowNeutral: true }),
    "bad-obfuscation",
  );
});

Deno.test("templates: the AmneziaWG tag grammar", () => {
  const ok: [string, number][] = [
    ["<b 0xdeadbeef>", 4],
    ["<b 0xDEADBEEF>", 4],
    ["<c><t><r 10><rc 5><rd 3>", 4 + 4 + 10 + 5 + 3],
    ["<b 0x01> <c> <t>", 9],
    [`<b 0x${"ab".repeat(1280)}>`, 1280],
  ];
  for (const [t, len] of ok) assert.equal(checkTemplate(t, "i1"), len, t);
  const bad = [
    "",
    "<b 0x>",
    "<b 0xabc>",
    "<b deadbeef>",
    "<b>",
    "<x>",
    "<r 0>",
    "<r 1281>",
    "<r 01>",
    "<r>",
    "<c 1>",
    "<t 2>",
    "text",
    "<c>\n<t>",
    "<c>;rm -rf /",
    "<c>  <t>",
    " <c>",
    "<c> ",
    "<c",
    "<r 10 20>",
    "<b 0x00>\r",
    `<b 0x${"00".repeat(1281)}>`,
    "<r 1000><r 281>",
    "<C>",
    "<c>\t<t>",
    `<r 5>${"<c>".repeat(2000)}`,
  ];
  for (const t of bad) {
    assertRejects(() => checkTemplate(t, "obfuscation.i3"), "bad-template", "obfuscation.i3");
  }
  assertRejects(() => checkTemplate(undefined, "i1"), "bad-template", "i1");
});

Deno.test('obfuscation: the NodeControl message carries every key, templates as "" when absent', () => {
  const msg = obfuscationMessage({ ...NEUTRAL_OBFUSCATION, jc: 4, i2: "<b 0x01>" });
  assert.equal(msg.jc, 4);
  assert.equal(msg.h4, NEUTRAL_OBFUSCATION.h4);
  assert.equal(msg.i1, "");
  assert.equal(msg.i2, "<b 0x01>");
  assert.deepEqual(
    Object.keys(msg).sort(),
    [...OBFUSCATION_NUMBER_KEYS, ...OBFUSCATION_TEMPLATE_KEYS].sort(),
  );
});
