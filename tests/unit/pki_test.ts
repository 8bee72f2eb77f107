import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import * as pki from "../../core/pki/mod.ts";
import { PharosError } from "../../core/errors.ts";
import { makeFleet } from "../support/pki_fixture.ts";

const fleet = await makeFleet();
const other = await makeFleet(); // another installation: same CA names, other keys

const leaves = {
  controller: await fleet.issue({ kind: "controller-client" }),
  controllerServer: await fleet.issue({ kind: "controller-server" }),
  node: await fleet.issue({ kind: "node", host: "203.0.113.10" }),
  relay: await fleet.issue({ kind: "relay", hosts: ["relay.example.net", "198.51.100.7"] }),
  device: await fleet.issue({ kind: "device", name: "alice phone" }),
};

async function rejects(p: Promise<unknown>, code: string): Promise<PharosError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof pki.PkiError, `expected PkiError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.ok(e.message.length > 20, "message tells the operator something");
    return e;
  }
  assert.fail(`expected rejection with ${code}`);
}

function throwsCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof pki.PkiError, `expected PkiError, got ${e}`);
    assert.equal(e.code, code, e.message);
    return;
  }
  assert.fail(`expected ${code}`);
}

Deno.test("pki: CA hierarchy has the lifetimes, constraints and names of the contract", () => {
  const { root, fleet: f, device: d } = fleet.pki;
  const days = (c: x509.X509Certificate) =>
    Math.round((c.notAfter.getTime() - c.notBefore.getTime()) / 86_400_000);
  assert.equal(days(root.cert), 3650);
  assert.equal(days(f.cert), 1826);
  assert.equal(days(d.cert), 1826);
  assert.equal(root.cert.getExtension(x509.BasicConstraintsExtension)?.pathLength, 1);
  assert.equal(f.cert.getExtension(x509.BasicConstraintsExtension)?.pathLength, 0);
  assert.match(root.cert.subject, /CN=PharosVPN Root CA/);
  assert.match(f.cert.subject, /CN=PharosVPN Fleet CA/);
  assert.match(d.cert.subject, /CN=PharosVPN Device CA/);
  assert.equal((root.cert.publicKey.algorithm as EcKeyAlgorithm).namedCurve, "P-384");
});

Deno.test("pki: each leaf verifies with its own role and has a 1-year P-256 key", async () => {
  const cases = [
    [leaves.controller, "controller", "clientAuth"],
    [leaves.controllerServer, "controller", "serverAuth"],
    [leaves.node, "node", "serverAuth"],
    [leaves.relay, "relay", "serverAuth"],
    [leaves.relay, "relay", "clientAuth"],
    [leaves.device, "device", "clientAuth"],
  ] as const;
  for (const [leaf, role, usage] of cases) {
    const v = await fleet.trust.verify(leaf.chainPem, { expect: role, usage });
    assert.equal(v.role, role);
    assert.equal(v.serial, pki.serialOf(leaf.cert));
    assert.match(v.fingerprint, /^sha256:[0-9a-f]{64}$/);
    const days = (leaf.cert.notAfter.getTime() - leaf.cert.notBefore.getTime()) / 86_400_000;
    assert.ok(days > 365 && days < 365.01, `lifetime ${days}`);
    assert.equal((leaf.cert.publicKey.algorithm as EcKeyAlgorithm).namedCurve, "P-256");
  }
});

Deno.test("pki: role confusion is rejected at every verifier", async () => {
  // A node (or relay, or device) certificate where the controller is required.
  for (const leaf of [leaves.node, leaves.relay, leaves.device]) {
    await rejects(
      fleet.trust.verify(leaf.chainPem, { expect: "controller", usage: "clientAuth" }),
      "wrong-role",
    );
  }
  // A device leaf is never a node, relay or controller.
  for (const role of ["node", "relay", "controller"] as const) {
    await rejects(fleet.trust.verify(leaves.device.cert, { expect: role }), "wrong-role");
  }
  // The controller's server cert cannot act as a client.
  await rejects(
    fleet.trust.verify(leaves.controllerServer.cert, { expect: "controller", usage: "clientAuth" }),
    "wrong-usage",
  );
  // A node cert cannot be used as a TLS client at all.
  await rejects(
    fleet.trust.verify(leaves.node.cert, { expect: "node", usage: "clientAuth" }),
    "wrong-usage",
  );
});

Deno.test("pki: a role marker inconsistent with the issuer or the EKU is rejected", async () => {
  const { device, fleet: f } = fleet.pki;
  const keys = await pki.generateKeyPair("P-256");
  const make = async (ca: pki.CaMaterial, marker: string | null, eku: string[]) =>
    await x509.X509CertificateGenerator.create({
      serialNumber: "01",
      subject: "CN=forged",
      issuer: ca.cert.subjectName,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      publicKey: keys.publicKey,
      signingKey: ca.privateKey,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-384" },
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension(eku),
        await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
        ...(marker
          ? [new x509.SubjectAlternativeNameExtension([{ type: "url", value: marker }])]
          : []),
      ],
    });
  // Device CA never issues node identities, even with the node marker and EKU.
  await rejects(
    fleet.trust.verify(await make(device, "urn:pharos:role:node", [pki.EKU_SERVER]), {
      expect: "node",
    }),
    "wrong-role",
  );
  // Chaining to the Fleet CA with the right EKU is not enough without a marker.
  await rejects(
    fleet.trust.verify(await make(f, null, [pki.EKU_CLIENT]), { expect: "controller" }),
    "no-role",
  );
  // A node marker with client EKU (trying to drive other nodes) is refused.
  await rejects(
    fleet.trust.verify(await make(f, "urn:pharos:role:node", [pki.EKU_CLIENT]), { expect: "node" }),
    "wrong-role",
  );
  await rejects(
    fleet.trust.verify(await make(f, "urn:pharos:role:admin", [pki.EKU_CLIENT]), {
      expect: "controller",
    }),
    "no-role",
  );
  // A CA certificate presented as a leaf.
  await rejects(fleet.trust.verify(fleet.pki.fleet.cert, { expect: "controller" }), "leaf-is-ca");
});

Deno.test("pki: distinct errors for foreign root, expiry, future validity, revocation, altered signature", async () => {
  const foreign = await other.issue({ kind: "controller-client" });
  await rejects(fleet.trust.verify(foreign.chainPem, { expect: "controller" }), "unknown-issuer");

  const longAgo = new Date(Date.now() - 400 * 86_400_000);
  const expired = await fleet.issue({ kind: "node", host: "node1.example" }, { now: longAgo });
  await rejects(fleet.trust.verify(expired.cert, { expect: "node" }), "expired");

  const future = await fleet.issue({ kind: "node", host: "node1.example" }, {
    now: new Date(Date.now() + 86_400_000),
  });
  await rejects(fleet.trust.verify(future.cert, { expect: "node" }), "not-yet-valid");
  // and with an explicit clock, the same cert is fine tomorrow
  const tomorrow = new Date(Date.now() + 2 * 86_400_000);
  assert.equal(
    (await fleet.trust.verify(future.cert, { expect: "node", now: tomorrow })).role,
    "node",
  );

  const revoked = new pki.RevocationList([leaves.device.cert.serialNumber.toUpperCase()]);
  await rejects(fleet.trust.verify(leaves.device.cert, { expect: "device", revoked }), "revoked");
  // revocation takes effect in a live list without rebuilding anything
  const live = new pki.RevocationList();
  await fleet.trust.verify(leaves.node.cert, { expect: "node", revoked: live });
  live.add(leaves.node.cert.serialNumber);
  await rejects(fleet.trust.verify(leaves.node.cert, { expect: "node", revoked: live }), "revoked");

  const der = pki.certDer(leaves.controller.cert).slice();
  der[der.length - 3] ^= 0x01; // inside the ECDSA signature's s value
  await rejects(fleet.trust.verify(der, { expect: "controller" }), "bad-signature");
});

Deno.test("pki: the trust store refuses anchors that do not form our hierarchy", async () => {
  await rejects(
    pki.TrustStore.create({
      root: fleet.pki.root.cert,
      fleetCa: other.pki.fleet.cert,
      deviceCa: fleet.pki.device.cert,
    }),
    "unknown-issuer",
  );
  await rejects(
    pki.TrustStore.create({
      root: leaves.node.cert,
      fleetCa: fleet.pki.fleet.cert,
      deviceCa: fleet.pki.device.cert,
    }),
    "not-a-ca",
  );
});

Deno.test("pki: garbage, truncated and oversized PEM/DER give PkiError, never another exception", async () => {
  const pem = leaves.node.chainPem;
  const der = pki.certDer(leaves.node.cert);
  const inputs: (string | Uint8Array)[] = [
    "",
    "hello",
    "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n",
    pem.slice(0, pem.length / 2),
    pem.slice(0, 100) + pem.slice(200),
    "x".repeat(pki.MAX_PEM_INPUT + 1),
    pki.derToPem(new Uint8Array(pki.MAX_DER + 1), "CERTIFICATE"),
    pem.repeat(pki.MAX_BUNDLE),
    new Uint8Array(0),
    der.slice(0, der.length - 10),
    der.slice(10),
    crypto.getRandomValues(new Uint8Array(500)),
    new Uint8Array(pki.MAX_PEM_INPUT + 1),
  ];
  let seed = 7;
  for (let i = 0; i < 300; i++) {
    const m = der.slice();
    seed = (seed * 1103515245 + 12345) >>> 0;
    m[seed % m.length] = (seed >>> 8) & 0xff;
    inputs.push(m);
  }
  for (const input of inputs) {
    try {
      const certs = pki.parseCertificates(input);
      // A mutation that still parses must then fail (or pass) verification cleanly.
      await fleet.trust.verify(certs, { expect: "node" }).catch((e) => {
        assert.ok(e instanceof pki.PkiError, `verify threw ${e}`);
      });
    } catch (e) {
      assert.ok(e instanceof pki.PkiError, `parse threw ${e}`);
    }
  }
  throwsCode(() => pki.parseCertificates("x".repeat(pki.MAX_PEM_INPUT + 1)), "too-large");
  throwsCode(() => pki.parseCertificates("no pem here"), "empty");
  throwsCode(() => pki.parseCertificates(der.slice(0, 40)), "malformed");
});

Deno.test("pki: bundles with several certificates parse in order; PEM has 64-column lines", () => {
  const certs = pki.parseCertificates(
    "junk before\n" + leaves.relay.chainPem +
      "\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
  );
  assert.equal(certs.length, 2);
  assert.equal(certs[0].serialNumber, leaves.relay.cert.serialNumber);
  assert.equal(certs[1].subject, fleet.pki.fleet.cert.subject);
  const lines = pki.certPem(certs[0]).split("\n");
  assert.equal(lines[0], "-----BEGIN CERTIFICATE-----");
  assert.ok(lines.slice(1, -3).every((l) => l.length === 64));
  assert.equal(lines.at(-1), "");
  assert.equal(lines.at(-2), "-----END CERTIFICATE-----");
});

Deno.test("pki: fingerprints in the contract's two forms", async () => {
  const pemBytes = new TextEncoder().encode(pki.certPem(leaves.device.cert));
  const expectDevice = "sha256:" +
    new Uint8Array(await crypto.subtle.digest("SHA-256", pemBytes)).toHex();
  assert.equal(await pki.deviceFingerprint(leaves.device.cert), expectDevice);
  const derHash = new Uint8Array(
    await crypto.subtle.digest("SHA-256", pki.certDer(fleet.pki.root.cert)),
  ).toHex();
  const ca = await pki.caFingerprint(fleet.pki.root.cert);
  assert.equal(ca, derHash);
  const colons = ca.toUpperCase().match(/../g)!.join(":");
  assert.ok(pki.fingerprintsEqual(ca, "sha256:" + colons));
  assert.ok(!pki.fingerprintsEqual(ca, expectDevice));
  throwsCode(() => pki.normalizeFingerprint("sha256:abc"), "malformed");
  // A setting's list: any notation, empty entries skipped, one bad entry refused.
  assert.deepEqual(
    pki.fingerprintSet(` ${colons}, ,${expectDevice},`),
    new Set([ca, expectDevice.slice("sha256:".length)]),
  );
  assert.equal(pki.fingerprintSet("").size, 0);
  throwsCode(() => pki.fingerprintSet(`${ca},nope`), "malformed");
});

Deno.test("pki: fingerprint vector from a checked-in certificate", async () => {
  const dir = new URL("../vectors/pki/", import.meta.url);
  const pem = await Deno.readTextFile(new URL("fixed-leaf.pem", dir));
  const expected = JSON.parse(await Deno.readTextFile(new URL("fixed-leaf.json", dir)));
  const cert = pki.parseCertificate(pem);
  assert.equal(pki.certPem(cert), pem, "re-encoding reproduces the checked-in PEM byte for byte");
  assert.equal(await pki.deviceFingerprint(cert), expected.device_fingerprint);
  assert.equal(await pki.caFingerprint(cert), expected.der_sha256);
});

Deno.test("pki: renewal is due in the last third of the lifetime", () => {
  const c = leaves.node.cert;
  const at = (fraction: number) =>
    new Date(c.notBefore.getTime() + fraction * (c.notAfter.getTime() - c.notBefore.getTime()));
  assert.equal(pki.renewalDue(c, at(0.1)), false);
  assert.equal(pki.renewalDue(c, at(0.6)), false);
  assert.equal(pki.renewalDue(c, at(0.7)), true);
  assert.equal(pki.renewalDue(c, at(1.5)), true);
});

Deno.test("pki: CSRs are made locally, verified, and bad ones are refused", async () => {
  const node = await pki.generateCsr("node");
  const v = await pki.verifyCsr(node.csrPem);
  assert.match(v.subject, /CN=pharos-node-node/);
  assert.match(v.subject, /O=PharosVPN/);
  assert.equal(v.curve, "P-256");
  assert.match(node.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  // The key file can be reused: same public key in a new CSR.
  const reused = await pki.importKeyPair(node.keyPem);
  const again = await pki.generateCsr("node", { keys: reused });
  const spki = async (k: CryptoKey) =>
    new Uint8Array(await crypto.subtle.exportKey("spki", k)).toHex();
  assert.equal(await spki((await pki.verifyCsr(again.csrPem)).publicKey), await spki(v.publicKey));
  assert.match(
    (await pki.verifyCsr((await pki.generateCsr("relay")).csrPem)).subject,
    /CN=pharos-relay-relay/,
  );
  assert.match(
    (await pki.verifyCsr((await pki.generateCsr("device", { name: "bob" })).csrPem)).subject,
    /CN=bob/,
  );

  // Tampered: alter a byte of the subject inside the DER.
  const der = pki.pemBlocks(node.csrPem, "CERTIFICATE REQUEST")[0].slice();
  const at = new TextDecoder("latin1").decode(der).indexOf("pharos-node-node");
  der[at] ^= 0x20;
  await rejects(pki.verifyCsr(pki.derToPem(der, "CERTIFICATE REQUEST")), "bad-csr");
  await rejects(pki.verifyCsr("not a csr"), "bad-csr");
  await rejects(pki.verifyCsr(leaves.node.chainPem), "bad-csr");

  // RSA keys are not accepted.
  const rsa = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  const rsaCsr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=rsa",
    keys: rsa,
    signingAlgorithm: { name: "RSASSA-PKCS1-v1_5" },
  });
  await rejects(pki.verifyCsr(rsaCsr.toString("pem")), "unsupported-key");
  await rejects(
    pki.importKeyPair("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
    "unsupported-key",
  );
});

Deno.test("pki: issuance validates hosts and names", async () => {
  const csr = (await pki.generateCsr("node")).csrPem;
  for (const host of ["", "bad host", "a;b", "-x.example", "1.2.3.4.5", "[zz::1]"]) {
    await rejects(pki.issueLeaf(fleet.pki, csr, { kind: "node", host }), "malformed");
  }
  await rejects(pki.issueLeaf(fleet.pki, csr, { kind: "relay", hosts: [] }), "malformed");
  await rejects(
    pki.issueLeaf(fleet.pki, csr, { kind: "device", name: "line\nbreak" }),
    "malformed",
  );
  const v6 = await pki.issueLeaf(fleet.pki, csr, { kind: "node", host: "2001:DB8::1" });
  const san = v6.getExtension(x509.SubjectAlternativeNameExtension)!.names.items;
  assert.deepEqual(san.map((n) => [n.type, n.value]), [["ip", "2001:db8::1"], [
    "url",
    "urn:pharos:role:node",
  ]]);
  const dns = await pki.issueLeaf(fleet.pki, csr, { kind: "node", host: "Node1.Example.NET" });
  assert.equal(
    dns.getExtension(x509.SubjectAlternativeNameExtension)!.names.items[0].value,
    "node1.example.net",
  );
  // A CSR signed by one key but claiming another does not pass.
  await rejects(
    pki.issueLeaf(fleet.pki, "garbage", { kind: "node", host: "n.example" }),
    "bad-csr",
  );
});

Deno.test("pki: legacy controller pins admit exactly the pinned unmarked certificate", async () => {
  const { issueLegacyControllerCert } = await import("../support/pki_fixture.ts");
  const legacy = await issueLegacyControllerCert(fleet);
  const other = await issueLegacyControllerCert(fleet);
  await rejects(fleet.trust.verify(legacy.cert, { expect: "controller" }), "no-role");
  const fp = (await pki.caFingerprint(legacy.cert)).toUpperCase().match(/../g)!.join(":");
  const pins = new Set([pki.normalizeFingerprint(fp)]);
  const v = await fleet.trust.verify(legacy.cert, {
    expect: "controller",
    usage: "clientAuth",
    legacyControllerPins: pins,
  });
  assert.equal(v.role, "controller");
  await rejects(
    fleet.trust.verify(other.cert, { expect: "controller", legacyControllerPins: pins }),
    "no-role",
  );
  // A pin never lifts the other checks: revoked stays revoked.
  const revoked = new pki.RevocationList([legacy.cert.serialNumber]);
  await rejects(
    fleet.trust.verify(legacy.cert, { expect: "controller", legacyControllerPins: pins, revoked }),
    "revoked",
  );
  // A pinned certificate from the Device CA side is never a controller: pins apply to Fleet-CA leaves only.
  await rejects(
    fleet.trust.verify(leaves.device.cert, {
      expect: "controller",
      legacyControllerPins: new Set([await pki.caFingerprint(leaves.device.cert)]),
    }),
    "wrong-role",
  );
});
