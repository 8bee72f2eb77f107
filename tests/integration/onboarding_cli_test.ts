/**
 * The `cox` side of SSH onboarding, in-process against a real sshd on
 * loopback: `ssh-key`; `nodes add` printing each step as it happens and
 * ending in one line and an exit code; targets and arguments carrying shell
 * characters refused before any connection (the sshd sees none); a changed
 * host key refused with the command that re-pins it; and quoted arguments
 * arriving intact through the login shells of root (bash) and of a system
 * user (sh).
 */
import assert from "node:assert/strict";
import { runCli } from "../../controller/cli/run.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { SshConnection } from "../../controller/ssh/client.ts";
import { commandLine } from "../../controller/ssh/quote.ts";
import { OnboardingLab, SUPPORT } from "../support/onboarding_fixture.ts";
import { ensureTestUser, removeTestUser, sshdCapability, TEST_USER } from "../support/sshd.ts";

const cap = sshdCapability("cox nodes add / ssh-key against sshd");

interface Captured {
  out: string;
  err: string[];
  code: number;
}

async function cox(args: string[], stdin?: string): Promise<Captured> {
  const c: Captured = { out: "", err: [], code: -1 };
  c.code = await runCli(args, {
    out: (t) => c.out += t,
    err: (l) => c.err.push(...l.split("\n")),
    stdin: stdin === undefined ? undefined : () => Promise.resolve(new TextEncoder().encode(stdin)),
  }, () => undefined);
  return c;
}

const connections = (log: string) => (log.match(/Connection from /g) ?? []).length;

Deno.test({
  name: "cox ssh-key and nodes add: progress, one final line, nothing sent for a bad argument",
  ignore: cap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const o = await OnboardingLab.create();
    const state = `${o.tmp}/state`;
    const user = await ensureTestUser();
    try {
      await t.step("ssh-key prints the same OpenSSH line each time", async () => {
        const a = await cox(["ssh-key", "--state", state]);
        assert.equal(a.code, 0);
        assert.equal(a.out, o.key.publicLine + "\n");
        assert.equal(a.err.length, 1);
        assert.ok(a.err[0].includes(o.key.fingerprint));
        const missing = await cox(["ssh-key", "--state", `${o.tmp}/nothing`]);
        assert.equal(missing.code, 1);
        assert.equal(missing.err.length, 1);
        assert.match(missing.err[0], /^error: no controller state/);
      });

      await t.step("shell characters in targets and arguments: exit 2, no connection", async () => {
        const p = o.sshd.port;
        const before = connections(o.sshd.log);
        const bad = [
          [`root@127.0.0.1;id`],
          [`root@127.0.0.1:${p};id`],
          [`root@$(id)`],
          [`root@127.0.0.1 -oProxyCommand=id`],
          [`root@127.0.0.1\nid`],
          [`ro;ot@127.0.0.1:${p}`],
          [`$(id)@127.0.0.1:${p}`],
          [`root@\`id\`:${p}`],
          [`${TEST_USER}@127.0.0.1:${p}`], // not root and no --sudo
        ];
        for (const args of bad) {
          const r = await cox(["nodes", "add", ...args, "--state", state]);
          assert.equal(r.code, 2, JSON.stringify(args));
          assert.equal(r.err.length, 1, r.err.join("\n"));
          assert.match(r.err[0], /^error: /);
        }
        const script = ["--install-script", `${SUPPORT}/onboarding_install.sh`];
        for (
          const [extra, why] of [
            [["--dir", "/tmp/a b"], /directory "\/tmp\/a b" must be an absolute path/],
            [["--dir", "/tmp/$(id)"], /directory "\/tmp\/\$\(id\)" must be/],
            [["--dir", "/tmp/x;reboot"], /must be an absolute path of letters/],
            [["--dir", "/tmp/x\nreboot"], /must be an absolute path of letters/],
            [["--dir", "relative"], /must be an absolute path/],
            [["--install-script", `${o.tmp}/missing.sh`], /install file .* does not exist/],
            [["--install-script", `${o.tmp}/in;stall.sh`], /is not a plain file name/],
            [["--name", "x;y", ...script], /node name "x;y"/],
            [["--name", "a\nb", ...script], /node name "a\\nb"/],
            [["--region", "$(id)", ...script], /region "\$\(id\)"/],
            [
              ["--accept-new-host-key", "SHA256:$(id)", ...script],
              /is not an SSH SHA256 fingerprint/,
            ],
          ] as [string[], RegExp][]
        ) {
          const args = extra.includes("--install-script") ? extra : [...extra, ...script];
          const r = await cox(["nodes", "add", `root@127.0.0.1:${p}`, ...args, "--state", state]);
          assert.equal(r.code, 1, JSON.stringify(extra));
          assert.equal(r.err.length, 1, r.err.join("\n"));
          assert.match(r.err[0], /^error: /);
          assert.match(r.err[0], why);
        }
        for (const stdin of ["", "\n", "two\nlines\n", "nul\0byte"]) {
          const r = await cox(
            ["nodes", "add", `root@127.0.0.1:${p}`, "--password-stdin", "--state", state],
            stdin,
          );
          assert.equal(r.code, 2, JSON.stringify(stdin));
          assert.equal(r.err.length, 1);
        }
        assert.equal(connections(o.sshd.log), before, "sshd saw a connection");
        assert.equal(new Nodes(o.service).list().length, 0);
      });

      await t.step(
        "nodes add: each step printed, a failure names the step and the re-run",
        async () => {
          const dir = o.hostDir("cli");
          const r = await cox([
            "nodes",
            "add",
            `root@127.0.0.1:${o.sshd.port}`,
            "--name",
            "cli-1",
            "--install-script",
            `${SUPPORT}/onboarding_install.sh`,
            "--dir",
            dir,
            "--state",
            state,
          ]);
          assert.equal(r.code, 1);
          assert.equal(r.out, "");
          const fp = await o.sshd.hostFingerprint();
          assert.match(r.err[0], /^\[1\/8\] connect: connecting to root@127\.0\.0\.1:\d+ …$/);
          assert.ok(
            r.err[1].startsWith(
              "[1/8] connect: ok — logged in with the controller's key; host key " + fp,
            ),
          );
          assert.match(r.err[1], /pinned on first use/);
          assert.match(r.err[2], /^\[2\/8\] privilege: checking that the user is root …$/);
          assert.match(r.err[3], /^\[2\/8\] privilege: ok — running as root$/);
          assert.match(
            r.err[5],
            /^\[3\/8\] install: ok — install script finished: test install script: nothing to do$/,
          );
          assert.match(r.err[7], /^\[4\/8\] gen-csr: FAILED \(command-failed\) — /);
          // The last line: what failed, why, and the command to run again.
          const last = r.err.at(-1)!;
          assert.equal(r.err.length, 9);
          assert.match(last, /^error: step "gen-csr" \(4\/8\) on root@127\.0\.0\.1:\d+ failed: /);
          assert.match(last, /pharos-agent/);
          assert.ok(
            last.includes(
              `run "deno task cox nodes add root@127.0.0.1:${o.sshd.port} --name cli-1 --install-script ${SUPPORT}/onboarding_install.sh --dir ${dir} --state ${state}" again: onboarding resumes`,
            ),
            last,
          );
          const show = await cox(["nodes", "show", "cli-1", "--state", state]);
          assert.equal(show.code, 0);
          assert.match(show.out, /onboarding:\s+failed \(step gen-csr\): command-failed: /);
          assert.match(
            show.out,
            new RegExp(`ssh host key:\\s+${fp.replace(/[+/]/g, "\\$&")} \\(ssh-ed25519\\)`),
          );
        },
      );

      await t.step("a changed host key: exit 1, the re-pin command, no login", async () => {
        await o.sshd.restart({ newHostKey: true });
        const fresh = await o.sshd.hostFingerprint();
        const r = await cox([
          "nodes",
          "add",
          `root@127.0.0.1:${o.sshd.port}`,
          "--name",
          "cli-1",
          "--install-script",
          `${SUPPORT}/onboarding_install.sh`,
          "--dir",
          o.hostDir("cli"),
          "--state",
          state,
        ]);
        assert.equal(r.code, 1);
        assert.equal(r.err.length, 3, r.err.join("\n"));
        assert.match(r.err[1], /^\[1\/8\] connect: FAILED \(host-key-changed\) — /);
        assert.match(
          r.err[2],
          /^error: step "connect" \(1\/8\) on .* failed: the SSH host key of 127\.0\.0\.1:\d+ changed/,
        );
        assert.ok(r.err[2].includes(`--accept-new-host-key ${fresh}`), r.err[2]);
        assert.doesNotMatch(o.sshd.log, /Accepted /);
      });

      await t.step(
        "quoted words pass intact through bash (root) and sh (system user)",
        async () => {
          const words = [
            "a b",
            "it's",
            "$(id)",
            "`id`",
            ";ls",
            "|",
            "&",
            "*",
            "$HOME",
            "\\",
            '"',
            "!x",
            "",
          ];
          for (const u of ["root", TEST_USER]) {
            const conn = await SshConnection.connect({
              target: { user: u, host: "127.0.0.1", port: o.sshd.port },
              auth: { privateKey: o.key.privatePem },
              verifyHostKey: () => {},
            });
            try {
              const r = await conn.exec(commandLine(["printf", "%s\\0", ...words]));
              assert.equal(r.code, 0);
              assert.deepEqual(
                new TextDecoder().decode(r.stdout).split("\0").slice(0, -1),
                words,
                u,
              );
            } finally {
              conn.close();
            }
          }
        },
      );
    } finally {
      await o.close();
      await removeTestUser(user.created);
    }
  },
});
