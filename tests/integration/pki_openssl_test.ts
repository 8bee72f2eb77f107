/** Every kind of certificate we issue, checked by the real OpenSSL. */
import assert from "node:assert/strict";
import * as pki from "../../core/pki/mod.ts";
import { capability, hasCommand } from "../support/capability.ts";
import { makeFleet } from "../support/pki_fixture.ts";
import { run } from "../support/run.ts";

const cap = capability(
  "pki vs openssl",
  hasCommand("openssl", ["version"]),
  "the openssl binary is not installed (apt-get install openssl)",
);

Deno.test({
  name: "openssl verifies every issued certificate and shows the intended extensions",
  ...cap,
  fn: async () => {
    const fleet = await makeFleet();
    const dir = await Deno.makeTempDir({ prefix: "pharos-openssl-" });
    try {
      const write = async (name: string, text: string) => {
        const p = `${dir}/${name}`;
        await Deno.writeTextFile(p, text);
        return p;
      };
      const root = await write("root.pem", pki.certPem(fleet.pki.root.cert));
      const fleetCa = await write("fleet.pem", pki.certPem(fleet.pki.fleet.cert));
      const deviceCa = await write("device-ca.pem", pki.certPem(fleet.pki.device.cert));

      // The intermediates verify against the root.
      for (const ca of [fleetCa, deviceCa]) {
        const r = await run("openssl", ["verify", "-CAfile", root, ca]);
        assert.equal(r.code, 0, r.stderr + r.stdout);
      }
      const rootText = (await run("openssl", ["x509", "-noout", "-text", "-in", root])).stdout;
      assert.match(rootText, /CA:TRUE, pathlen:1/);
      assert.match(rootText, /Certificate Sign, CRL Sign/);
      assert.match(rootText, /ASN1 OID: secp384r1/);
      assert.match(
        (await run("openssl", ["x509", "-noout", "-text", "-in", fleetCa])).stdout,
        /CA:TRUE, pathlen:0/,
      );

      const cases = [
        {
          profile: { kind: "controller-client" } as const,
          inter: fleetCa,
          purpose: "sslclient",
          eku: "TLS Web Client Authentication",
          role: "controller",
        },
        {
          profile: { kind: "controller-server" } as const,
          inter: fleetCa,
          purpose: "sslserver",
          eku: "TLS Web Server Authentication",
          role: "controller",
        },
        {
          profile: { kind: "node", host: "203.0.113.9" } as const,
          inter: fleetCa,
          purpose: "sslserver",
          eku: "TLS Web Server Authentication",
          role: "node",
        },
        {
          profile: { kind: "relay", hosts: ["relay.example.net"] } as const,
          inter: fleetCa,
          purpose: "sslserver",
          eku: "TLS Web Server Authentication, TLS Web Client Authentication",
          role: "relay",
        },
        {
          profile: { kind: "device", name: "alice" } as const,
          inter: deviceCa,
          purpose: "sslclient",
          eku: "TLS Web Client Authentication",
          role: "device",
        },
      ];
      for (const c of cases) {
        const leaf = await fleet.issue(c.profile);
        const path = await write(`${c.profile.kind}.pem`, pki.certPem(leaf.cert));
        const v = await run("openssl", [
          "verify",
          "-CAfile",
          root,
          "-untrusted",
          c.inter,
          "-purpose",
          c.purpose,
          path,
        ]);
        assert.equal(v.code, 0, `${c.profile.kind}: ${v.stderr}${v.stdout}`);
        assert.match(v.stdout, /: OK/);
        const text = (await run("openssl", ["x509", "-noout", "-text", "-in", path])).stdout;
        assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature\n/);
        assert.match(text, /CA:FALSE/);
        assert.ok(text.includes(c.eku), `${c.profile.kind} EKU: ${text}`);
        assert.ok(text.includes(`URI:urn:pharos:role:${c.role}`));
        assert.match(text, /ASN1 OID: prime256v1/);
        assert.match(text, /Signature Algorithm: ecdsa-with-SHA384/);
        const dates =
          (await run("openssl", ["x509", "-noout", "-startdate", "-enddate", "-in", path])).stdout;
        const [, nb] = dates.match(/notBefore=(.*)/)!;
        const [, na] = dates.match(/notAfter=(.*)/)!;
        const days = (Date.parse(na) - Date.parse(nb)) / 86_400_000;
        assert.ok(days > 364.99 && days < 365.01, `${c.profile.kind} validity ${days} days`);

        // A leaf of the wrong issuing CA does not verify (the harness really checks).
        const wrongInter = c.inter === fleetCa ? deviceCa : fleetCa;
        const bad = await run("openssl", [
          "verify",
          "-CAfile",
          root,
          "-untrusted",
          wrongInter,
          path,
        ]);
        assert.notEqual(bad.code, 0);
      }
      // A certificate from another root fails.
      const other = await makeFleet();
      const foreign = await write(
        "foreign.pem",
        pki.certPem((await other.issue({ kind: "device", name: "x" })).cert),
      );
      assert.notEqual(
        (await run("openssl", ["verify", "-CAfile", root, "-untrusted", deviceCa, foreign])).code,
        0,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "openssl accepts our CSRs and reads our PKCS#8 keys",
  ...cap,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pharos-openssl-" });
    try {
      for (const kind of ["node", "relay", "device"] as const) {
        const csr = await pki.generateCsr(kind);
        await Deno.writeTextFile(`${dir}/r.csr`, csr.csrPem);
        await Deno.writeTextFile(`${dir}/r.key`, csr.keyPem);
        const v = await run("openssl", ["req", "-verify", "-noout", "-in", `${dir}/r.csr`]);
        assert.equal(v.code, 0, v.stderr);
        assert.match(v.stderr + v.stdout, /verify OK|Certificate request self-signature verify OK/);
        const k = await run("openssl", ["pkey", "-noout", "-text", "-in", `${dir}/r.key`]);
        assert.equal(k.code, 0, k.stderr);
        assert.match(k.stdout, /prime256v1/);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
