/**
 * The pieces of SSH onboarding that need no server: parsing of
 * `user@host[:port]`, argument checking and quoting (run through a real
 * `sh`), host-key fingerprints and the pinning decision, the controller's
 * Ed25519 key in OpenSSH format, setup checks, progress formatting, and the
 * controller key sealed in the database.
 */
import assert from "node:assert/strict";
import { Keystore } from "../../controller/keystore.ts";
import { formatProgress, OnboardingEvents } from "../../controller/onboarding/events.ts";
import type { OnboardingProgress } from "../../controller/onboarding/events.ts";
import { NODE_SETUP, resolveSetup } from "../../controller/onboarding/setup.ts";
import {
  diffRelayTargets,
  type RelayTargetChange,
  watchRelayTargets,
} from "../../controller/onboarding/relay_targets.ts";
import { Relays, relayTunnelTargets } from "../../controller/service/relays.ts";
import { extractCsr } from "../../controller/onboarding/certificate.ts";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { Service } from "../../controller/service/service.ts";
import { controllerSshKey } from "../../controller/ssh/controller_key.ts";
import {
  blobFingerprint,
  checkHostKey,
  hostKeyFromBlob,
  normalizeSshFingerprint,
  parseHostKeyLine,
} from "../../controller/ssh/host_key.ts";
import { sshKeyPair } from "../../controller/ssh/keypair.ts";
import { commandLine, remoteArg, remotePath, shellQuote } from "../../controller/ssh/quote.ts";
import { formatSshTarget, parseSshTarget } from "../../controller/ssh/target.ts";
import { openState } from "../../controller/state.ts";
import { fromBase64 } from "../../core/encoding.ts";
import { generateCsr } from "../../core/pki/mod.ts";
import { capability, hasCommand } from "../support/capability.ts";

const code = (c: string) => (e: Error & { code?: string }) => e.code === c;

Deno.test("ssh target: user@host[:port], IPv6 in brackets, defaults", () => {
  assert.deepEqual(parseSshTarget("root@203.0.113.7"), {
    user: "root",
    host: "203.0.113.7",
    port: 22,
  });
  assert.deepEqual(parseSshTarget("deploy@Node-1.Example.NET:2222"), {
    user: "deploy",
    host: "node-1.example.net",
    port: 2222,
  });
  assert.deepEqual(parseSshTarget("root@[2001:DB8::1]:22"), {
    user: "root",
    host: "2001:db8::1",
    port: 22,
  });
  assert.deepEqual(parseSshTarget("root@2001:db8::1"), {
    user: "root",
    host: "2001:db8::1",
    port: 22,
  });
  assert.deepEqual(parseSshTarget("host.example"), {
    user: "root",
    host: "host.example",
    port: 22,
  });
  assert.equal(formatSshTarget(parseSshTarget("root@[::1]:22")), "root@[::1]:22");
});

/** What an attacker (or a typo) might put where a host or user goes. */
const EVIL_TARGETS = [
  "root@host;id",
  "root@host$(id)",
  "root@$(id)",
  "root@`id`",
  "root@host name",
  "root@host\nid",
  "root@host:22;ls",
  "root@host:22 -oProxyCommand=id",
  "ro;ot@host",
  "$(id)@host",
  "root -oProxyCommand=x@host",
  "root@-oProxyCommand=x",
  "ro ot@host",
  "root\n@host",
  "root@host|id",
  "root@host&id",
  "root@host>x",
  "root@host'x",
  'root@host"x',
  "root@host\\x",
  "root@host*",
  "root@../../etc",
  "root@[::1];id:22",
  "root@host:0",
  "root@host:65536",
  "root@host:022",
  "",
  "@host",
  "root@",
];

Deno.test("ssh target: shell characters, spaces, newlines and options are refused", () => {
  for (const t of EVIL_TARGETS) {
    assert.throws(() => parseSshTarget(t), code("bad-target"), JSON.stringify(t));
  }
});

Deno.test("quoting: words reach a real sh exactly as given", async () => {
  const words = [
    "plain",
    "two words",
    "it's",
    "'",
    "''",
    "$(id)",
    "`id`",
    "a;b&c|d",
    "$HOME ${PATH}",
    "*",
    "~root",
    "\\",
    '"',
    "!",
    "-n",
    "",
    "ünïcödé",
  ];
  const line = commandLine(["printf", "%s\\0", ...words]);
  const out = await new Deno.Command("sh", { args: ["-c", line], stdout: "piped" }).output();
  assert.equal(out.code, 0);
  assert.deepEqual(new TextDecoder().decode(out.stdout).split("\0").slice(0, -1), words);
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
});

Deno.test("quoting: control characters, bad programs and bad paths are refused", () => {
  for (const bad of ["a\nb", "a\rb", "a\0b", "\x1b[2J", "a\tb", "x\u2028y"]) {
    assert.throws(() => remoteArg(bad), code("bad-argument"), JSON.stringify(bad));
    assert.throws(() => commandLine(["echo", bad]), code("bad-argument"));
  }
  assert.throws(() => remoteArg("x".repeat(4097)), code("bad-argument"));
  for (const prog of ["", "a b", "$(id)", ";ls", "-rf", "../x", "x;y"]) {
    assert.throws(() => commandLine([prog]), code("bad-argument"), prog);
  }
  assert.throws(() => commandLine([]), code("bad-argument"));
  assert.equal(commandLine(["/usr/bin/env", "x"]), `'/usr/bin/env' 'x'`);
  for (const p of ["/var/lib/pharos-agent", "/etc/pharos-relay", "/tmp/a_b.c+d-1"]) {
    assert.equal(remotePath(p), p);
  }
  for (
    const p of [
      "relative",
      "/a b",
      "/a;b",
      "/$(id)",
      "/a/../b",
      "/a//b",
      "/a/./b",
      "/a\nb",
      "/a'b",
      "/a*",
      "~/x",
      "",
    ]
  ) {
    assert.throws(() => remotePath(p), code("bad-argument"), JSON.stringify(p));
  }
});

Deno.test("setup: {dir} substituted, every value checked before connecting", () => {
  const s = resolveSetup({ ...NODE_SETUP, dir: "/srv/agent" });
  assert.deepEqual(s.genCsr, ["/usr/local/bin/pharos-agent", "gen-csr", "--dir", "/srv/agent"]);
  assert.equal(s.staged[0].remote, "/var/lib/pharos-onboarding/install-agent.sh");
  for (
    const bad of [
      { dir: "/srv/a b" },
      { dir: "/srv/$(id)" },
      { dir: "srv" },
      { stagingDir: "/tmp/x;y" },
      { genCsr: ["x;y"] },
      { genCsr: ["agent", "a\nb"] },
      { start: [["systemctl", "restart", "x\0"]] },
      { installArgs: ["--x", "line\nbreak"] },
      { installScript: "/tmp/install;rm.sh" },
      { installFiles: ["/tmp/unit file"] },
    ]
  ) {
    assert.throws(
      () => resolveSetup({ ...NODE_SETUP, ...bad }),
      code("bad-setup"),
      JSON.stringify(bad),
    );
  }
});

const keygen = capability(
  "SSH key formats against ssh-keygen",
  hasCommand("ssh-keygen", ["-?"]),
  "needs ssh-keygen (Debian package openssh-client)",
);

async function sshKeygen(args: string[]): Promise<string> {
  const out = await new Deno.Command("ssh-keygen", { args, stdout: "piped", stderr: "piped" })
    .output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

Deno.test({
  name: "host keys: the fingerprint is the one ssh-keygen prints",
  ignore: keygen.ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      for (const type of ["ed25519", "ecdsa", "rsa"]) {
        await sshKeygen(["-q", "-t", type, "-N", "", "-f", `${dir}/${type}`]);
        const line = (await Deno.readTextFile(`${dir}/${type}.pub`)).trim();
        const fp =
          (await sshKeygen(["-l", "-E", "sha256", "-f", `${dir}/${type}.pub`])).split(" ")[1];
        assert.equal(parseHostKeyLine(line).fingerprint, fp);
        assert.equal(blobFingerprint(fromBase64(line.split(" ")[1])), fp);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("host keys: pinning decisions", () => {
  const a = hostKeyFromBlob(fromBase64(sshKeyPair().publicLine.split(" ")[1]));
  const b = hostKeyFromBlob(fromBase64(sshKeyPair().publicLine.split(" ")[1]));
  const c = { where: "h:22", rerun: "cox nodes add root@h" };
  assert.equal(checkHostKey({ ...c, pinned: null, presented: a }), "pinned");
  assert.equal(checkHostKey({ ...c, pinned: a.line, presented: a }), "matches");
  assert.throws(
    () => checkHostKey({ ...c, pinned: a.line, presented: b }),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, "host-key-changed");
      assert.ok(e.message.includes(`cox nodes add root@h --accept-new-host-key ${b.fingerprint}`));
      assert.ok(e.message.includes(a.fingerprint));
      return true;
    },
  );
  assert.equal(
    checkHostKey({ ...c, pinned: a.line, presented: b, accept: b.fingerprint }),
    "re-pinned",
  );
  assert.throws(
    () => checkHostKey({ ...c, pinned: a.line, presented: b, accept: a.fingerprint }),
    code("host-key-mismatch"),
  );
  // On first contact an expected fingerprint is enforced too.
  assert.throws(
    () => checkHostKey({ ...c, pinned: null, presented: b, accept: a.fingerprint }),
    code("host-key-mismatch"),
  );
  assert.equal(normalizeSshFingerprint(a.fingerprint.slice(7) + "="), a.fingerprint);
  assert.equal(normalizeSshFingerprint("sha256:" + a.fingerprint.slice(7)), a.fingerprint);
  for (const bad of ["SHA256:short", "MD5:aa:bb", "", "SHA256:" + "A".repeat(42) + ";"]) {
    assert.throws(() => normalizeSshFingerprint(bad), code("bad-fingerprint"));
  }
  assert.throws(() => hostKeyFromBlob(new Uint8Array([0, 0, 0, 5, 1, 2])), code("bad-key"));
});

Deno.test({
  name: "controller key: an OpenSSH private key that ssh-keygen reads back",
  ignore: keygen.ignore,
  async fn() {
    const k = sshKeyPair(undefined, "pharos-controller");
    assert.match(
      k.publicLine,
      /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+=* pharos-controller$/,
    );
    assert.equal(sshKeyPair(k.seed, "pharos-controller").publicLine, k.publicLine);
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/id`, k.privatePem, { mode: 0o600 });
      assert.equal((await sshKeygen(["-y", "-f", `${dir}/id`])).trim(), k.publicLine);
      assert.equal(
        (await sshKeygen(["-l", "-E", "sha256", "-f", `${dir}/id`])).split(" ")[1],
        k.fingerprint,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("controller key: created once, sealed under secret.key, audited", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const st = await openState(`${dir}/s`, { create: true });
    try {
      const svc = new Service(st.db);
      const first = await controllerSshKey(svc, st.keystore, "cli:test");
      const again = await controllerSshKey(svc, st.keystore, "cli:test");
      assert.equal(first.created, true);
      assert.equal(again.created, false);
      assert.equal(again.publicLine, first.publicLine);
      const row = st.db.prepare("SELECT * FROM ssh_keys").get() as Record<string, unknown>;
      const sealed = row.key_sealed as Uint8Array;
      // The seed is not in the row in clear, and only this secret.key opens it.
      const hex = first.seed.toHex();
      assert.ok(!new Uint8Array(sealed).toHex().includes(hex));
      assert.ok(!JSON.stringify(row).includes(first.privatePem.split("\n")[1]));
      await Keystore.create(`${dir}`);
      const other = await Keystore.open(dir);
      await assert.rejects(other.open(sealed, "ssh:controller"), code("unseal-failed"));
      assert.deepEqual(await st.keystore.open(sealed, "ssh:controller"), first.seed);
      // A row whose public key was swapped is refused.
      st.db.prepare("UPDATE ssh_keys SET public_key = ?").run(sshKeyPair().publicLine);
      await assert.rejects(controllerSshKey(svc, st.keystore, "cli:test"), code("bad-key"));
      const audit = verifyAudit(st.db);
      assert.ok(audit.ok);
      const actions = st.db.prepare("SELECT action FROM audit_log").all().map((r) => r.action);
      assert.deepEqual(actions, ["ssh_key.create"]);
    } finally {
      st.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CSR extraction: the PEM block only, or a typed error", async () => {
  const { csrPem } = await generateCsr("node");
  assert.equal(extractCsr(`wrote /x/node.key\n${csrPem}trailing`), csrPem);
  assert.throws(() => extractCsr("nothing here"), code("no-csr"));
});

Deno.test("progress: one line per event; the hub fans out and keeps the recent ones", () => {
  const base: OnboardingProgress = {
    run: "r",
    kind: "node",
    id: "i",
    name: "fra-1",
    target: "root@h:22",
    step: "install",
    index: 3,
    total: 8,
    status: "started",
    message: "uploading and running install-agent.sh",
    time: new Date(0).toISOString(),
  };
  assert.equal(formatProgress(base), "[3/8] install: uploading and running install-agent.sh …");
  assert.equal(
    formatProgress({ ...base, status: "done", message: "ok" }),
    "[3/8] install: ok — ok",
  );
  assert.equal(
    formatProgress({ ...base, status: "failed", code: "command-failed", message: "exit 1" }),
    "[3/8] install: FAILED (command-failed) — exit 1",
  );
  const hub = new OnboardingEvents(2);
  const seen: string[] = [];
  const off = hub.subscribe((e) => seen.push(e.status));
  hub.subscribe(() => {
    throw new Error("a broken listener");
  });
  hub.emit(base);
  hub.emit({ ...base, status: "done" });
  off();
  hub.emit({ ...base, status: "failed" });
  assert.deepEqual(seen, ["started", "done"]);
  assert.deepEqual(hub.recent().map((e) => e.status), ["done", "failed"]);
});

Deno.test("relay targets: the relays table drives the tunnel set; changes are reported", async () => {
  const dir = await Deno.makeTempDir();
  const st = await openState(`${dir}/s`, { create: true });
  try {
    const relays = new Relays(new Service(st.db));
    const changes: RelayTargetChange[] = [];
    const stop = watchRelayTargets(st.db, {
      intervalMs: 3_600_000,
      onChange: (c) => changes.push(c),
    });
    stop();
    assert.deepEqual(changes, []);
    // A relay signed by hand (cox relay sign) is dialled; one being onboarded is not yet.
    relays.certified("cli:test", "relay-a.example.net", "0a");
    const b = relays.beginOnboarding("cli:test", {
      host: "relay-b.example.net",
      sshPort: 22,
      sshUser: "root",
    });
    relays.certifiedOnboarding("cli:test", b.id, {
      serial: "0b",
      pem: "PEM",
      hosts: ["relay-b.example.net"],
    });
    const first = relayTunnelTargets(st.db);
    assert.deepEqual(first.map((t) => t.target), ["relay-a.example.net:8444"]);
    relays.onboarded("cli:test", b.id, "ready");
    const second = relayTunnelTargets(st.db);
    assert.deepEqual(second.map((t) => t.target), [
      "relay-a.example.net:8444",
      "relay-b.example.net:8444",
    ]);
    assert.deepEqual(diffRelayTargets(first, second), { added: [second[1]], removed: [] });
    // A later failed re-run keeps it; a new tunnel port is a change.
    relays.beginOnboarding("cli:test", {
      host: "relay-b.example.net",
      sshPort: 22,
      sshUser: "root",
      tunnelPort: 9444,
    });
    relays.onboardingFailed("cli:test", b.id, "install", "boom");
    const third = relayTunnelTargets(st.db);
    assert.equal(third[1].target, "relay-b.example.net:9444");
    assert.deepEqual(diffRelayTargets(second, third), { added: [third[1]], removed: [second[1]] });
    const seen: RelayTargetChange[] = [];
    watchRelayTargets(st.db, { intervalMs: 3_600_000, onChange: (c) => seen.push(c) })();
    assert.deepEqual(seen, [{ added: third, removed: [] }]);
  } finally {
    st.close();
    await Deno.remove(dir, { recursive: true });
  }
});
