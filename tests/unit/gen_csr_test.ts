/** `relay gen-csr` and `agent gen-csr`: local keys (0600), stable identity, verifiable CSRs. */
import assert from "node:assert/strict";
import { runAgentCli } from "../../agent/cli.ts";
import { runRelayCli } from "../../relay/cli.ts";
import { importKeyPair, verifyCsr } from "../../core/pki/mod.ts";

type Cli = typeof runRelayCli;
const cases: [string, Cli, string, RegExp][] = [
  ["relay", runRelayCli, "relay", /CN=pharos-relay-relay/],
  ["agent", runAgentCli, "node", /CN=pharos-node-node/],
];

for (const [name, cli, base, subject] of cases) {
  Deno.test(`${name} gen-csr writes a 0600 key, reuses it, and prints a valid CSR`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const out: string[] = [];
      const err: string[] = [];
      const io = { out: (t: string) => out.push(t), err: (l: string) => err.push(l) };
      assert.equal(await cli(["gen-csr", "--dir", `${dir}/cfg`], io, () => undefined), 0);
      const key = `${dir}/cfg/${base}.key`;
      assert.equal((await Deno.stat(key)).mode! & 0o777, 0o600);
      const first = await verifyCsr(out[0]);
      assert.match(first.subject, subject);
      assert.equal(await Deno.readTextFile(`${dir}/cfg/${base}.csr`), out[0]);
      const keyText = await Deno.readTextFile(key);

      // Second run: same key file, same public key in the new CSR.
      assert.equal(
        await cli(["gen-csr"], io, (n) => n.endsWith("_DIR") ? `${dir}/cfg` : undefined),
        0,
      );
      assert.equal(await Deno.readTextFile(key), keyText);
      const spki = async (k: CryptoKey) =>
        new Uint8Array(await crypto.subtle.exportKey("spki", k)).toHex();
      assert.equal(await spki((await verifyCsr(out[1])).publicKey), await spki(first.publicKey));
      assert.equal(
        await spki((await importKeyPair(keyText)).publicKey),
        await spki(first.publicKey),
      );
      assert.ok(err.some((l) => l.includes("reusing")));

      // A corrupt key file is reported, not replaced.
      await Deno.writeTextFile(
        key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
      );
      assert.equal(await cli(["gen-csr", "--dir", `${dir}/cfg`], io, () => undefined), 1);
      assert.match(err.at(-1)!, /^error: .*P-256/);
      assert.match(await Deno.readTextFile(key), /AAAA/);

      // A file where the directory should be.
      await Deno.writeTextFile(`${dir}/file`, "x");
      assert.equal(await cli(["gen-csr", "--dir", `${dir}/file`], io, () => undefined), 1);
      assert.equal(await cli(["bogus"], io, () => undefined), 2);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
