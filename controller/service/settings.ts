/**
 * Controller settings (table `settings`, one JSON value per key) and the
 * presets of DESIGN.md §4 that `cox init` / `cox settings preset` apply.
 * A key never written reads as the personal preset's value: a state made
 * without a preset (the controller's first start) is a personal one. Keys
 * no preset sets (OWN_DEFAULTS, e.g. geoip.url) keep their value across
 * presets.
 */
import { isHostname } from "../../core/net/mod.ts";
import { type Db, statement } from "../db/sqlite.ts";
import { ServiceError } from "./errors.ts";
import type { Actor, Service } from "./service.ts";

export interface SettingValues {
  preset: PresetName;
  /** AmneziaWG is always on; Xray VLESS+REALITY is offered per node or everywhere. */
  "protocols.xray": "optional" | "on";
  "relay.mode": "embedded" | "embedded+remote";
  "accounts.sync": "on" | "optional";
  /** false: at most one user with the admin role. */
  "admins.multiple": boolean;
  "audit.retention_days": number;
  "metrics.retention_days": number;
  "reality.decoy": string;
  "reality.decoy_rotation": boolean;
  "endpoints.rotation": boolean;
  /** Where `cox geoip download` fetches a City database ({yyyy}/{mm}: this month); "" = none. */
  "geoip.url": string;
}

export type SettingKey = keyof SettingValues;

/**
 * Settings no preset changes (the operator's own data sources), with their
 * defaults. geoip.url: DB-IP's free City Lite database of the month (CC BY
 * 4.0: the map credits it).
 */
export const OWN_DEFAULTS = {
  "geoip.url": "https://download.db-ip.com/free/dbip-city-lite-{yyyy}-{mm}.mmdb.gz",
} as const satisfies Partial<SettingValues>;
type PresetValues = Omit<SettingValues, keyof typeof OWN_DEFAULTS>;
export type PresetName = "personal" | "enterprise";
export const PRESET_NAMES: readonly PresetName[] = ["personal", "enterprise"];

export const PRESETS: Readonly<Record<PresetName, Readonly<PresetValues>>> = {
  personal: {
    preset: "personal",
    "protocols.xray": "optional",
    "relay.mode": "embedded",
    "accounts.sync": "on",
    "admins.multiple": false,
    "audit.retention_days": 30,
    "metrics.retention_days": 7,
    "reality.decoy": "www.microsoft.com",
    "reality.decoy_rotation": false,
    "endpoints.rotation": false,
  },
  enterprise: {
    preset: "enterprise",
    "protocols.xray": "on",
    "relay.mode": "embedded+remote",
    "accounts.sync": "optional",
    "admins.multiple": true,
    "audit.retention_days": 365,
    "metrics.retention_days": 90,
    "reality.decoy": "www.microsoft.com",
    "reality.decoy_rotation": true,
    "endpoints.rotation": true,
  },
};

/** The keys a preset sets. */
export const PRESET_KEYS = Object.keys(PRESETS.personal) as (keyof PresetValues)[];
export const SETTING_KEYS = [...PRESET_KEYS, ...Object.keys(OWN_DEFAULTS)] as SettingKey[];
/** A key never written reads as this. */
const DEFAULTS: Readonly<SettingValues> = { ...PRESETS.personal, ...OWN_DEFAULTS };

export interface Setting<K extends SettingKey = SettingKey> {
  key: K;
  value: SettingValues[K];
  /** 0: never written (the personal default). */
  version: number;
  updatedAt: Date | null;
}

interface Row {
  key: string;
  value: string;
  version: number;
  updated_at: string;
}

export function isPresetName(name: string): name is PresetName {
  return (PRESET_NAMES as readonly string[]).includes(name);
}

export class Settings {
  constructor(private readonly service: Service) {}

  private get db(): Db {
    return this.service.db;
  }

  /** Every setting, stored or default, in SETTING_KEYS order. */
  list(): Setting[] {
    const rows = statement(this.db, "SELECT * FROM settings").all() as unknown as Row[];
    const stored = new Map(rows.map((r) => [r.key, r]));
    return SETTING_KEYS.map((key) => {
      const r = stored.get(key);
      if (!r) return { key, value: DEFAULTS[key], version: 0, updatedAt: null };
      return {
        key,
        value: parseValue(key, r.value),
        version: r.version,
        updatedAt: new Date(r.updated_at),
      };
    });
  }

  get<K extends SettingKey>(key: K): SettingValues[K] {
    const r = statement(this.db, "SELECT value FROM settings WHERE key = ?").get(key) as
      | { value: string }
      | undefined;
    return r ? parseValue(key, r.value) : DEFAULTS[key];
  }

  /**
   * Writes one setting (no entry when the value is unchanged); with
   * `expectVersion`, refuses a stale edit. Returns true when it changed.
   */
  set<K extends SettingKey>(
    actor: Actor,
    key: K,
    value: SettingValues[K],
    expectVersion?: number,
  ): boolean {
    checkValue(key, value);
    const json = JSON.stringify(value);
    return this.service.mutate(
      { actor, action: "setting.set", target: { type: "setting", id: key }, expectVersion },
      (tx) => {
        if (tx.current === undefined) {
          tx.insert({ value: json });
          return true;
        }
        if (tx.current.value === json) return false;
        tx.update({ value: json });
        return true;
      },
    );
  }

  /** Writes every value of a preset in one transaction; returns the keys that changed. */
  applyPreset(actor: Actor, name: PresetName): SettingKey[] {
    const preset = PRESETS[name];
    return this.service.transaction(() =>
      PRESET_KEYS.filter((key) => this.set(actor, key, preset[key]))
    );
  }
}

/** String settings holding an http(s) URL ("" = none) rather than a DNS name. */
const URL_KEYS: readonly SettingKey[] = ["geoip.url"];
const isSettingUrl = (v: string) =>
  v === "" || (v.length <= 2048 && /^https?:\/\/[^\s]+$/.test(v) && URL.canParse(v));

/** The values a string setting may take (others: any DNS name). */
const CHOICES: Partial<Record<SettingKey, readonly string[]>> = {
  preset: PRESET_NAMES,
  "protocols.xray": ["optional", "on"],
  "relay.mode": ["embedded", "embedded+remote"],
  "accounts.sync": ["on", "optional"],
};

function checkValue(key: SettingKey, value: unknown): void {
  const expected = DEFAULTS[key];
  const choices = CHOICES[key];
  const ok = typeof value === typeof expected &&
    (typeof value !== "number" || (Number.isSafeInteger(value) && value >= 0)) &&
    (typeof value !== "string" ||
      (choices
        ? choices.includes(value)
        : URL_KEYS.includes(key)
        ? isSettingUrl(value)
        : isHostname(value)));
  if (!ok) {
    throw new ServiceError(
      "invalid",
      `setting ${key}: ${JSON.stringify(value)} is not a valid value`,
    );
  }
}

function parseValue<K extends SettingKey>(key: K, text: string): SettingValues[K] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  try {
    checkValue(key, value);
  } catch {
    throw new ServiceError(
      "damaged",
      `setting ${key} holds ${
        text.slice(0, 60)
      } in the database, which is not a valid value; apply a preset again ("cox settings preset NAME")`,
    );
  }
  return value as SettingValues[K];
}
