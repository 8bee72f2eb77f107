/**
 * `cox geoip download|status`: fetches a City database into the state
 * directory (a running controller picks the new file up by itself) and
 * tells which one is in use. Progress goes to stderr as it happens; the
 * last line says what happened.
 */
import type { CliIo } from "../../relay/host/cli_support.ts";
import { downloadDatabase, type DownloadProgress, redactUrl } from "../geoip/download.ts";
import { formatBytes } from "../geoip/operation.ts";
import { auditDownloadRequest } from "../geoip/request_audit.ts";
import { GeoipStore } from "../geoip/store.ts";
import { Settings } from "../service/settings.ts";
import { UsageError } from "./format.ts";
import { withService } from "./with_state.ts";

export async function geoipDownload(
  state: string,
  urlFlag: string | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  // Opened even with --url: the state directory must be one the controller made.
  const url = await withService(state, (svc) => {
    const url = urlFlag ?? new Settings(svc).get("geoip.url");
    if (!url) {
      throw new UsageError('no GeoIP URL: pass --url or set geoip.url ("cox settings list")');
    }
    // Audited as the API's request is: who asked for which source (secrets hidden), and when.
    auditDownloadRequest(svc, actor, url);
    return url;
  });
  const store = new GeoipStore(state);
  let shownPct = -1;
  const progress = (p: DownloadProgress) => {
    if (p.phase === "validate") io.err("validating the database");
    else if (p.phase === "install") io.err("installing it");
    else if (p.bytes === 0) io.err(`downloading ${redactUrl(url)}`);
    else {
      const pct = p.total ? Math.floor((p.bytes / p.total) * 100) : -1;
      if (pct !== -1 && pct === shownPct) return;
      shownPct = pct;
      io.err(`received ${formatBytes(p.bytes, p.total)}${pct >= 0 ? ` (${pct}%)` : ""}`);
    }
  };
  const r = await downloadDatabase({ url, dir: store.dir, onProgress: progress });
  io.out(
    `GeoIP database ${r.info.databaseType} of ${r.info.buildDate.slice(0, 10)} installed ` +
      `(${formatBytes(r.bytes, null)})${r.info.credit ? `; ${r.info.credit}` : ""}\n`,
  );
  return 0;
}

export async function geoipStatus(state: string, io: CliIo): Promise<number> {
  const s = await withService(state, () => new GeoipStore(state).status());
  const last = s.lastDownload;
  if (last) {
    io.out(
      `last download: ${last.at} ${last.ok ? "ok" : `failed (${last.code})`} ${last.url}` +
        `${last.error ? `: ${last.error}` : ""}\n`,
    );
  }
  if (s.fileError) {
    io.out(`GeoIP file not usable (${s.fileError.code}): ${s.fileError.message}\n`);
    return 1;
  }
  if (!s.info) {
    io.out("no GeoIP database: the map places hosts by their region code\n");
    return 0;
  }
  io.out(
    `GeoIP database ${s.info.databaseType} of ${s.info.buildDate.slice(0, 10)} in use ` +
      `(${formatBytes(s.info.size, null)})${s.info.credit ? `; ${s.info.credit}` : ""}\n`,
  );
  return 0;
}
