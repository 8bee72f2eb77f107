/**
 * `cox profiles reseal`: in-process on a real state (the accounts
 * fixture's: keystore, CA, enrolled devices) it prints "n of m devices
 * resealed" on stderr as it goes and one closing line; every profile's
 * revision goes up. As operators run it (a process) it ends the same way.
 * A device that cannot be resealed ends in exit 1 and one error line, the
 * others resealed all the same; usage mistakes exit 2 and change nothing.
 */
import assert from "node:assert/strict";
import { runCli } from "../../controller/cli/run.ts";
import { statement } from "../../controller/db/sqlite.ts";
import {
  type AccountsFixture,
  accountsFixture,
  ADMIN,
  claimOf,
  clientKeys,
} from "../support/accounts_fixture.ts";
import { run } from "../support/run.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const noEnv = () => undefined;

async function cox(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, { out: (t) => out.push(t), err: (l) => err.push(l) }, noEnv);
  return { code, out: out.join(""), err };
}

function revisions(fx: AccountsFixture): Map<string, number> {
  const rows = statement(fx.state.db, "SELECT device_id, revision FROM sealed_profiles")
    .all() as { device_id: string; revision: number }[];
  return new Map(rows.map((r) => [r.device_id, Number(r.revision)]));
}

Deno.test({
  name: "cox profiles reseal: progress as it goes, one closing line, exit codes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const fx = await accountsFixture();
    const state = `${fx.dir}/state`;
    try {
      for (const name of ["fra-1", "ams-1"]) {
        const id = fx.addNode(name);
        // As the fleet driver records it: the key lands in the nodes table the CLI reads.
        await fx.accounts.nodeKeyObserved(id, fx.nodeKeys.get(id)!);
      }
      const devices: string[] = [];
      for (const email of ["alice@example.net", "bob@example.net"]) {
        fx.accounts.createUser(ADMIN, email);
        for (let i = 0; i < 2; i++) {
          const t = fx.accounts.createTicket(email, { actor: ADMIN, unbound: true });
          const token = new URL(t.url).searchParams.get("token")!;
          devices.push((await fx.accounts.claim(claimOf(token, await clientKeys()))).deviceId);
        }
      }

      // Mistakes: exit 2, one line, nothing resealed.
      const before = revisions(fx);
      for (
        const [args, msg] of [
          [[], /--user ID .* or --all/],
          [["--all", "--user", "bob@example.net"], /not both/],
          [["--user", "nobody@example.net"], /no user "nobody@example\.net"/],
        ] as [string[], RegExp][]
      ) {
        const r = await cox(["profiles", "reseal", ...args, "--state", state]);
        assert.equal(r.code, 2, args.join(" "));
        assert.equal(r.err.length, 1);
        assert.match(r.err[0], msg);
      }
      assert.deepEqual(revisions(fx), before);

      const all = await cox(["profiles", "reseal", "--all", "--state", state]);
      assert.equal(all.code, 0, all.err.join("\n"));
      assert.deepEqual(all.err, [
        "[0/4] 4 to reseal",
        "[1/4] 1 of 4 devices resealed",
        "[2/4] 2 of 4 devices resealed",
        "[3/4] 3 of 4 devices resealed",
        "[4/4] 4 of 4 devices resealed",
      ]);
      assert.equal(all.out, "4 of 4 device profiles of every user resealed\n");
      const afterAll = revisions(fx);
      const sealedBy = statement(
        fx.state.db,
        "SELECT actor FROM audit_log WHERE action = 'sealed_profile.seal' ORDER BY seq DESC LIMIT 4",
      ).all() as { actor: string }[];
      assert.ok(sealedBy.every((r) => r.actor.startsWith("cli:")), JSON.stringify(sealedBy));
      for (const d of devices) assert.equal(afterAll.get(d), before.get(d)! + 1);

      // As operators run it: a process, one closing line on stdout, exit 0.
      const p = await run(
        "deno",
        [
          "task",
          "--quiet",
          "cox",
          "profiles",
          "reseal",
          "--user",
          "bob@example.net",
          "--state",
          state,
        ],
        { cwd: ROOT, timeoutMs: 120_000 },
      );
      assert.equal(p.code, 0, p.stderr);
      assert.equal(p.stdout, "2 of 2 device profiles of bob@example.net resealed\n");
      assert.match(p.stderr, /\[2\/2\] 2 of 2 devices resealed/);
      const afterBob = revisions(fx);
      assert.deepEqual(devices.map((d) => afterBob.get(d)! - afterAll.get(d)!), [0, 0, 1, 1]);

      // One device's preshared keys no longer open: reported, the others resealed, exit 1.
      statement(fx.state.db, "UPDATE node_peers SET psk_sealed = ? WHERE device_id = ?")
        .run(crypto.getRandomValues(new Uint8Array(60)), devices[0]);
      const broken = await cox(["profiles", "reseal", "--all", "--state", state]);
      assert.equal(broken.code, 1);
      const failedLines = broken.err.filter((l) => / FAILED \(reseal-failed\) — device /.test(l));
      assert.equal(failedLines.length, 1, broken.err.join("\n"));
      assert.ok(failedLines[0].includes(devices[0]));
      assert.match(broken.err.at(-2)!, /^\[4\/4\] 3 of 4 devices resealed, 1 failed$/);
      assert.match(broken.err.at(-1)!, /^error: 1 of 4 device profiles could not be resealed/);
      assert.equal(broken.out, "");
      const afterBroken = revisions(fx);
      assert.deepEqual(devices.map((d) => afterBroken.get(d)! - afterBob.get(d)!), [0, 1, 1, 1]);
    } finally {
      await fx.close();
    }
  },
});
