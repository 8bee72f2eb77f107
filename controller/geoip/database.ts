/**
 * One MaxMind-format City database (GeoLite2-City, GeoIP2-City, DB-IP City
 * Lite) held in memory, read with mmdb-lib. Opening checks the whole shape
 * it relies on (metadata, tree bounds, a City layout, one probe lookup), so
 * a damaged file is refused when it is opened, not on the first page view.
 */
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import { type CityResponse, Reader } from "mmdb-lib";
import { GeoipError } from "./errors.ts";

/** Where an address is, as far as the database knows. */
export interface GeoPosition {
  lat: number;
  lon: number;
  /** ISO 3166-1 alpha-2, or null when the record has none. */
  country: string | null;
  /** English city name, or null. */
  city: string | null;
}

export interface GeoipInfo {
  /** The metadata's database_type, e.g. GeoLite2-City or DBIP-City-Lite. */
  databaseType: string;
  buildDate: string;
  ipVersion: number;
  size: number;
  /** DB-IP's licence asks for this credit wherever its data is shown. */
  credit: string | null;
}

const HINT =
  'download a City database again ("cox geoip download" or Settings → GeoIP); the one in use stays';

export class GeoipDatabase {
  private constructor(private readonly reader: Reader<CityResponse>, readonly info: GeoipInfo) {}

  /** Opens a database from its bytes; GeoipError when it is not a usable City database. */
  static open(bytes: Uint8Array, source: string): GeoipDatabase {
    let reader: Reader<CityResponse>;
    try {
      reader = new Reader<CityResponse>(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
    } catch (e) {
      throw new GeoipError(
        "geoip-invalid",
        `${source} is not a MaxMind DB file (damaged, truncated or another format: ${
          String((e as Error)?.message ?? e).slice(0, 120)
        }); ${HINT}`,
      );
    }
    const m = reader.metadata;
    const sane = [24, 28, 32].includes(m.recordSize) && m.nodeCount > 0 &&
      m.searchTreeSize + 16 <= bytes.length && (m.ipVersion === 4 || m.ipVersion === 6) &&
      m.binaryFormatMajorVersion === 2;
    if (!sane) {
      throw new GeoipError("geoip-invalid", `${source} has damaged MaxMind DB metadata; ${HINT}`);
    }
    if (!/city/i.test(String(m.databaseType))) {
      throw new GeoipError(
        "geoip-wrong-type",
        `${source} is a ${
          String(m.databaseType).slice(0, 60)
        } database; the map needs a City one (GeoLite2-City, GeoIP2-City or DB-IP City Lite)`,
      );
    }
    const db = new GeoipDatabase(reader, {
      databaseType: String(m.databaseType),
      buildDate: m.buildEpoch.toISOString(),
      ipVersion: m.ipVersion,
      size: bytes.length,
      credit: /db-?ip/i.test(String(m.databaseType)) ? "IP Geolocation by DB-IP" : null,
    });
    // A damaged tree or data section shows on the first walk through it.
    try {
      reader.get(m.ipVersion === 6 ? "2001:db8::1" : "192.0.2.1");
      reader.get("8.8.8.8");
    } catch {
      throw new GeoipError("geoip-invalid", `${source} has a damaged search tree; ${HINT}`);
    }
    return db;
  }

  /**
   * The position of an IP literal (IPv4, IPv6, [IPv6]); null for a name,
   * an address the database does not hold, or a record without a location.
   */
  lookup(address: string): GeoPosition | null {
    const ip = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address;
    const family = isIP(ip);
    if (family === 0 || (family === 6 && this.info.ipVersion === 4)) return null;
    let r: CityResponse | null;
    try {
      r = this.reader.get(ip);
    } catch {
      return null; // a record the opening probe did not reach is damaged: no position
    }
    const lat = r?.location?.latitude;
    const lon = r?.location?.longitude;
    if (typeof lat !== "number" || typeof lon !== "number") return null;
    if (!(Math.abs(lat) <= 90 && Math.abs(lon) <= 180)) return null;
    return {
      lat,
      lon,
      country: r?.country?.iso_code ?? r?.registered_country?.iso_code ?? null,
      city: r?.city?.names?.en ?? null,
    };
  }
}
