/**
 * A GeoIP download as a long operation (controller/api/operations.ts): its
 * phases (download, validate, install) as GeoipProgress step events, shown
 * live by GET /api/operations/{id}, the change feed and the dashboard's
 * operation page.
 */
import type { GeoipProgress } from "../onboarding/events.ts";
import type { OperationRun } from "../api/operations.ts";
import {
  downloadDatabase,
  type DownloadPhase,
  type DownloadProgress,
  redactUrl,
} from "./download.ts";
import type { GeoipStore } from "./store.ts";

const PHASES: readonly DownloadPhase[] = ["download", "validate", "install"];

/** "12.5 MiB of 60.0 MiB" for people. */
export function formatBytes(bytes: number, total: number | null): string {
  const one = (n: number) =>
    n < 1024
      ? `${n} B`
      : n < 1048576
      ? `${(n / 1024).toFixed(1)} KiB`
      : `${(n / 1048576).toFixed(1)} MiB`;
  return total === null ? one(bytes) : `${one(bytes)} of ${one(total)}`;
}

export interface GeoipDownloadOptions {
  maxBytes?: number;
  timeoutMs?: number;
}

export function geoipDownloadRun(
  store: GeoipStore,
  url: string,
  opts: GeoipDownloadOptions = {},
): OperationRun<GeoipProgress> {
  const run = crypto.randomUUID();
  const target = redactUrl(url);
  return async (emit, _id, signal) => {
    let phase: DownloadPhase = "download";
    const event = (
      p: DownloadPhase,
      status: GeoipProgress["status"],
      message: string,
      extra: { code?: string; details?: Record<string, string> } = {},
    ) =>
      emit({
        run,
        kind: "geoip",
        id: "geoip",
        name: "GeoIP database",
        target,
        step: p,
        index: PHASES.indexOf(p) + 1,
        total: PHASES.length,
        status,
        message,
        time: new Date().toISOString(),
        ...extra,
      });
    const onProgress = (p: DownloadProgress) => {
      const details = { bytes: String(p.bytes), total_bytes: String(p.total ?? "") };
      if (p.phase !== phase) {
        event(
          phase,
          "done",
          phase === "download" ? `received ${formatBytes(p.bytes, null)}` : "ok",
        );
        phase = p.phase;
        event(phase, "started", p.phase === "validate" ? "opening the file" : "replacing");
      } else if (p.bytes === 0) {
        event(phase, "started", `fetching ${target}`, { details });
      } else {
        event(phase, "progress", `received ${formatBytes(p.bytes, p.total)}`, { details });
      }
    };
    try {
      const r = await downloadDatabase({ url, dir: store.dir, ...opts, onProgress, signal });
      await store.adopt(r.database);
      event(phase, "done", "in use");
      event(
        phase,
        "finished",
        `GeoIP database ${r.info.databaseType} of ${r.info.buildDate.slice(0, 10)} in use ` +
          `(${formatBytes(r.bytes, null)})`,
      );
    } catch (e) {
      const code = (e as { code?: string }).code ?? "geoip-failed";
      event(phase, "failed", (e as Error).message, { code });
      throw e;
    }
  };
}
