/**
 * Controller settings. Each one comes from, in order of precedence: a
 * command-line flag, an environment variable, the JSON config file
 * (`--config` / PHAROS_CONFIG), then the embedded default.
 */
import { PharosError } from "../core/errors.ts";

export class ConfigError extends PharosError {}

export interface ControllerConfig {
  /** State directory: database, secret.key. */
  state: string;
  /** Dashboard and admin API listener; loopback by default. */
  uiListen: string;
  logLevel: "debug" | "info" | "warn" | "error";
}

interface Setting<K extends keyof ControllerConfig> {
  key: K;
  flag: string;
  env: string;
  default: ControllerConfig[K];
  check?: (v: string) => string | undefined;
}

const SETTINGS: Setting<keyof ControllerConfig>[] = [
  { key: "state", flag: "state", env: "PHAROS_STATE", default: "./state" },
  {
    key: "uiListen",
    flag: "ui-listen",
    env: "PHAROS_UI_LISTEN",
    default: "127.0.0.1:8443",
    check: checkListen,
  },
  {
    key: "logLevel",
    flag: "log-level",
    env: "PHAROS_LOG_LEVEL",
    default: "info",
    check: (v) =>
      ["debug", "info", "warn", "error"].includes(v) ? undefined : "use debug, info, warn or error",
  },
];

/** `host:port` with a numeric port; IPv6 hosts in brackets. */
export function checkListen(v: string): string | undefined {
  const m = v.match(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/);
  if (!m || Number(m[2]) > 65535) return "expected host:port, e.g. 127.0.0.1:8443";
  return undefined;
}

export function splitListen(v: string): { hostname: string; port: number } {
  const i = v.lastIndexOf(":");
  return {
    hostname: v.slice(0, i).replace(/^\[|\]$/g, "") || "0.0.0.0",
    port: Number(v.slice(i + 1)),
  };
}

/**
 * Resolves the configuration. `flags` are parsed command-line values keyed
 * by flag name; `file` is the parsed config file (keys as in ControllerConfig).
 */
export function resolveConfig(
  flags: Record<string, string | undefined>,
  env: (name: string) => string | undefined,
  file: Record<string, unknown> = {},
): ControllerConfig {
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const fromFile = file[s.key];
    if (fromFile !== undefined && typeof fromFile !== "string") {
      throw new ConfigError("bad-config", `config file: "${s.key}" must be a string`);
    }
    const [value, source] = flags[s.flag] !== undefined
      ? [flags[s.flag]!, `--${s.flag}`]
      : env(s.env) !== undefined
      ? [env(s.env)!, s.env]
      : fromFile !== undefined
      ? [fromFile, `config file "${s.key}"`]
      : [s.default, "default"];
    const problem = s.check?.(value);
    if (problem) throw new ConfigError("bad-config", `${source} = "${value}": ${problem}`);
    out[s.key] = value;
  }
  return out as unknown as ControllerConfig;
}

/** Reads the optional JSON config file. */
export async function readConfigFile(path: string | undefined): Promise<Record<string, unknown>> {
  if (!path) return {};
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError("bad-config", `cannot read config file ${path}: ${(e as Error).message}`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new Error("not a JSON object");
    }
    return v;
  } catch (e) {
    throw new ConfigError(
      "bad-config",
      `config file ${path} is not a JSON object: ${(e as Error).message}`,
    );
  }
}
