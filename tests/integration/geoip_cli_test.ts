/**
 * `cox geoip download|status` against a loopback server: progress on
 * stderr as it happens, one final line, exit 0 / 1 / 2; a failed download
 * leaves the database in use. Once in-process and once as a process; each
 * download audited as the API's request is, by the CLI actor; and a
 * running controller switching to the file the command wrote.
 */
import assert from "node:assert/strict";
import { ApiTokens } from "../../controller/api/tokens.ts";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { runCli } from "../../controller/cli/run.ts";
import { cliActor } from "../../controller/cli/with_state.ts";
import { DOWNLOAD_REQUEST_KEY } from "../../controller/geoip/request_audit.ts";
import { resolveConfig } from "../../controller/config.ts";
import { startController } from "../../controller/serve.ts";
import { openState } from "../../controller/state.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { goCapability } from "../support/go_peer.ts";
import { gzip, serveFiles, tarGz, writeCityDb } from "../support/geoip_fixture.ts";
import { run } from "../support/run.ts";
import { WAIT_MS, within } from "../support/wait.ts";

const cap = goCapability("cox geoip");
const ROOT = new URL("../../", import.meta.url).pathname;

interface Captured {
  out: string;
  err: string[];
  code: number;
}

async function cox(args: string[]): Promise<Captured> {
  const c: Captured = { out: "", err: [], code: -1 };
  c.code = await runCli(args, {
    out: (t) => c.out += t,
    err: (l) => c.err.push(...l.split("\n")),
  }, () => undefined);
  return c;
}

Deno.test({
  name:
    "cox geoip: download prints progress and one line; a bad archive exits 1 keeping the database",
  ...cap,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pharos-geoip-cli-" });
    const state = `${dir}/state`;
    const db = await writeCityDb(`${dir}/src.mmdb`);
    const server = serveFiles({
      "/dbip-city-lite.mmdb.gz": await gzip(db),
      "/nothing.tar.gz": await tarGz({ "README.txt": new TextEncoder().encode("x") }),
    });
    try {
      assert.equal((await cox(["init", "--state", state])).code, 0);
      let st = await cox(["geoip", "status", "--state", state]);
      assert.equal(st.code, 0);
      assert.match(st.out, /^no GeoIP database: the map places hosts by their region code\n$/);

      const ok = await cox([
        "geoip",
        "download",
        "--state",
        state,
        "--url",
        server.url("/dbip-city-lite.mmdb.gz"),
      ]);
      assert.equal(ok.code, 0, ok.err.join("\n"));
      assert.equal(ok.err[0], `downloading ${server.url("/dbip-city-lite.mmdb.gz")}`);
      assert.ok(ok.err.some((l) => /^received .* \(100%\)$/.test(l)), ok.err.join("\n"));
      assert.deepEqual(ok.err.slice(-2), ["validating the database", "installing it"]);
      assert.match(
        ok.out,
        /^GeoIP database GeoLite2-City of \d{4}-\d\d-\d\d installed \([\d.]+ (B|KiB|MiB)\)\n$/,
      );
      assert.deepEqual(await Deno.readFile(`${state}/geoip/city.mmdb`), db);

      // `geoip update` (DESIGN.md's name) is the same command.
      const bad = await cox([
        "geoip",
        "update",
        "--state",
        state,
        "--url",
        server.url("/nothing.tar.gz"),
      ]);
      assert.equal(bad.code, 1);
      assert.equal(bad.out, "");
      assert.match(bad.err.at(-1)!, /^error: the downloaded archive holds no \.mmdb file/);
      assert.deepEqual(await Deno.readFile(`${state}/geoip/city.mmdb`), db, "the database stays");

      st = await cox(["geoip", "status", "--state", state]);
      assert.equal(st.code, 0);
      const lines = st.out.trimEnd().split("\n");
      assert.match(lines[0], /^last download: \S+ failed \(geoip-archive\) /);
      assert.match(lines.at(-1)!, /^GeoIP database GeoLite2-City of .* in use/);

      const usage = await cox(["geoip", "download", "extra", "--state", state]);
      assert.equal(usage.code, 2);
      assert.match(usage.err.join("\n"), /unexpected argument "extra"/);

      // As an operator runs it: a separate process, its exit code and streams.
      const proc = await run(Deno.execPath(), [
        "task",
        "--quiet",
        "cox",
        "geoip",
        "download",
        "--state",
        state,
        "--url",
        server.url("/missing.mmdb"),
      ], { cwd: ROOT, timeoutMs: 120_000 });
      assert.equal(proc.code, 1);
      assert.equal(proc.stdout, "");
      const errLines = proc.stderr.trimEnd().split("\n");
      assert.match(errLines.at(-1)!, /^error: the GeoIP server answered HTTP 404 /);
      assert.ok(!/\bat .*\.ts:\d+/.test(proc.stderr), "no stack trace");
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cox geoip: every download is audited as the API's request is, by the CLI actor, secrets hidden",
  ...cap,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pharos-geoip-cli-audit-" });
    const state = `${dir}/state`;
    const server = serveFiles({ "/city.mmdb": await writeCityDb(`${dir}/src.mmdb`) });
    const KEY = "LicenceKey7Q2";
    try {
      assert.equal((await cox(["init", "--state", state])).code, 0);
      const audited = async () => {
        const st = await openState(state);
        try {
          const rows = st.db.prepare(
            "SELECT actor, target_type, target_id FROM audit_log WHERE action = 'geoip.download' ORDER BY seq",
          ).all() as { actor: string; target_type: string; target_id: string }[];
          const row = st.db.prepare("SELECT value FROM settings WHERE key = ?")
            .get(DOWNLOAD_REQUEST_KEY) as { value: string } | undefined;
          assert.equal(verifyAudit(st.db).ok, true);
          return { rows, value: row?.value ?? null };
        } finally {
          st.close();
        }
      };
      assert.deepEqual((await audited()).rows, []);

      const ok = await cox([
        "geoip",
        "download",
        "--state",
        state,
        "--url",
        server.url(`/city.mmdb?license_key=${KEY}`),
      ]);
      assert.equal(ok.code, 0, ok.err.join("\n"));
      // A download that fails is a request all the same (the API audits it before it runs).
      const missing = await cox([
        "geoip",
        "download",
        "--state",
        state,
        "--url",
        server.url(`/missing.mmdb?license_key=${KEY}`),
      ]);
      assert.equal(missing.code, 1);

      const { rows, value } = await audited();
      assert.equal(rows.length, 2, "one audit entry per download");
      for (const r of rows) {
        assert.equal(r.actor, cliActor(), "the operator who ran the command");
        assert.deepEqual([r.target_type, r.target_id], ["setting", DOWNLOAD_REQUEST_KEY]);
      }
      assert.ok(value);
      assert.equal(JSON.parse(value).url, server.url("/missing.mmdb?license_key=…"));
      assert.ok(!value.includes(KEY), "the licence key is not kept");
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cox geoip: a running controller places nodes by the database the command downloaded",
  ...cap,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pharos-geoip-ctl-" });
    const state = `${dir}/state`;
    const server = serveFiles({ "/city.mmdb": await writeCityDb(`${dir}/src.mmdb`) });
    const cfg = resolveConfig(
      { state, "ui-listen": "127.0.0.1:0", "relay-listen": "off" },
      () => undefined,
    );
    const ctl = await within(
      startController(cfg, { logSink: () => {}, print: () => {} }),
      WAIT_MS,
      "the controller to start",
    );
    try {
      const service = new Service(ctl.state.db);
      const { secret } = new ApiTokens(service, () => new Date()).create("cli:test", {
        name: "t",
        scope: "readonly",
      });
      const node = new Nodes(service).create("cli:test", {
        name: "paris-1",
        host: "192.0.2.10",
        region: "us-east-1",
      });
      const get = async (path: string) => {
        const r = await fetch(`http://127.0.0.1:${ctl.uiPort}${path}`, {
          headers: { authorization: `Bearer ${secret}` },
        });
        assert.equal(r.status, 200, path);
        return await r.json();
      };
      assert.equal((await get("/api/geoip")).loaded, false);
      assert.deepEqual((await get("/api/geoip/positions")).items, []);

      const dl = await cox([
        "geoip",
        "download",
        "--state",
        state,
        "--url",
        server.url("/city.mmdb"),
      ]);
      assert.equal(dl.code, 0, dl.err.join("\n"));
      // The controller looks at the file at most once a second; bounded wait.
      const deadline = Date.now() + 20_000;
      let items: { id: string; city: string }[] = [];
      while (items.length === 0) {
        if (Date.now() > deadline) throw new Error("the controller never loaded the new file");
        await new Promise((r) => setTimeout(r, 100));
        items = (await get("/api/geoip/positions")).items;
      }
      assert.deepEqual(items.map((p) => `${p.id}:${p.city}`), [`${node.id}:Paris`]);
      assert.equal((await get("/api/geoip")).database_type, "GeoLite2-City");
    } finally {
      await within(ctl.shutdown(), WAIT_MS, "the controller to stop");
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
