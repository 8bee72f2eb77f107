/**
 * Errors of the GeoIP database and its download. Codes: `geoip-invalid`
 * (not a MaxMind DB, truncated or damaged), `geoip-wrong-type` (a MaxMind
 * DB, but not a City one), `geoip-url` (no or a bad download URL),
 * `geoip-http` (the server refused), `geoip-too-large`, `geoip-timeout`,
 * `geoip-archive` (a .tar.gz without an .mmdb in it), `geoip-busy` (a
 * download runs already), `geoip-fetch` (the connection failed),
 * `geoip-stopped` (the controller stopped during a download),
 * `geoip-unreadable` (the database file or its directory cannot be read).
 */
import { PharosError } from "../../core/errors.ts";

export class GeoipError extends PharosError {}
