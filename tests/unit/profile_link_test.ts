import assert from "node:assert/strict";
import { utf8 } from "../../core/encoding.ts";
import {
  buildJoinLink,
  enrollmentTokenHash,
  fingerprintsMatch,
  JoinLinkError,
  MAX_JOIN_LINK_LENGTH,
  newEnrollmentToken,
  normalizeFingerprint,
  parseJoinLink,
  queryEscape,
  queryUnescape,
  rootFingerprint,
} from "../../core/profile/mod.ts";
import { fixedRandom, loadVector, mutateText, prng } from "./seal_support.ts";

const v5 = loadVector<{ inputs: Record<string, string>; expected: Record<string, string> }>(
  "profile/v5_join_link.json",
);

function v5Link() {
  const token = newEnrollmentToken(fixedRandom({ token: v5.inputs.token_fill }));
  const ca = rootFingerprint(utf8.encode(v5.inputs.root_der_placeholder));
  return { ca, relay: v5.inputs.relay, token };
}

function expectCode(fn: () => unknown, code: string): JoinLinkError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof JoinLinkError, `${e}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

Deno.test("V5: the join link and the stored token hash reproduce exactly", () => {
  const t = v5Link();
  assert.equal(t.token.length, 43);
  const link = buildJoinLink(t);
  assert.equal(link, v5.expected.link);
  assert.equal(enrollmentTokenHash(t.token), v5.expected.token_hash);
  assert.ok(link.length <= 200, `typical link is ${link.length} bytes`);
  assert.deepEqual(parseJoinLink(link), t);
});

Deno.test("join link round trip with fresh tokens, IPv4 and IPv6 relays", () => {
  for (const relay of ["203.0.113.7:443", "[2001:db8::1]:8443", "relay.example.net:8443"]) {
    const t = { ca: v5Link().ca, relay, token: newEnrollmentToken() };
    const link = buildJoinLink(t);
    assert.deepEqual(parseJoinLink(link), t);
    assert.ok(link.length <= 200);
  }
  assert.notEqual(newEnrollmentToken(), newEnrollmentToken());
});

Deno.test("query escaping follows Go's url.QueryEscape", () => {
  const cases: [string, string][] = [
    ["relay.example.net:8443", "relay.example.net%3A8443"],
    ["a b", "a+b"],
    ["-_.~", "-_.~"],
    ["/?#&=+%", "%2F%3F%23%26%3D%2B%25"],
    ["[::1]:443", "%5B%3A%3A1%5D%3A443"],
    ["é✓", "%C3%A9%E2%9C%93"],
  ];
  for (const [raw, escaped] of cases) {
    assert.equal(queryEscape(raw), escaped);
    assert.equal(queryUnescape(escaped), raw);
  }
  assert.equal(queryUnescape("%zz"), undefined);
  assert.equal(queryUnescape("%C3"), undefined, "invalid UTF-8");
});

Deno.test("the parser accepts what the original client accepts", () => {
  const t = v5Link();
  const q = `ca=${t.ca}&relay=1.2.3.4%3A8443&token=${t.token}`;
  assert.equal(parseJoinLink(`pharosvpn://enroll?${q}`).relay, "1.2.3.4:8443");
  assert.equal(parseJoinLink(`PharosVPN://enroll/?${q}&extra=1#frag`).relay, "1.2.3.4:8443");
  assert.equal(
    parseJoinLink(`pharosvpn://enroll?relay=1.2.3.4:8443&token=${t.token}&ca=${t.ca}`).ca,
    t.ca,
  );
  assert.equal(parseJoinLink(`  pharosvpn://enroll?${q}\n`).token, t.token);
  assert.equal(
    parseJoinLink(`pharosvpn://enroll?${q.replace(t.ca, `sha256:${t.ca.toUpperCase()}`)}`).ca
      .startsWith("sha256:"),
    true,
  );
});

Deno.test("the parser rejects bad links, naming the bad part", () => {
  const t = v5Link();
  const q = (over: Record<string, string | undefined>) =>
    Object.entries({ ca: t.ca, relay: "relay.example.net%3A8443", token: t.token, ...over })
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`)
      .join("&");
  const cases: [string, string, string][] = [
    [`https://enroll?${q({})}`, "wrong-scheme", "https"],
    [`pharosvpn://login?${q({})}`, "wrong-host", "login"],
    [`pharosvpn://enroll/join?${q({})}`, "bad-path", "/join"],
    [`pharosvpn:enroll?${q({})}`, "bad-syntax", "pharosvpn://enroll"],
    ["", "bad-syntax", "form"],
    [`pharosvpn://enroll?${q({ ca: undefined })}`, "missing-parameter", '"ca"'],
    [`pharosvpn://enroll?${q({ relay: undefined })}`, "missing-parameter", '"relay"'],
    [`pharosvpn://enroll?${q({ token: undefined })}`, "missing-parameter", '"token"'],
    [`pharosvpn://enroll?${q({ token: "" })}`, "missing-parameter", '"token"'],
    [`pharosvpn://enroll?${q({ token: "+++" })}`, "missing-parameter", '"token"'],
    [`pharosvpn://enroll?${q({})}&token=${t.token}`, "duplicate-parameter", '"token"'],
    [`pharosvpn://enroll?${q({ relay: "a%ZZ" })}`, "bad-query", "a%ZZ"],
    [`pharosvpn://enroll?${q({})};x=1`, "bad-query", ";x=1"],
    [`pharosvpn://enroll?${q({ ca: "abc" })}`, "bad-ca", "ca"],
    [`pharosvpn://enroll?${q({ relay: "relay.example.net" })}`, "bad-relay", "relay.example.net"],
    [`pharosvpn://enroll?${q({ relay: "relay.example.net%3A99999" })}`, "bad-relay", "relay"],
    [`pharosvpn://enroll?${q({ relay: "a%0Ab%3A1" })}`, "bad-relay", "relay"],
    [`pharosvpn://enroll?${q({ token: "short" })}`, "bad-token", "token"],
    [`pharosvpn://enroll?${q({ token: t.token + "A" })}`, "bad-token", "token"],
    [
      `pharosvpn://enroll?${q({})}&pad=${"x".repeat(MAX_JOIN_LINK_LENGTH)}`,
      "link-too-long",
      "longer",
    ],
    [`pharosvpn://enr oll?${q({})}`, "bad-syntax", "whitespace"],
  ];
  for (const [link, code, mention] of cases) {
    const e = expectCode(() => parseJoinLink(link), code);
    assert.ok(e.message.includes(mention), `${code}: "${e.message}" should mention ${mention}`);
  }
  expectCode(() => buildJoinLink({ ...t, relay: "no-port" }), "bad-relay");
  expectCode(() => parseJoinLink(42 as unknown as string), "bad-syntax");
});

Deno.test("CA fingerprints compare case-insensitively without sha256: and colons", () => {
  const fp = v5Link().ca;
  const colons = fp.toUpperCase().match(/../g)!.join(":");
  assert.equal(normalizeFingerprint(`sha256:${colons}`), fp);
  assert.ok(fingerprintsMatch(fp, `SHA256:${colons}`));
  const other = fp.slice(0, -1) + (fp.endsWith("0") ? "1" : "0");
  assert.ok(!fingerprintsMatch(fp, other));
  assert.ok(!fingerprintsMatch("", ""));
});

Deno.test("ticket fuzz: 2,000 mutated links parse or fail with a JoinLinkError", () => {
  const r = prng(0x71c);
  const link = v5.expected.link;
  let ok = 0;
  for (let i = 0; i < 2000; i++) {
    let s = link;
    for (let k = 0; k <= r.int(3); k++) s = mutateText(s, r);
    try {
      const t = parseJoinLink(s);
      assert.ok(t.ca && t.relay && t.token);
      ok++;
    } catch (e) {
      assert.ok(e instanceof JoinLinkError, `case ${i} (${JSON.stringify(s)}): ${e}`);
    }
  }
  assert.ok(ok < 2000);
});
