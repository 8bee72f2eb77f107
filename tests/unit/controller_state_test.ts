import assert from "node:assert/strict";
import { runCli } from "../../controller/cli/run.ts";
import { ConfigError, resolveConfig } from "../../controller/config.ts";
import { checkListen } from "../../core/settings.ts";
import { openState } from "../../controller/state.ts";
import { KeystoreError } from "../../controller/keystore.ts";
import { parseCertificates } from "../../core/pki/mod.ts";

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (l: string) => err.push(l) }, out, err };
}

Deno.test("state: the PKI is created once, sealed at rest, and reloaded identically", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await openState(dir);
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

Deno.test("cli: cox ca export prints root, Fleet CA and Device CA, creating the PKI on demand", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const c = capture();
    assert.equal(await runCli(["ca", "export", "--state", `${dir}/s`], c.io, () => undefined), 0);
    const certs = parseCertificates(c.out.join(""));
    assert.deepEqual(certs.map((x) => x.subject.match(/CN=([^,]+)/)![1]), [
      "PharosVPN Root CA",
      "PharosVPN Fleet CA",
      "PharosVPN Device CA",
    ]);
    assert.ok(c.err.some((l) => l.includes("created a new certificate authority")));

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
    assert.equal(await runCli(["ca", "export", "--bogus"], bad.io, () => undefined), 2);
    assert.ok(bad.err.some((l) => l.includes("unknown command")));
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
