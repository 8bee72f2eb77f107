/**
 * Each GeoIP download asked for (over the API, or by `cox geoip download`)
 * is an audited change: the settings row `geoip.download_request` (not a
 * setting — Settings.list leaves unknown keys out) holds the last request's
 * URL, its secrets hidden, and the time; each request rewrites it through
 * the service layer, so the audit log names who asked for which source,
 * and when.
 */
import type { Actor, Service } from "../service/service.ts";
import { redactUrl } from "./download.ts";

export const DOWNLOAD_REQUEST_KEY = "geoip.download_request";

export function auditDownloadRequest(service: Service, actor: Actor, url: string): void {
  service.mutate(
    { actor, action: "geoip.download", target: { type: "setting", id: DOWNLOAD_REQUEST_KEY } },
    (tx) => {
      const value = JSON.stringify({ url: redactUrl(url), at: tx.now });
      if (tx.current === undefined) tx.insert({ value });
      else tx.update({ value });
    },
  );
}
