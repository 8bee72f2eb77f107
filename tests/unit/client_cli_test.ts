/**
 * `deno task client` and the account commands of `cox`, in-process: each
 * ends in one line and an exit code (0 done, 1 refused, 2 usage), never a
 * stack trace; the client's state is 0600 and a tampered profile leaves the
 * saved state untouched.
 */
import assert from "node:assert/strict";
import { runClientCli } from "../../agent/client/cli.ts";
import { parseTtl } from "../../controller/cli/accounts.ts";
import { verifyPassword } from "../../controller/accounts/passwords.ts";
import { openState } from "../../controller/state.ts";
import { UsageError } from "../../controller/cli/format.ts";
import { runCli } from "../../controller/cli/run.ts";
import { parseJoinLink } from "../../core/profile/mod.ts";
import { utf8 } from "../../core/encoding.ts";
import { fakeAccountSync } from "../support/client_fixture.ts";

function capture() {
  const out: string[] = [], err: string[] = [];
  return { out, err, io: { out: (t: string) => out.push(t), err: (l: string) => err.push(l) } };
}

const noEnv = () => undefined;

Deno.test("client cli: enroll and sync end in one line; state 0600; refusals exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const f = await fakeAccountSync();
    const c = capture();
    const state = `${dir}/s`;
    const code = await runClientCli(
      ["enroll", f.link, "--state", state],
      { ...c.io, transport: f },
      noEnv,
    );
    assert.equal(code, 0, c.err.join("\n"));
    assert.equal(c.out.length, 1);
    assert.match(
      c.out[0],
      /^enrolled as usr_demo; profile revision 3; node Node FRA1; config \S+\/pharos\.conf\n$/,
    );
    assert.equal((await Deno.stat(`${state}/state.json`)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${state}/pharos.conf`)).mode! & 0o777, 0o600);
    const before = await Deno.readTextFile(`${state}/state.json`);

    // A tampered profile: one "error:" line, exit 1, nothing saved.
    f.revision = 4;
    f.profilePatch = (r) => ({
      ...r,
      ciphertext: utf8.encode(utf8.decode(r.ciphertext).replace('"ct":"', '"ct":"AAAA')),
    });
    const t = capture();
    assert.equal(
      await runClientCli(["sync", "--state", state], { ...t.io, transport: f }, noEnv),
      1,
    );
    assert.equal(t.err.length, 1);
    assert.match(
      t.err[0],
      /^error: profile signature does not verify under the pinned controller key/,
    );
    assert.equal(await Deno.readTextFile(`${state}/state.json`), before);

    const n = capture();
    assert.equal(
      await runClientCli(["sync", "--state", `${dir}/none`], { ...n.io, transport: f }, noEnv),
      1,
    );
    assert.match(n.err[0], /^error: no client state in .*: enroll first/);

    const l = capture();
    assert.equal(
      await runClientCli(["enroll", "pharosvpn://enroll?ca=x", "--state", `${dir}/x`], {
        ...l.io,
        transport: f,
      }, noEnv),
      1,
    );
    assert.match(l.err[0], /^error: parameter "relay" is missing or empty/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client cli: usage mistakes exit 2", async () => {
  for (
    const args of [[], ["bogus"], ["enroll"], ["sync", "extra"], ["up", "--dataplane", "nope"], [
      "sync",
      "--bogus",
    ]]
  ) {
    const c = capture();
    assert.equal(await runClientCli(args, c.io, noEnv), 2, args.join(" "));
    assert.ok(c.err.length >= 1);
  }
});

Deno.test("client cli: the password from --password-file or $PHAROS_PASSWORD; an empty or missing one exits 2 before any call", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const f = await fakeAccountSync();
    const state = `${dir}/s`;
    const run = async (args: string[], vars: Record<string, string> = {}) => {
      const c = capture();
      const code = await runClientCli(
        [...args, "--state", state],
        { ...c.io, transport: f },
        (n) => vars[n],
      );
      return { code, out: c.out.join(""), err: c.err.join("\n") };
    };
    assert.equal((await run(["enroll", f.link])).code, 0);
    await Deno.writeTextFile(`${dir}/pw`, "password from the file\n");
    await Deno.writeTextFile(`${dir}/empty`, "");
    await Deno.writeTextFile(`${dir}/newline`, "\n");
    const email = ["login", "--email", "a@example.com"];

    const file = await run([...email, "--password-file", `${dir}/pw`], {
      PHAROS_PASSWORD: "from the environment",
    });
    assert.equal(file.code, 0, file.err);
    assert.equal(file.out, "logged in as usr_demo\n");
    assert.deepEqual(f.logins.at(-1), {
      email: "a@example.com",
      password: "password from the file",
    });
    const fromEnv = await run(email, { PHAROS_PASSWORD: "from the environment" });
    assert.equal(fromEnv.code, 0, fromEnv.err);
    assert.equal(f.logins.at(-1)!.password, "from the environment");

    const calls = f.logins.length;
    const refusals: [string[], Record<string, string>, RegExp][] = [
      [["--password-file", `${dir}/empty`], {}, /^error: --password-file \S+\/empty is empty$/],
      [["--password-file", `${dir}/newline`], { PHAROS_PASSWORD: "x" }, /newline is empty$/],
      [
        ["--password-file", `${dir}/absent`],
        {},
        /^error: --password-file \S+\/absent: cannot read it/,
      ],
      [[], {}, /^error: give the password in \$PHAROS_PASSWORD or --password-file$/],
      [[], { PHAROS_PASSWORD: "" }, /^error: give the password in \$PHAROS_PASSWORD/],
      [
        ["--passphrase-file", `${dir}/empty`],
        { PHAROS_PASSWORD: "x" },
        /^error: --passphrase-file \S+ is empty$/,
      ],
    ];
    for (const [extra, vars, want] of refusals) {
      const r = await run([...email, ...extra], vars);
      assert.equal(r.code, 2, `${extra.join(" ")}: ${r.err}`);
      assert.match(r.err, want);
      assert.equal(r.out, "");
    }
    assert.equal(f.logins.length, calls, "nothing was sent");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client cli: rekey replaces the account key with the old passphrase; without it, one line and an exit code", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const f = await fakeAccountSync();
    const run = async (state: string, args: string[], vars: Record<string, string> = {}) => {
      const c = capture();
      const code = await runClientCli(
        [...args, "--state", state],
        { ...c.io, transport: f },
        (n) => vars[n],
      );
      return { code, out: c.out.join(""), err: c.err.join("\n") };
    };
    const a = `${dir}/a`, b = `${dir}/b`;
    assert.equal((await run(a, ["enroll", f.link])).code, 0);
    assert.equal((await run(b, ["enroll", f.link])).code, 0);
    const made = await run(a, ["login"], { PHAROS_PASSPHRASE: "first passphrase" });
    assert.equal(made.code, 0, made.err);
    const first = { ...f.account! };

    const noNew = await run(a, ["rekey"], { PHAROS_PASSPHRASE: "first passphrase" });
    assert.equal(noNew.code, 2);
    assert.match(noNew.err, /^error: give the new passphrase in \$PHAROS_NEW_PASSPHRASE/);
    const noOld = await run(a, ["rekey"], { PHAROS_NEW_PASSPHRASE: "second passphrase" });
    assert.equal(noOld.code, 1);
    assert.match(noOld.err, /^error: the account already has a key: give its current passphrase/);
    const other = await run(b, ["rekey"], {
      PHAROS_PASSPHRASE: "first passphrase",
      PHAROS_NEW_PASSPHRASE: "second passphrase",
    });
    assert.equal(other.code, 1);
    assert.match(
      other.err,
      /^error: the account already has a key and this device does not hold it/,
    );
    assert.deepEqual(f.account, first, "refusals change nothing");

    await Deno.writeTextFile(`${dir}/new`, "second passphrase\n");
    const ok = await run(a, ["rekey", "--new-passphrase-file", `${dir}/new`], {
      PHAROS_PASSPHRASE: "first passphrase",
    });
    assert.equal(ok.code, 0, ok.err);
    assert.equal(ok.out, "account key of usr_demo replaced; its passphrase is the new one\n");
    assert.notDeepEqual(f.account!.publicKey, first.publicKey);
    const saved = JSON.parse(await Deno.readTextFile(`${a}/state.json`));
    assert.equal(saved.accountWrappedKey, utf8.decode(f.account!.wrapped));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cox --help and cox <cmd> --help list the account commands; usage mistakes exit 2", async () => {
  for (const args of [["--help"], ["tickets", "create", "--help"], ["users", "passwd", "-h"]]) {
    const c = capture();
    assert.equal(await runCli(args, c.io, noEnv), 0, args.join(" "));
    const help = c.out.join("");
    for (
      const cmd of [
        "tickets create EMAIL [--ttl 15m] [--relay HOST:PORT]",
        "devices list [--user EMAIL]",
        "devices revoke ID [--reason TEXT]",
        "users passwd EMAIL",
        "admins add [--url BASE]",
        "nodes add USER@HOST",
      ]
    ) {
      assert.ok(help.includes(`  ${cmd}`), `${args.join(" ")}: ${cmd}`);
    }
    assert.equal(c.err.length, 0);
  }
  assert.equal(parseTtl("15m"), 15 * 60_000);
  assert.equal(parseTtl("2h"), 7_200_000);
  assert.equal(parseTtl("1d"), 86_400_000);
  for (const bad of ["0m", "15", "15s", "-1h", "1.5h"]) {
    assert.throws(() => parseTtl(bad), UsageError, bad);
  }
  const mistakes: [string[], RegExp][] = [
    [["tickets", "create"], /^error: "tickets create" needs EMAIL: cox tickets create EMAIL;/],
    [["devices", "list", "extra"], /^error: unexpected argument "extra": cox devices list;/],
    [["devices", "revoke", "x", "--ttl", "1h"], /^error: --ttl does not apply to "devices revoke"/],
    [["users", "passwd"], /^error: "users passwd" needs EMAIL/],
    [["tickets", "frob"], /^unknown command "tickets frob"\nusage: cox/],
  ];
  for (const [args, want] of mistakes) {
    const c = capture();
    assert.equal(await runCli(args, c.io, noEnv), 2, args.join(" "));
    assert.match(c.err[0], want);
  }
});

Deno.test("cox tickets create prints the QR, the link and one closing line; devices list and revoke", async () => {
  const dir = await Deno.makeTempDir();
  const env = (n: string) => (n === "PHAROS_STATE" ? `${dir}/state` : undefined);
  try {
    const init = capture();
    assert.equal(await runCli(["init"], init.io, env), 0, init.err.join("\n"));
    assert.equal(await runCli(["users", "add", "a@example.com"], capture().io, env), 0);

    const t = capture();
    assert.equal(
      await runCli(
        ["tickets", "create", "a@example.com", "--ttl", "10m", "--relay", "vpn.example.net:443"],
        t.io,
        env,
      ),
      0,
      t.err.join("\n"),
    );
    const lines = t.out.join("").trimEnd().split("\n");
    const link = parseJoinLink(lines.at(-2)!);
    assert.equal(link.relay, "vpn.example.net:443");
    assert.match(lines.at(-1)!, /^ticket \S+ for a@example\.com: single use, expires \d{4}-/);
    assert.ok(lines.slice(0, -2).every((l) => /^[█▀▄ ]+$/.test(l)), "a QR drawn in half blocks");

    const u = capture();
    assert.equal(await runCli(["tickets", "create", "nobody@example.com"], u.io, env), 1);
    assert.match(u.err[0], /^error: no user nobody@example\.com/);
    const b = capture();
    assert.equal(
      await runCli(["tickets", "create", "a@example.com", "--relay", "no port"], b.io, env),
      2,
    );
    assert.match(b.err[0], /^error: --relay takes HOST:PORT/);

    // admins add runs through the same table.
    const ad = capture();
    assert.equal(await runCli(["admins", "add", "--url", "https://ui.example/"], ad.io, env), 0);
    assert.match(ad.out[0], /^https:\/\/ui\.example\/setup#token=\S+\n$/);
    const ax = capture();
    assert.equal(await runCli(["admins", "add", "--ttl", "1h"], ax.io, env), 2);
    assert.match(ax.err[0], /^error: --ttl does not apply to "admins add"/);

    const d = capture();
    assert.equal(await runCli(["devices", "list"], d.io, env), 0);
    assert.match(d.out.join(""), /^no devices; enroll one with "cox tickets create EMAIL"\n$/);
    const r = capture();
    assert.equal(await runCli(["devices", "revoke", "nope"], r.io, env), 1);
    assert.match(r.err[0], /^error: no device nope/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cox users passwd reads one line of stdin; an empty, missing or bad one is refused, nothing set", async () => {
  const dir = await Deno.makeTempDir();
  const env = (n: string) => (n === "PHAROS_STATE" ? `${dir}/state` : undefined);
  const hash = async () => {
    const st = await openState(`${dir}/state`);
    try {
      return (st.db.prepare("SELECT password_hash AS h FROM users WHERE email_key = ?")
        .get("a@example.com") as { h: string | null }).h;
    } finally {
      st.close();
    }
  };
  const passwd = async (stdin: string | Uint8Array, email = "a@example.com") => {
    const c = capture();
    const bytes = typeof stdin === "string" ? utf8.encode(stdin) : stdin;
    const code = await runCli(["users", "passwd", email], {
      ...c.io,
      stdin: () => Promise.resolve(bytes),
    }, env);
    return { code, out: c.out.join(""), err: c.err.join("\n") };
  };
  try {
    assert.equal(await runCli(["init"], capture().io, env), 0);
    assert.equal(await runCli(["users", "add", "a@example.com"], capture().io, env), 0);
    assert.equal(await hash(), null);

    const refusals: [string | Uint8Array, number, RegExp][] = [
      ["", 2, /^error: give the new password on stdin \(one line\)$/],
      ["\n", 2, /^error: give the new password on stdin/],
      ["first line\nsecond line\n", 2, /^error: stdin must hold the password on one line$/],
      [new Uint8Array([0xff, 0xfe, 0x41]), 2, /^error: the password on stdin is not UTF-8 text$/],
      ["x".repeat(1030), 2, /^error: the password is longer than 1024 bytes$/],
      ["short\n", 1, /^error: a password needs at least 10 characters$/],
    ];
    for (const [stdin, code, want] of refusals) {
      const r = await passwd(stdin);
      assert.equal(r.code, code, r.err);
      assert.match(r.err, want);
      assert.equal(r.out, "");
      assert.equal(await hash(), null, "nothing set");
    }
    const none = await passwd("a long enough password\n", "nobody@example.com");
    assert.equal(none.code, 1);
    assert.match(none.err, /^error: no user nobody@example\.com/);

    const ok = await passwd("a long enough password\r\n");
    assert.equal(ok.code, 0, ok.err);
    assert.equal(ok.out, "password set for a@example.com\n");
    const stored = await hash();
    assert.ok(stored && await verifyPassword("a long enough password", stored));
    assert.equal(await verifyPassword("a long enough password\r", stored), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
