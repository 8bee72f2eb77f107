/**
 * Bound enrollment tickets (CONTRACTS.md §7.3 c): the link's `bind` secret
 * is never sent; the claim carries `pharos-claim-mac` over its CSR and
 * public keys. A relay holding the token (it terminates TLS) cannot redeem
 * a bound ticket with keys of its own, a refused claim consumes nothing,
 * and the original link form is unchanged byte for byte.
 */
import assert from "node:assert/strict";
import {
  claimMac,
  claimMacKey,
  claimMacMessage,
  newLinkSecret,
  verifyClaimMac,
} from "../../core/profile/claim_binding.ts";
import { buildJoinLink, JoinLinkError, parseJoinLink } from "../../core/profile/join_link.ts";
import { fromBase64Url, toBase64, toBase64Url, toHex, utf8 } from "../../core/encoding.ts";
import { createLogger } from "../../core/log.ts";
import { CLAIM_MAC_REFUSED } from "../../controller/accounts/accounts.ts";
import { runCli } from "../../controller/cli/run.ts";
import { AccountError } from "../../controller/accounts/errors.ts";
import {
  accountsFixture,
  ADMIN,
  claimOf,
  type ClientKeys,
  clientKeys,
} from "../support/accounts_fixture.ts";

// CONTRACTS.md §8 V5: the original form, byte for byte.
const V5 =
  "pharosvpn://enroll?ca=08df53bddb6d49c3be93cddaab2fb4ec9101b3f4a428f5898c84edafafecb00c&relay=relay.example.net%3A8443&token=3t7e3t7e3t7e3t7e3t7e3t7e3t7e3t7e3t7e3t7e3t4";
const BIND = toBase64Url(new Uint8Array(32).fill(0xb1));

Deno.test("join link: the original form still parses and renders byte for byte", () => {
  const link = parseJoinLink(V5);
  assert.equal(link.bind, undefined);
  assert.deepEqual(Object.keys(link).sort(), ["ca", "relay", "token"]);
  assert.equal(buildJoinLink(link), V5);
});

Deno.test("join link: a bound link sorts bind first, round-trips, and original readers still find ca/relay/token", () => {
  const bound = buildJoinLink({ ...parseJoinLink(V5), bind: BIND });
  assert.equal(bound, V5.replace("enroll?", `enroll?bind=${BIND}&`));
  const back = parseJoinLink(bound);
  assert.equal(back.bind, BIND);
  assert.equal(buildJoinLink(back), bound);
  // A reader that knows only the three original parameters (as the Go app does).
  const q = new URL(bound).searchParams;
  assert.deepEqual(
    [q.get("ca"), q.get("relay"), q.get("token")],
    [back.ca, back.relay, back.token],
  );
  for (const bad of ["", "short", BIND + "A", BIND.slice(0, 42) + "*"]) {
    assert.throws(
      () => parseJoinLink(V5.replace("enroll?", `enroll?bind=${encodeURIComponent(bad)}&`)),
      (e) => e instanceof JoinLinkError && e.code === "bad-bind",
      JSON.stringify(bad),
    );
  }
  assert.throws(
    () => parseJoinLink(bound.replace("&ca=", `&bind=${BIND}&ca=`)),
    (e) => e instanceof JoinLinkError && e.code === "duplicate-parameter",
  );
  assert.throws(
    () => buildJoinLink({ ...back, bind: "nope" }),
    (e) => e instanceof JoinLinkError && e.code === "bad-bind",
  );
});

Deno.test("claim MAC: @noble and WebCrypto agree on the definition; every covered byte matters", async () => {
  const csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
  const enc = new Uint8Array(32).fill(0x11);
  const wg = new Uint8Array(32).fill(0x22);
  const input = { csrPem: csr, encryptionPublicKey: enc, wireguardPublicKey: wg };

  // Independent: WebCrypto HKDF + HMAC over the message assembled by hand here.
  const ikm = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(fromBase64Url(BIND)),
    "HKDF",
    false,
    [
      "deriveBits",
    ],
  );
  const label = utf8.encode("pharosvpn claim-mac v1");
  const key = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: new Uint8Array(label) },
      ikm,
      256,
    ),
  );
  assert.equal(toHex(claimMacKey(BIND)), toHex(key));
  const csrBytes = utf8.encode(csr);
  const message = new Uint8Array([
    ...label,
    0,
    0,
    0,
    0,
    csrBytes.length,
    ...csrBytes,
    ...enc,
    ...wg,
  ]);
  assert.deepEqual(claimMacMessage(input), message);
  const hmacKey = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const expected = toBase64Url(new Uint8Array(await crypto.subtle.sign("HMAC", hmacKey, message)));
  assert.equal(claimMac(BIND, input), expected);
  assert.equal(verifyClaimMac(key, input, expected), true);

  // The CSR given as its bytes (as the controller receives it) is the same input.
  assert.equal(claimMac(BIND, { ...input, csrPem: csrBytes }), expected);
  for (
    const changed of [
      { ...input, csrPem: csr + " " },
      { ...input, encryptionPublicKey: wg },
      { ...input, wireguardPublicKey: enc },
      { ...input, wireguardPublicKey: undefined },
    ]
  ) {
    assert.equal(verifyClaimMac(key, changed, expected), false);
  }
  assert.equal(verifyClaimMac(claimMacKey(newLinkSecret()), input, expected), false);
  for (const junk of ["", "!!", expected + "A", toBase64(fromBase64Url(expected))]) {
    assert.equal(verifyClaimMac(key, input, junk), false, junk);
  }
});

/** The claim the reference client makes from a link: its keys, MACed with the link's secret. */
function boundClaim(link: string, keys: ClientKeys) {
  const { token, bind } = parseJoinLink(link);
  assert.ok(bind, "the link is bound");
  return {
    ...claimOf(token, keys),
    claimMac: claimMac(bind, {
      csrPem: keys.csrPem,
      encryptionPublicKey: keys.encryption.publicKey,
      wireguardPublicKey: keys.wg?.publicKey,
    }),
  };
}

const refusedMac = (e: unknown) =>
  e instanceof AccountError && e.code === "unauthenticated" && e.message === CLAIM_MAC_REFUSED;

Deno.test("bound ticket: a relay that redeems the token with its own keys is refused and consumes nothing; the link's holder enrolls", async () => {
  const lines: string[] = [];
  const f = await accountsFixture({
    log: createLogger("accounts", { sink: (l) => lines.push(l) }),
  });
  try {
    f.accounts.createUser(ADMIN, "ann@example.com");
    const link = f.accounts.createTicket("ann@example.com", { actor: ADMIN }).url;
    const { token, bind } = parseJoinLink(link);
    assert.ok(bind);
    const phone = await clientKeys("phone");
    const genuine = boundClaim(link, phone);
    const relayKeys = await clientKeys("relay-made");

    // What a relay in the middle can do with what it sees: the token and the genuine MAC.
    const attacks = [
      claimOf(token, relayKeys), // no MAC (as an original client sends)
      { ...claimOf(token, relayKeys), claimMac: genuine.claimMac }, // replayed onto its keys
      { ...genuine, csrPem: relayKeys.csrPem }, // only its CSR swapped in
      { ...genuine, encryptionPublicKey: relayKeys.encryption.publicKey }, // profile sealed to it
      { ...genuine, wgPublicKey: undefined }, // WG key stripped: the controller would make one
      { ...genuine, claimMac: toBase64Url(new Uint8Array(32).fill(7)) }, // a guess
      { ...genuine, claimMac: "not base64url!" },
    ];
    for (const [i, forged] of attacks.entries()) {
      await assert.rejects(f.accounts.claim(forged), refusedMac, `attack ${i}`);
    }
    const ticket = f.accounts.tickets.peek(token, f.clock.now);
    assert.equal(ticket.usedAt, null, "no refused claim consumed the ticket");
    const devices = () =>
      (f.state.db.prepare("SELECT count(*) AS n FROM devices").get() as { n: number }).n;
    assert.equal(devices(), 0, "no refused claim enrolled a device");
    const refusals = lines.map((l) => JSON.parse(l)).filter((l) => l.code === "claim-mac-refused");
    assert.equal(refusals.length, attacks.length);
    assert.ok(refusals.every((r) => r.ticket_id === ticket.id && r.level === "warn"));
    assert.ok(!lines.join("\n").includes(bind) && !lines.join("\n").includes(token));

    const r = await f.accounts.claim(genuine);
    assert.equal(r.userId, ticket.userId);
    assert.equal(devices(), 1);
    // Single use holds for the genuine MAC too.
    await assert.rejects(
      f.accounts.claim(boundClaim(link, await clientKeys())),
      (e) => e instanceof AccountError && e.code === "unauthenticated",
    );

    // The database keeps only the derived key: the secret in no form.
    const secret = fromBase64Url(bind);
    const forms = [bind, toHex(secret), toBase64(secret)];
    let haystack = "";
    for (const name of ["pharos.db", "pharos.db-wal"]) {
      const bytes = await Deno.readFile(`${f.dir}/state/${name}`).catch(() => new Uint8Array(0));
      haystack += new TextDecoder("latin1").decode(bytes);
    }
    assert.ok(haystack.length > 0, "the database files were read");
    const raw = new TextDecoder("latin1").decode(secret);
    for (const form of [...forms, raw]) assert.ok(!haystack.includes(form), "secret in the db");
  } finally {
    await f.close();
  }
});

Deno.test("unbound ticket: claimed with the token alone, as the original app does; a device that makes no WireGuard key too", async () => {
  const f = await accountsFixture();
  try {
    f.accounts.createUser(ADMIN, "bob@example.com");
    const a = f.accounts.createTicket("bob@example.com", { unbound: true });
    assert.equal(parseJoinLink(a.url).bind, undefined);
    assert.doesNotMatch(a.url, /bind=/);
    const keys = await clientKeys("old-app", false);
    const r = await f.accounts.claim(claimOf(parseJoinLink(a.url).token, keys));
    assert.equal(r.userId, a.userId);

    // A bound link's MAC also covers the absence of a WireGuard key.
    const b = f.accounts.createTicket("bob@example.com");
    const noWg = await clientKeys("no-wg", false);
    const claim = boundClaim(b.url, noWg);
    assert.equal(claim.wgPublicKey, undefined);
    assert.equal((await f.accounts.claim(claim)).userId, b.userId);
  } finally {
    await f.close();
  }
});

Deno.test("cox tickets create: bound by default; --unbound prints the original link form and says so", async () => {
  const dir = await Deno.makeTempDir();
  const env = (n: string) => (n === "PHAROS_STATE" ? `${dir}/state` : undefined);
  const run = async (args: string[]) => {
    const out: string[] = [], err: string[] = [];
    const code = await runCli(args, { out: (t) => out.push(t), err: (l) => err.push(l) }, env);
    assert.equal(code, 0, err.join("\n"));
    return out.join("").trimEnd().split("\n");
  };
  try {
    await run(["init"]);
    await run(["users", "add", "a@example.com"]);
    const bound = await run(["tickets", "create", "a@example.com"]);
    assert.ok(parseJoinLink(bound.at(-2)!).bind, bound.at(-2)!);
    assert.match(
      bound.at(-1)!,
      /^ticket \S+ for a@example\.com: single use, expires .*\(bound to this link\)$/,
    );
    const plain = await run(["tickets", "create", "a@example.com", "--unbound"]);
    const link = plain.at(-2)!;
    assert.match(
      link,
      /^pharosvpn:\/\/enroll\?ca=[0-9a-f]{64}&relay=[^&]+&token=[A-Za-z0-9_-]{43}$/,
    );
    assert.equal(parseJoinLink(link).bind, undefined);
    assert.match(plain.at(-1)!, /\(unbound: original app, no claim MAC\)$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
