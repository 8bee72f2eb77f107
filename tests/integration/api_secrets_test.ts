/**
 * No admin password, session cookie, CSRF token, API token, setup token,
 * TOTP secret or recovery code is in the database files (with -wal and
 * -shm) or the logs in a usable form: each is searched for raw, as base64
 * (standard and URL alphabets) and as hex (both cases).
 */
import assert from "node:assert/strict";
import * as OTPAuth from "otpauth";
import { toBase64, toBase64Url, toHex, utf8 } from "../../core/encoding.ts";
import { DATABASE_FILE } from "../../controller/state.ts";
import {
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  apiFixture,
  call,
  login,
  sessionCookie,
} from "../support/api_fixture.ts";

function forms(secret: string | Uint8Array): Uint8Array[] {
  const bytes = typeof secret === "string" ? utf8.encode(secret) : secret;
  const texts = [
    toBase64(bytes),
    toBase64(bytes).replace(/=+$/, ""),
    toBase64Url(bytes),
    toHex(bytes),
    toHex(bytes).toUpperCase(),
  ];
  return [bytes, ...texts.map((t) => utf8.encode(t))];
}

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

Deno.test("api secrets: nothing usable in the database files or the logs", async () => {
  const fx = await apiFixture();
  try {
    const secrets: [string, string | Uint8Array][] = [];
    const setup = fx.app.auth.createSetupToken("cli:test");
    secrets.push(["setup token", setup.token]);
    const made = await call(fx.app, "POST", "/api/auth/setup", {
      body: { token: setup.token, email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    assert.equal(made.status, 201);
    secrets.push(["password", ADMIN_PASSWORD]);
    // A failed login with a near-miss password is not logged either.
    await call(fx.app, "POST", "/api/auth/login", {
      body: { email: ADMIN_EMAIL, password: `${ADMIN_PASSWORD}!` },
    });
    secrets.push(["wrong password", `${ADMIN_PASSWORD}!`]);
    const s = await login(fx.app);
    const cookieSecret = s.cookie.split("=")[1].split(".")[1];
    secrets.push(["session secret", cookieSecret], ["csrf token", s.csrf]);
    const en = await (await call(fx.app, "POST", "/api/auth/totp/enroll", s)).json();
    const totp = OTPAuth.URI.parse(en.otpauth_uri) as OTPAuth.TOTP;
    secrets.push(["totp secret (base32)", totp.secret.base32]);
    secrets.push(["totp secret (bytes)", new Uint8Array(totp.secret.bytes)]);
    for (const rc of en.recovery_codes) {
      secrets.push(["recovery code", rc], ["recovery code", rc.replace("-", "")]);
    }
    const confirm = await call(fx.app, "POST", "/api/auth/totp/confirm", {
      ...s,
      body: { code: totp.generate({ timestamp: fx.clock.ms }) },
    });
    assert.equal(confirm.status, 200);
    const tk = await (await call(fx.app, "POST", "/api/tokens", {
      ...s,
      body: { name: "ci", scope: "admin" },
    })).json();
    secrets.push(["api token", tk.secret], ["api token secret", tk.secret.split("_")[2]]);
    // Use the token (writes its last use) and sign in once more with TOTP.
    assert.equal((await call(fx.app, "GET", "/api/nodes", { token: tk.secret })).status, 200);
    fx.clock.advance(30_000);
    const first = await call(fx.app, "POST", "/api/auth/login", {
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    const pending = { cookie: sessionCookie(first), csrf: (await first.json()).csrf_token };
    const second = await call(fx.app, "POST", "/api/auth/totp", {
      ...pending,
      body: { code: totp.generate({ timestamp: fx.clock.ms }) },
    });
    assert.equal(second.status, 200);
    secrets.push(["second session", sessionCookie(second).split(".")[1]]);

    const files: [string, Uint8Array][] = [];
    for (const suffix of ["", "-wal", "-shm"]) {
      try {
        files.push([
          `${DATABASE_FILE}${suffix}`,
          await Deno.readFile(`${fx.dir}/${DATABASE_FILE}${suffix}`),
        ]);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
    files.push(["logs", utf8.encode(fx.logs.join("\n"))]);
    const db = files.find(([n]) => n === `${DATABASE_FILE}-wal`)?.[1] ?? files[0][1];
    assert.ok(db.length > 0);
    // The rows are there: the hash form, not the password, is what is stored.
    const hash = fx.state.db.prepare("SELECT password_hash FROM users").get() as {
      password_hash: string;
    };
    assert.match(hash.password_hash, /^\$argon2id\$v=19\$/);
    // Positive control: what is stored in the clear is found by the same search.
    const all = files.filter(([n]) => n !== "logs").map(([, b]) => b);
    assert.ok(
      all.some((b) => contains(b, utf8.encode(ADMIN_EMAIL))),
      "the search finds stored text",
    );
    assert.ok(all.some((b) => contains(b, utf8.encode(tk.token.id))), "the token id is stored");
    for (const [what, secret] of secrets) {
      for (const form of forms(secret)) {
        for (const [name, bytes] of files) {
          assert.ok(!contains(bytes, form), `${what} found in ${name}`);
        }
      }
    }
  } finally {
    await fx.close();
  }
});
