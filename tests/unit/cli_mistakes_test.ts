/** Command-line mistakes on `relay` and `agent`: named, with the usage, exit 2; nothing done. */
import assert from "node:assert/strict";
import { runAgentCli } from "../../agent/cli.ts";
import { runRelayCli } from "../../relay/cli.ts";

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (l: string) => err.push(l) }, out, err };
}

const noEnv = () => undefined;

for (const [name, cli] of [["relay", runRelayCli], ["agent", runAgentCli]] as const) {
  Deno.test(`${name} cli: an unknown command or flag is named, with the usage, exit 2`, async () => {
    const frob = capture();
    assert.equal(await cli(["frob"], frob.io, noEnv), 2);
    assert.equal(frob.err.length, 1);
    assert.ok(frob.err[0].startsWith(`unknown command "frob"\nusage: ${name} <command>`));
    assert.equal(frob.out.length, 0);

    const extra = capture();
    assert.equal(await cli(["gen-csr", "now"], extra.io, noEnv), 2);
    assert.ok(extra.err[0].startsWith(`unknown command "gen-csr now"\n`));

    const none = capture();
    assert.equal(await cli([], none.io, noEnv), 2);
    assert.ok(none.err[0].startsWith(`usage: ${name} <command>`));

    const flag = capture();
    assert.equal(await cli(["gen-csr", "--bogus"], flag.io, noEnv), 2);
    assert.ok(flag.err[0].startsWith(`unknown flag "--bogus"\nusage: ${name}`), flag.err[0]);

    const help = capture();
    assert.equal(await cli(["--help"], help.io, noEnv), 0);
    assert.ok(help.out.join("").startsWith(`usage: ${name} <command>`));
    assert.equal(help.err.length, 0);
  });
}

Deno.test("relay cli: a config file with an unknown key is refused, naming key and file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const env = (n: string) => n === "PHAROS_RELAY_DIR" ? `${dir}/relay` : undefined;
    await Deno.writeTextFile(`${dir}/relay.json`, JSON.stringify({ clientAdr: ":9443" }));
    const c = capture();
    assert.equal(await runRelayCli(["gen-csr", "--config", `${dir}/relay.json`], c.io, env), 1);
    assert.equal(c.err.length, 1);
    assert.match(
      c.err[0],
      new RegExp(
        `^error: config file ${dir}/relay\\.json: unknown key "clientAdr"; the keys are dir, clientAddr,`,
      ),
    );
    await assert.rejects(Deno.stat(`${dir}/relay`), Deno.errors.NotFound);

    await Deno.writeTextFile(`${dir}/relay.json`, JSON.stringify({ clientAddr: 9443 }));
    assert.equal(await runRelayCli(["gen-csr", "--config", `${dir}/relay.json`], c.io, env), 1);
    assert.match(c.err.at(-1)!, /relay\.json: "clientAddr" must be a string/);
    await assert.rejects(Deno.stat(`${dir}/relay`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
