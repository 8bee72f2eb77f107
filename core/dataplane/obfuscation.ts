/**
 * AmneziaWG obfuscation parameters (CONTRACTS.md §5.1): the generator, the
 * validator every node and controller applies, and the i1–i5 template
 * grammar check.
 *
 * Bounds enforced by {@link validateObfuscation}, beyond the three §5.1 rules
 * (jmin ≤ jmax; h1–h4 distinct and ≥ 5; s2 ≠ s1 + 56): the upstream
 * AmneziaWG limits, all derived from its 1280-byte floor —
 * jc ≤ 128; jmax ≤ 1280; s1 ≤ 1132 (1280 − 148, the init message);
 * s2 ≤ 1188 (1280 − 92, the response); s3 ≤ 1216 (1280 − 64, the cookie
 * reply); s4 ≤ 1248 (1280 − 32, the transport header and tag);
 * h1–h4 ≤ 2^32 − 1; each i-template well formed and at most 1280 bytes
 * long once expanded. Sets an original node generates (§5.1 ranges) always
 * pass.
 */
import { DataplaneError } from "./errors.ts";
import { checkInt } from "./validate.ts";

/** One node's AmneziaWG obfuscation set. Empty or absent i1–i5 mean "not used". */
export interface AwgObfuscation {
  jc: number;
  jmin: number;
  jmax: number;
  s1: number;
  s2: number;
  s3: number;
  s4: number;
  h1: number;
  h2: number;
  h3: number;
  h4: number;
  i1?: string;
  i2?: string;
  i3?: string;
  i4?: string;
  i5?: string;
}

/** Upper bounds enforced on top of the §5.1 rules (see the module comment). */
export const OBFUSCATION_LIMITS = {
  jc: 128,
  jmax: 1280,
  s1: 1280 - 148,
  s2: 1280 - 92,
  s3: 1280 - 64,
  s4: 1280 - 32,
  h: 0xffffffff,
  templateBytes: 1280,
} as const;

/** The generator's ranges (CONTRACTS.md §5.1), all inclusive. */
export const GENERATOR_RANGES = {
  jc: [3, 10],
  jmin: [25, 75],
  jmaxOverJmin: [700, 900],
  s: [15, 150],
  h: [5, 0x7fffffff],
} as const;

/**
 * The values that make AmneziaWG behave exactly like WireGuard (no junk, no
 * padding, standard message types 1–4). Accepted by the renderers only on
 * request (`allowNeutral`); never produced by the generator.
 */
export const NEUTRAL_OBFUSCATION: Readonly<AwgObfuscation> = Object.freeze({
  jc: 0,
  jmin: 0,
  jmax: 0,
  s1: 0,
  s2: 0,
  s3: 0,
  s4: 0,
  h1: 1,
  h2: 2,
  h3: 3,
  h4: 4,
});

/** The numeric keys, in config order. */
export const OBFUSCATION_NUMBER_KEYS = [
  "jc",
  "jmin",
  "jmax",
  "s1",
  "s2",
  "s3",
  "s4",
  "h1",
  "h2",
  "h3",
  "h4",
] as const;
/** The template keys, in config order. */
export const OBFUSCATION_TEMPLATE_KEYS = ["i1", "i2", "i3", "i4", "i5"] as const;

/** Init message (148) and response (92) sizes: equal padded sizes when s2 = s1 + 56. */
const S1_S2_FORBIDDEN_DELTA = 148 - 92;

/** Longest template text accepted (a 1280-byte `<b 0x…>` needs 2566). */
const MAX_TEMPLATE_CHARS = 4096;
const TAG = /<([a-z]{1,2})(?: ([^<> ]+))?>/y;

/**
 * Checks an AmneziaWG i-packet template: one or more tags, optionally
 * separated by single spaces, nothing else. Tags: `<b 0xHEX>` (an even
 * number of hex digits, ≥ 1 byte), `<c>` (counter, 4 bytes), `<t>`
 * (timestamp, 4 bytes), `<r N>` (random bytes), `<rc N>` (random letters),
 * `<rd N>` (random digits), N = 1-1280. Returns the expanded packet length.
 */
export function checkTemplate(value: unknown, field: string): number {
  if (typeof value !== "string") {
    throw new DataplaneError("bad-template", field, `expected a string, got ${typeof value}`);
  }
  const bad = (why: string) => new DataplaneError("bad-template", field, why);
  if (value.length === 0) throw bad("empty template (omit the field instead)");
  if (value.length > MAX_TEMPLATE_CHARS) throw bad(`longer than ${MAX_TEMPLATE_CHARS} characters`);
  let pos = 0;
  let bytes = 0;
  for (;;) {
    TAG.lastIndex = pos;
    const m = TAG.exec(value);
    if (!m) {
      throw bad(`unexpected ${JSON.stringify(value.slice(pos, pos + 12))} at offset ${pos}`);
    }
    const [whole, name, arg] = m;
    bytes += tagLength(name, arg, bad);
    pos += whole.length;
    if (pos === value.length) break;
    if (value[pos] === " ") pos++;
  }
  if (bytes > OBFUSCATION_LIMITS.templateBytes) {
    throw bad(`expands to ${bytes} bytes, more than ${OBFUSCATION_LIMITS.templateBytes}`);
  }
  return bytes;
}

function tagLength(
  name: string,
  arg: string | undefined,
  bad: (why: string) => DataplaneError,
): number {
  switch (name) {
    case "b":
      if (arg === undefined || !/^0x(?:[0-9a-fA-F]{2})+$/.test(arg)) {
        throw bad("<b …> needs 0x followed by an even, non-zero number of hex digits");
      }
      return (arg.length - 2) / 2;
    case "c":
    case "t":
      if (arg !== undefined) throw bad(`<${name}> takes no argument`);
      return 4;
    case "r":
    case "rc":
    case "rd": {
      if (arg === undefined || !/^[1-9][0-9]{0,3}$/.test(arg) || Number(arg) > 1280) {
        throw bad(`<${name} N> needs a length N of 1-1280`);
      }
      return Number(arg);
    }
    default:
      throw bad(`unknown tag <${name}>`);
  }
}

function isNeutral(o: AwgObfuscation): boolean {
  return OBFUSCATION_NUMBER_KEYS.every((k) => o[k] === NEUTRAL_OBFUSCATION[k]) &&
    OBFUSCATION_TEMPLATE_KEYS.every((k) => !o[k]);
}

/**
 * Validates an obfuscation set (§5.1 rules plus the upstream bounds in the
 * module comment) and returns a clean copy (numbers, and only the non-empty
 * templates). `allowNeutral` also admits {@link NEUTRAL_OBFUSCATION}.
 */
export function validateObfuscation(
  value: unknown,
  options: { field?: string; allowNeutral?: boolean } = {},
): AwgObfuscation {
  const field = options.field ?? "obfuscation";
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DataplaneError("bad-obfuscation", field, "expected an object");
  }
  const v = value as Record<string, unknown>;
  const n = (k: string, min: number, max: number) => checkInt(v[k], `${field}.${k}`, min, max);
  const L = OBFUSCATION_LIMITS;
  const out: AwgObfuscation = {
    jc: n("jc", 0, L.jc),
    jmin: n("jmin", 0, L.jmax),
    jmax: n("jmax", 0, L.jmax),
    s1: n("s1", 0, L.s1),
    s2: n("s2", 0, L.s2),
    s3: n("s3", 0, L.s3),
    s4: n("s4", 0, L.s4),
    h1: n("h1", 0, L.h),
    h2: n("h2", 0, L.h),
    h3: n("h3", 0, L.h),
    h4: n("h4", 0, L.h),
  };
  for (const k of OBFUSCATION_TEMPLATE_KEYS) {
    const t = v[k];
    if (t === undefined || t === null || t === "") continue;
    checkTemplate(t, `${field}.${k}`);
    out[k] = t as string;
  }
  if (options.allowNeutral && isNeutral(out)) return out;
  if (out.jmin > out.jmax) {
    throw new DataplaneError(
      "bad-obfuscation",
      `${field}.jmin`,
      `jmin ${out.jmin} exceeds jmax ${out.jmax}`,
    );
  }
  const hs = [out.h1, out.h2, out.h3, out.h4];
  hs.forEach((h, i) => {
    if (h < 5) {
      throw new DataplaneError(
        "bad-obfuscation",
        `${field}.h${i + 1}`,
        `${h} is below 5 (1-4 are WireGuard's own message types)`,
      );
    }
  });
  if (new Set(hs).size !== 4) {
    throw new DataplaneError(
      "bad-obfuscation",
      `${field}.h1`,
      "h1-h4 must be four distinct values",
    );
  }
  if (out.s2 === out.s1 + S1_S2_FORBIDDEN_DELTA) {
    throw new DataplaneError(
      "bad-obfuscation",
      `${field}.s2`,
      `s2 = s1 + 56 makes init and response messages the same size`,
    );
  }
  return out;
}

/**
 * Whether two sets are too close for two nodes to share: any common header
 * value h1–h4 (the values DPI keys on), or identical junk/padding sizes.
 */
export function obfuscationsAlike(a: AwgObfuscation, b: AwgObfuscation): boolean {
  const hb = new Set([b.h1, b.h2, b.h3, b.h4]);
  if ([a.h1, a.h2, a.h3, a.h4].some((h) => hb.has(h))) return true;
  return (["jc", "jmin", "jmax", "s1", "s2", "s3", "s4"] as const).every((k) => a[k] === b[k]);
}

/**
 * The set as the `AwgObfuscation` message of NodeControl carries it: every
 * number key, and each template key with "" for none.
 *
 * @example obfuscationMessage(NEUTRAL_OBFUSCATION).i1 === ""
 */
export function obfuscationMessage(
  o: AwgObfuscation,
): Record<(typeof OBFUSCATION_NUMBER_KEYS)[number], number> & Record<TemplateKey, string> {
  const numbers = Object.fromEntries(OBFUSCATION_NUMBER_KEYS.map((k) => [k, o[k]]));
  const templates = Object.fromEntries(OBFUSCATION_TEMPLATE_KEYS.map((k) => [k, o[k] ?? ""]));
  return { ...numbers, ...templates } as ReturnType<typeof obfuscationMessage>;
}

type TemplateKey = (typeof OBFUSCATION_TEMPLATE_KEYS)[number];

/** Fills a Uint32Array with random values; defaults to `crypto.getRandomValues`. */
export type RandomFill = (out: Uint32Array) => void;

const MAX_REJECTIONS = 64;
const MAX_REDRAWS = 64;

/** Uniform integer in `[min, max]` by rejection sampling over 32-bit draws. */
function uniformInt(min: number, max: number, fill: RandomFill): number {
  const span = max - min + 1;
  const limit = Math.floor(0x100000000 / span) * span;
  const buf = new Uint32Array(1);
  for (let i = 0; i < MAX_REJECTIONS; i++) {
    fill(buf);
    if (buf[0] < limit) return min + (buf[0] % span);
  }
  throw new DataplaneError(
    "random-failure",
    "obfuscation",
    "the random source kept returning out-of-range values",
  );
}

/**
 * Draws a fresh obfuscation set within the §5.1 ranges, uniformly from a
 * CSPRNG: jc 3–10, jmin 25–75, jmax = jmin + 700–900, s1–s4 15–150 with s2
 * redrawn while s2 = s1 + 56 (and, to keep all three handshake message
 * sizes distinct, s3 redrawn while s3 + 64 equals s1 + 148 or s2 + 92),
 * h1–h4 four distinct values in 5 … 2^31 − 1, no templates. Sets alike
 * ({@link obfuscationsAlike}) to any in `avoid` are redrawn, so no two nodes
 * share one.
 */
export function generateObfuscation(
  options: { avoid?: readonly AwgObfuscation[]; random?: RandomFill } = {},
): AwgObfuscation {
  const fill: RandomFill = options.random ?? ((out) => void crypto.getRandomValues(out));
  const avoid = options.avoid ?? [];
  const R = GENERATOR_RANGES;
  const draw = (range: readonly [number, number]) => uniformInt(range[0], range[1], fill);
  const redraw = (range: readonly [number, number], reject: (x: number) => boolean) => {
    for (let i = 0; i < MAX_REDRAWS; i++) {
      const x = draw(range);
      if (!reject(x)) return x;
    }
    throw new DataplaneError("random-failure", "obfuscation", "could not draw an acceptable value");
  };
  for (let attempt = 0; attempt < MAX_REDRAWS; attempt++) {
    const jc = draw(R.jc);
    const jmin = draw(R.jmin);
    const jmax = jmin + draw(R.jmaxOverJmin);
    const s1 = draw(R.s);
    const s2 = redraw(R.s, (x) => x === s1 + S1_S2_FORBIDDEN_DELTA);
    const s3 = redraw(R.s, (x) => x + 64 === s1 + 148 || x + 64 === s2 + 92);
    const s4 = draw(R.s);
    const hs: number[] = [];
    for (const _ of [1, 2, 3, 4]) hs.push(redraw(R.h, (x) => hs.includes(x)));
    const [h1, h2, h3, h4] = hs;
    const set: AwgObfuscation = { jc, jmin, jmax, s1, s2, s3, s4, h1, h2, h3, h4 };
    if (!avoid.some((other) => obfuscationsAlike(set, other))) return set;
  }
  throw new DataplaneError(
    "obfuscation-exhausted",
    "obfuscation",
    `no set unlike the ${avoid.length} existing ones after ${MAX_REDRAWS} draws`,
  );
}
