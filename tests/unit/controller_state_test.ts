import assert from "node:assert/strict";
import { runCli } from "../../controller/cli/run.ts";
import { ConfigError, resolveConfig } from "../../controller/config.ts";
import { checkListen } from "../../core/settings.ts";
import { openState, StateError } from "../../controller/state.ts";
import { Keystore, KeystoreError } from "../../controller/keystore.ts";
import { openDatabase } from "../../controller/db/sqlite.ts";
import { parseCertificates } from "../../core/pki/mod.ts";

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (l: string) => err.push(l) }, out, err };
}

const noEnv = () => undefined;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function listDir(path: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(path))).map((e) => e.name).sort();
}

/** A state made by `cox init`, as an operator would. */
async function initState(dir: string): Promise<void> {
  const c = capture();
  assert.equal(await runCli(["init", "--state", dir], c.io, noEnv), 0, c.err.join("\n"));
}

Deno.test("state: the PKI is created once, sealed at rest, and reloaded identically", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await openState(dir, { create: true });
    assert.equal(a.created, true);
    const fp = a.pki.rootFingerprint;
    // The database holds no plaintext key material.
    const rows = a.db.prepare("SELECT key_sealed FROM ca").all() as { key_sealed: Uint8Array }[];
    assert.equal(rows.length, 3);
    for (const r of rows) {
      assert.ok(!new TextDecoder("latin1").decode(r.key_sealed).includes("PRIVATE"));
    }
    a.close();
    assert.equal((await Deno.stat(`${dir}/secret.key`)).mode! & 0o777, 0o600);

    const b = await openState(dir);
    assert.equal(b.created, false);
    assert.equal(b.pki.rootFingerprint, fp);
    // The reloaded Fleet CA key still signs certificates the trust store accepts.
    const { generateCsr, issueLeaf } = await import("../../core/pki/mod.ts");
    const leaf = await issueLeaf(b.pki.cas, (await generateCsr("node")).csrPem, {
      kind: "node",
      host: "10.9.8.7",
    });
    assert.equal((await b.pki.trust.verify(leaf, { expect: "node" })).role, "node");
    b.close();

    // A secret.key from elsewhere cannot unseal the keys: a clear error, nothing lost.
    await Deno.writeFile(`${dir}/secret.key`, crypto.getRandomValues(new Uint8Array(32)));
    await assert.rejects(
      openState(dir),
      (e) => e instanceof KeystoreError && /same backup/.test(e.message),
    );
    await Deno.writeFile(`${dir}/secret.key`, new Uint8Array(5));
    await assert.rejects(
      openState(dir),
      (e) => e instanceof KeystoreError && e.code === "bad-secret",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state: without create, a missing or empty state is refused, naming it, creating nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const typo = `${dir}/stat`;
    await assert.rejects(openState(typo), (e) => {
      assert.ok(e instanceof StateError);
      assert.equal(e.code, "no-state");
      assert.ok(e.message.includes(`${typo}/pharos.db does not exist`), e.message);
      assert.match(e.message, /cox init --state/);
      return true;
    });
    assert.equal(await exists(typo), false, "no directory was created");

    // An existing but empty directory stays empty.
    await assert.rejects(openState(dir), (e) => e instanceof StateError && e.code === "no-state");
    assert.deepEqual(await listDir(dir), []);

    // A file where the directory should be, with or without create.
    await Deno.writeTextFile(`${dir}/file`, "x");
    for (const create of [false, true]) {
      await assert.rejects(
        openState(`${dir}/file`, { create }),
        (e) =>
          e instanceof StateError && e.code === "not-a-directory" && e.message.includes("file"),
      );
    }
    assert.equal(await Deno.readTextFile(`${dir}/file`), "x");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state: a database without its secret.key is refused and no new key is made", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await initState(dir);
    const st = await openState(dir);
    const fp = st.pki.rootFingerprint;
    st.close();
    await Deno.rename(`${dir}/secret.key`, `${dir}/secret.key.bak`);
    for (const create of [false, true]) {
      await assert.rejects(openState(dir, { create }), (e) => {
        assert.ok(e instanceof StateError);
        assert.equal(e.code, "missing-secret");
        assert.ok(e.message.includes(`${dir}/pharos.db`), e.message);
        assert.ok(e.message.includes(`${dir}/secret.key`), e.message);
        assert.match(e.message, /restore secret\.key from your backup/);
        return true;
      });
      assert.equal(await exists(`${dir}/secret.key`), false, "no key was created");
    }
    const c = capture();
    assert.equal(await runCli(["init", "--state", dir], c.io, noEnv), 1);
    assert.match(c.err.at(-1)!, /^error: .*restore secret\.key from your backup/);
    assert.equal(await runCli(["ca", "export", "--state", dir], c.io, noEnv), 1);
    assert.equal(await exists(`${dir}/secret.key`), false);

    // Restored from backup, the same CA is back.
    await Deno.rename(`${dir}/secret.key.bak`, `${dir}/secret.key`);
    const back = await openState(dir);
    assert.equal(back.pki.rootFingerprint, fp);
    back.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state: a database without a CA is refused, unless creating (an interrupted first start)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Keystore.create(dir);
    openDatabase(`${dir}/pharos.db`).close();
    await assert.rejects(openState(dir), (e) => {
      assert.ok(e instanceof StateError);
      assert.equal(e.code, "no-ca");
      assert.ok(e.message.includes(`${dir}/pharos.db holds no certificate authority`));
      return true;
    });
    const key = await Deno.readFile(`${dir}/secret.key`);
    const st = await openState(dir, { create: true });
    assert.equal(st.created, true);
    st.close();
    assert.deepEqual(await Deno.readFile(`${dir}/secret.key`), key, "the existing key is kept");
    // And a key without a database (the other interrupted order) is kept too.
    const fresh = `${dir}/fresh`;
    await Deno.mkdir(fresh);
    await Keystore.create(fresh);
    const freshKey = await Deno.readFile(`${fresh}/secret.key`);
    (await openState(fresh, { create: true })).close();
    assert.deepEqual(await Deno.readFile(`${fresh}/secret.key`), freshKey);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: cox init creates the state once; a second init is refused and changes nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const state = `${dir}/state`;
    const first = capture();
    assert.equal(await runCli(["init", "--state", state], first.io, noEnv), 0);
    assert.ok(first.err.some((l) => l === `created a new certificate authority in ${state}`));
    const fpLine = first.err.find((l) => l.startsWith("root CA fingerprint"))!;
    const fp = fpLine.split(": ")[1];
    assert.match(fp, /^[0-9a-f]{64}$/);
    assert.deepEqual(await listDir(state).then((l) => l.filter((f) => !f.includes("-"))), [
      "pharos.db",
      "secret.key",
    ]);
    assert.equal((await Deno.stat(state)).mode! & 0o777, 0o700);
    const key = await Deno.readFile(`${state}/secret.key`);

    const second = capture();
    assert.equal(
      await runCli(["init"], second.io, (n) => n === "PHAROS_STATE" ? state : undefined),
      1,
    );
    assert.equal(second.err.length, 1);
    assert.equal(
      second.err[0],
      `error: ${state} already holds a certificate authority (root CA fingerprint ${fp}); nothing was changed`,
    );
    assert.deepEqual(await Deno.readFile(`${state}/secret.key`), key);
    const st = await openState(state);
    assert.equal(st.pki.rootFingerprint, fp);
    st.close();

    // A preset flag does not get around the refusal either.
    const third = capture();
    assert.equal(await runCli(["init", "--enterprise", "--state", state], third.io, noEnv), 1);
    assert.match(third.err[0], /already holds a certificate authority/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: every cox command but init refuses a mistyped --state, naming it, creating nothing", async () => {
  const { generateCsr } = await import("../../core/pki/mod.ts");
  const dir = await Deno.makeTempDir();
  try {
    await initState(`${dir}/state`);
    await Deno.writeTextFile(`${dir}/relay.csr`, (await generateCsr("relay")).csrPem);
    const typo = `${dir}/sate`;
    const commands = [
      ["ca", "export"],
      [
        "relay",
        "sign",
        "--csr",
        `${dir}/relay.csr`,
        "--hosts",
        "r.example",
        "--out-dir",
        `${dir}/out`,
      ],
      ["settings", "list"],
      ["settings", "preset", "enterprise"],
      ["relays", "list"],
      ["nodes", "list"],
      ["nodes", "show", "fra-1"],
      ["nodes", "policy", "fra-1", "--isolation", "off"],
      ["nodes", "remove", "fra-1"],
      ["users", "add", "ann@example.com"],
      ["users", "list"],
      ["audit", "verify"],
      ["audit", "tail", "-n", "5"],
    ];
    for (const cmd of commands) {
      const c = capture();
      assert.equal(await runCli([...cmd, "--state", typo], c.io, noEnv), 1, cmd.join(" "));
      assert.equal(c.err.length, 1, c.err.join("\n"));
      assert.ok(c.err[0].startsWith(`error: no controller state in ${typo} `), c.err[0]);
      assert.ok(c.err[0].includes(`"deno task cox init --state ${typo}"`), c.err[0]);
      assert.equal(c.out.length, 0);
      assert.equal(await exists(typo), false, `${cmd.join(" ")} created ${typo}`);
      assert.equal(await exists(`${dir}/out`), false);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: cox refuses a config file with an unknown key, naming key and file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.json`, JSON.stringify({ stat: `${dir}/s` }));
    const c = capture();
    assert.equal(await runCli(["init", "--config", `${dir}/c.json`], c.io, noEnv), 1);
    assert.equal(
      c.err.at(-1),
      `error: config file ${dir}/c.json: unknown key "stat"; the keys are state, uiListen, logLevel, relayListen, relayHosts, relayTunnels, trustedProxies, allowedOrigins, metricsLoopback, maxConnections, maxConnectionsPerSource, handshakeTimeout, prefaceTimeout, idleTimeout`,
    );
    assert.equal(await exists(`${dir}/s`), false);
    await Deno.writeTextFile(`${dir}/c.json`, JSON.stringify({ state: 5 }));
    assert.equal(
      await runCli(["init"], c.io, (n) => n === "PHAROS_CONFIG" ? `${dir}/c.json` : undefined),
      1,
    );
    assert.match(c.err.at(-1)!, /c\.json: "state" must be a string/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: cox ca export prints root, Fleet CA and Device CA", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await initState(`${dir}/s`);
    const c = capture();
    assert.equal(await runCli(["ca", "export", "--state", `${dir}/s`], c.io, () => undefined), 0);
    const certs = parseCertificates(c.out.join(""));
    assert.deepEqual(certs.map((x) => x.subject.match(/CN=([^,]+)/)![1]), [
      "PharosVPN Root CA",
      "PharosVPN Fleet CA",
      "PharosVPN Device CA",
    ]);
    assert.ok(!c.err.some((l) => l.includes("created")));

    const again = capture();
    assert.equal(
      await runCli(
        ["ca", "export", "--which", "fleet"],
        again.io,
        (n) => n === "PHAROS_STATE" ? `${dir}/s` : undefined,
      ),
      0,
    );
    assert.equal(parseCertificates(again.out.join("")).length, 1);
    assert.equal(again.out.join(""), c.out[1], "the same Fleet CA is exported again");
    assert.ok(!again.err.some((l) => l.includes("created")));

    const bad = capture();
    assert.equal(
      await runCli(
        ["ca", "export", "--which", "nope", "--state", `${dir}/s`],
        bad.io,
        () => undefined,
      ),
      2,
    );
    assert.equal(await runCli(["frobnicate"], bad.io, () => undefined), 2);
    assert.ok(bad.err.at(-1)!.startsWith('unknown command "frobnicate"\nusage: cox'));
    assert.equal(await runCli(["ca", "export", "--bogus"], bad.io, () => undefined), 2);
    assert.ok(bad.err.at(-1)!.startsWith('unknown flag "--bogus"\nusage: cox'));
    const help = capture();
    assert.equal(await runCli(["--help"], help.io, () => undefined), 0);
    assert.match(help.out.join(""), /^usage: cox[\s\S]*\n {2}init /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: flag beats environment beats file beats default; bad values are named", () => {
  const env = (m: Record<string, string>) => (n: string) => m[n];
  assert.equal(resolveConfig({}, env({}), {}).state, "./state");
  assert.equal(resolveConfig({}, env({}), { state: "/f" }).state, "/f");
  assert.equal(resolveConfig({}, env({ PHAROS_STATE: "/e" }), { state: "/f" }).state, "/e");
  assert.equal(
    resolveConfig({ state: "/flag" }, env({ PHAROS_STATE: "/e" }), { state: "/f" }).state,
    "/flag",
  );
  assert.equal(resolveConfig({}, env({}), {}).uiListen, "127.0.0.1:8443");
  assert.throws(
    () => resolveConfig({}, env({ PHAROS_UI_LISTEN: "localhost" }), {}),
    (e) => e instanceof ConfigError && e.message.includes("PHAROS_UI_LISTEN"),
  );
  assert.throws(() => resolveConfig({}, env({}), { state: 5 }), ConfigError);
  assert.equal(checkListen("[::1]:8443"), undefined);
  assert.notEqual(checkListen("1.2.3.4:99999"), undefined);
});

Deno.test("cli: cox relay sign turns a relay's CSR into the files its directory needs", async () => {
  const { generateCsr, parseCertificates, TrustStore, SubjectAlternativeNameExtension } =
    await import(
      "../../core/pki/mod.ts"
    );
  const dir = await Deno.makeTempDir();
  try {
    const state = `${dir}/state`;
    await initState(state);
    const csr = await generateCsr("relay");
    await Deno.writeTextFile(`${dir}/relay.csr`, csr.csrPem);
    const c = capture();
    const args = [
      "relay",
      "sign",
      "--state",
      state,
      "--csr",
      `${dir}/relay.csr`,
      "--hosts",
      "relay.example.net, 203.0.113.7",
    ];
    assert.equal(await runCli([...args, "--out-dir", `${dir}/out`], c.io, () => undefined), 0);
    const read = (f: string) => Deno.readTextFile(`${dir}/out/${f}`);
    const [leaf, fleetCa] = parseCertificates(await read("relay.crt"));
    const trust = await TrustStore.create({
      root: parseCertificates(await read("ca.crt"))[0],
      fleetCa: parseCertificates(await read("fleet-ca.crt"))[0],
      deviceCa: parseCertificates(await read("device-ca.crt"))[0],
    });
    assert.equal(fleetCa.subject, trust.anchors.fleetCa.subject);
    assert.equal(
      (await trust.verify(leaf, { expect: "relay", usage: "serverAuth" })).role,
      "relay",
    );
    const sans = leaf.getExtension(SubjectAlternativeNameExtension)!.names.items.map((n) =>
      n.value
    );
    assert.deepEqual(sans.slice(0, 2), ["relay.example.net", "203.0.113.7"]);

    // Without --out-dir the certificate chain goes to stdout.
    const printed = capture();
    assert.equal(await runCli(args, printed.io, () => undefined), 0);
    assert.equal(parseCertificates(printed.out.join("")).length, 2);

    const bad = capture();
    assert.equal(
      await runCli(
        ["relay", "sign", "--state", state, "--csr", `${dir}/relay.csr`],
        bad.io,
        () => undefined,
      ),
      2,
    );
    await Deno.writeTextFile(`${dir}/bad.csr`, "not a csr");
    assert.equal(
      await runCli(
        ["relay", "sign", "--state", state, "--csr", `${dir}/bad.csr`, "--hosts", "r.example"],
        bad.io,
        () => undefined,
      ),
      1,
    );
    assert.match(bad.err.at(-1)!, /^error: CSR/);
    assert.equal(
      await runCli(
        ["relay", "sign", "--state", state, "--csr", `${dir}/none.csr`, "--hosts", "r.example"],
        bad.io,
        () => undefined,
      ),
      1,
    );
    assert.equal(
      await runCli(
        ["relay", "sign", "--state", state, "--csr", `${dir}/relay.csr`, "--hosts", "bad host"],
        bad.io,
        () => undefined,
      ),
      1,
    );
    assert.match(bad.err.at(-1)!, /neither an IP address nor a DNS name/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
