/**
 * deploy/install-agent.sh, the script the controller's SSH onboarding runs,
 * exercised without touching the test machine: everything goes under a
 * throwaway `--root` (a minimal /etc with os-release and empty user
 * databases), with no packages, no dependency download and no systemctl.
 * It creates the system user and the directories with tight modes, installs
 * the sources, the settings file and the unit; a second run changes nothing;
 * `--check` and `--dry-run` report drift without fixing it; an unsupported
 * system and a binary whose checksum does not match are refused.
 */
import assert from "node:assert/strict";
import { capability, hasCommand, isRoot } from "../support/capability.ts";
import { run } from "../support/run.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const SCRIPT = `${ROOT}deploy/install-agent.sh`;
const cap = capability(
  "integration agent install script",
  isRoot() && hasCommand("bash", ["--version"]) && hasCommand("useradd", ["--help"]) &&
    hasCommand("sha256sum", ["--version"]),
  "needs root (the script creates a system user, under --root here), bash, useradd (passwd), coreutils",
);

const DEBIAN =
  'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n';

async function fakeRoot(osRelease = DEBIAN): Promise<string> {
  const r = await Deno.makeTempDir({ prefix: "pharos-install-root-" });
  await Deno.mkdir(`${r}/etc`);
  await Deno.writeTextFile(`${r}/etc/os-release`, osRelease);
  for (const f of ["passwd", "group", "shadow", "gshadow"]) {
    await Deno.writeTextFile(`${r}/etc/${f}`, "");
  }
  // A stand-in for an installed Deno, so the script does not copy this machine's.
  await Deno.mkdir(`${r}/usr/local/bin`, { recursive: true });
  await Deno.writeTextFile(`${r}/usr/local/bin/deno`, "#!/bin/true\n", { mode: 0o755 });
  return r;
}

const install = (root: string, ...extra: string[]) =>
  run("bash", [SCRIPT, "--root", root, "--no-packages", "--no-deps", "--source", ROOT, ...extra]);

async function modeOwner(path: string): Promise<string> {
  const st = await Deno.stat(path);
  return `${(st.mode! & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
}

Deno.test({
  name:
    "integration agent install: user, modes, sources, unit; idempotent; --check/--dry-run; refusals",
  ignore: cap.ignore,
  async fn() {
    const root = await fakeRoot();
    try {
      const first = await install(root);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /changed: create system user pharos-agent/);
      const user = (await Deno.readTextFile(`${root}/etc/passwd`)).split("\n")
        .find((l) => l.startsWith("pharos-agent:"))!;
      assert.ok(user, "system user created in the root");
      const [, , uid, gid, , home, shell] = user.split(":");
      assert.ok(Number(uid) < 1000, "a system uid");
      assert.deepEqual([home, shell], ["/var/lib/pharos-agent", "/usr/sbin/nologin"]);
      assert.equal(await modeOwner(`${root}/var/lib/pharos-agent`), `700 ${uid}:${gid}`);
      assert.equal(await modeOwner(`${root}/var/cache/pharos-agent`), `750 ${uid}:${gid}`);
      assert.equal(await modeOwner(`${root}/etc/pharos-agent/agent.json`), `640 0:${gid}`);
      assert.match(first.stdout, /ok: \/usr\/local\/bin\/deno/);
      for (
        const f of [
          "agent/main.ts",
          "core/dataplane/mod.ts",
          "proto/pharos/node/v1/node.proto",
          "deno.lock",
        ]
      ) {
        assert.deepEqual(
          await Deno.readFile(`${root}/opt/pharos-agent/${f}`),
          await Deno.readFile(`${ROOT}${f}`),
          f,
        );
      }
      assert.equal(
        await Deno.readTextFile(`${root}/etc/systemd/system/pharos-agent.service`),
        await Deno.readTextFile(`${ROOT}deploy/systemd/pharos-agent.service`),
      );
      assert.match(first.stdout, /next: make the node key and CSR/);

      // Idempotent: the second run changes nothing.
      const second = await install(root);
      assert.equal(second.code, 0, second.stderr);
      assert.doesNotMatch(second.stdout, /changed:/);
      assert.match(second.stdout, /install-agent: nothing to change/);
      assert.equal((await install(root, "--check")).code, 0);

      // Drift: --check names it (exit 1), --dry-run changes nothing, a run repairs it.
      await Deno.chmod(`${root}/var/lib/pharos-agent`, 0o755);
      await Deno.writeTextFile(`${root}/opt/pharos-agent/agent/main.ts`, "// tampered\n");
      const check = await install(root, "--check");
      assert.equal(check.code, 1);
      assert.match(check.stdout, /would change: \/var\/lib\/pharos-agent: mode\/owner 755/);
      assert.match(check.stdout, /would change: install agent sources/);
      const dry = await install(root, "--dry-run");
      assert.equal(dry.code, 0);
      assert.equal(
        await modeOwner(`${root}/var/lib/pharos-agent`),
        `755 ${uid}:${gid}`,
        "dry run changed nothing",
      );
      assert.equal((await install(root)).code, 0);
      assert.equal(await modeOwner(`${root}/var/lib/pharos-agent`), `700 ${uid}:${gid}`);
      assert.deepEqual(
        await Deno.readFile(`${root}/opt/pharos-agent/agent/main.ts`),
        await Deno.readFile(`${ROOT}agent/main.ts`),
      );
      assert.doesNotMatch((await install(root)).stdout, /changed:/);

      // A binary whose checksum does not match is refused; a matching one installed once.
      const bin = `${root}/xray-upload`;
      await Deno.writeTextFile(bin, "#!/bin/true\n");
      const wrong = await install(root, "--xray", bin, "--xray-sha256", "0".repeat(64));
      assert.equal(wrong.code, 4);
      assert.match(wrong.stderr, /does not match its SHA-256/);
      const sha = (await run("sha256sum", [bin])).stdout.split(" ")[0];
      const good = await install(root, "--xray", bin, "--xray-sha256", sha);
      assert.equal(good.code, 0, good.stderr);
      assert.match(good.stdout, /changed: install \/usr\/local\/bin\/xray/);
      assert.equal(await modeOwner(`${root}/usr/local/bin/xray`), "755 0:0");
      assert.match(
        (await install(root, "--xray", bin, "--xray-sha256", sha)).stdout,
        /ok: \/usr\/local\/bin\/xray/,
      );
      // Bad arguments.
      assert.equal((await install(root, "--frobnicate")).code, 2);
      assert.equal((await install(root, "--xray", bin)).code, 2);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "integration agent install: an unsupported or too old system is refused before any change",
  ignore: cap.ignore,
  async fn() {
    for (
      const [os, re] of [
        ['ID=centos\nVERSION_ID="9"\n', /unsupported system "centos"/],
        ['ID=debian\nVERSION_ID="11"\n', /Debian 11 is too old/],
        ['ID=ubuntu\nVERSION_ID="20.04"\n', /Ubuntu 20.04 is too old/],
      ] as const
    ) {
      const root = await fakeRoot(os);
      try {
        const r = await install(root);
        assert.equal(r.code, 3, r.stdout + r.stderr);
        assert.match(r.stderr, re);
        assert.equal(await Deno.readTextFile(`${root}/etc/passwd`), "", "no user created");
        await assert.rejects(Deno.stat(`${root}/opt/pharos-agent`));
      } finally {
        await Deno.remove(root, { recursive: true });
      }
    }
    const mint = await fakeRoot('ID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_ID="21"\n');
    try {
      assert.equal((await install(mint, "--dry-run")).code, 0, "Debian derivatives are accepted");
    } finally {
      await Deno.remove(mint, { recursive: true });
    }
  },
});
