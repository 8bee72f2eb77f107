/**
 * Program settings from four sources, in order of precedence: command-line
 * flag, environment variable, config file (JSON object), built-in default.
 * Pure: callers pass the parsed flags, an env lookup and the parsed file.
 */
import { PharosError } from "./errors.ts";

export class ConfigError extends PharosError {}

export interface SettingSpec {
  /** Key in the result and in the config file. */
  key: string;
  /** Flag name without dashes. */
  flag: string;
  env: string;
  default: string;
  /** Returns a problem description, or undefined when the value is fine. */
  check?: (value: string) => string | undefined;
  /** Placeholder of the flag's value in help text, e.g. "DIR". */
  arg?: string;
  /** One-line description for help text. */
  help?: string;
}

/**
 * Resolves every setting; a bad value throws ConfigError naming where it came from.
 * @example resolveSettings([{key:"state",flag:"state",env:"PHAROS_STATE",default:"./state"}], {}, () => undefined)
 */
export function resolveSettings(
  specs: readonly SettingSpec[],
  flags: Record<string, unknown>,
  env: (name: string) => string | undefined,
  file: Record<string, unknown> = {},
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of specs) {
    const fromFile = file[s.key];
    if (fromFile !== undefined && typeof fromFile !== "string") {
      throw new ConfigError("bad-config", `config file: "${s.key}" must be a string`);
    }
    const flag = flags[s.flag];
    const [value, source] = typeof flag === "string"
      ? [flag, `--${s.flag}`]
      : env(s.env) !== undefined
      ? [env(s.env)!, s.env]
      : fromFile !== undefined
      ? [fromFile, `config file "${s.key}"`]
      : [s.default, "default"];
    const problem = s.check?.(value);
    if (problem) throw new ConfigError("bad-config", `${source} = "${value}": ${problem}`);
    out[s.key] = value;
  }
  return out;
}

/**
 * Checks a parsed config file against the settings it may hold: every key
 * must be a known setting and every value a string. Errors name the file.
 */
export function checkConfigFile(
  specs: readonly SettingSpec[],
  file: Record<string, unknown>,
  path: string,
): void {
  const known = specs.map((s) => s.key);
  for (const [key, value] of Object.entries(file)) {
    if (!known.includes(key)) {
      throw new ConfigError(
        "unknown-config-key",
        `config file ${path}: unknown key "${key}"; the keys are ${known.join(", ")}`,
      );
    }
    if (typeof value !== "string") {
      throw new ConfigError(
        "bad-config",
        `config file ${path}: "${key}" must be a string, e.g. "${key}": "${
          specs.find((s) => s.key === key)!.default
        }"`,
      );
    }
  }
}

/**
 * Help text for settings: per setting, the flag with its value placeholder
 * and description, then its environment variable and default on the next
 * line; `extra` rows ([flag, description]) follow, aligned the same way.
 */
export function settingsHelp(
  specs: readonly SettingSpec[],
  extra: readonly (readonly [string, string])[] = [],
): string {
  const rows: [string, string, string?][] = specs.map((s) => [
    `--${s.flag} ${s.arg ?? "VALUE"}`,
    s.help ?? s.key,
    `${s.env}, default ${s.default === "" ? "none" : s.default}`,
  ]);
  for (const [head, text] of extra) rows.push([head, text]);
  const width = Math.max(...rows.map(([h]) => h.length)) + 4;
  return rows.map(([head, text, more]) =>
    `  ${head.padEnd(width - 2)}${text}` + (more ? `\n${" ".repeat(width)}${more}` : "")
  ).join("\n");
}

/** `host:port` with a decimal port; host may be empty (all addresses) or [IPv6]. */
export function checkListen(v: string): string | undefined {
  const m = v.match(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/);
  if (!m || Number(m[2]) > 65535) return "expected host:port, e.g. 127.0.0.1:8443 or :443";
  return undefined;
}

/** Splits a checked listen address; an empty host means all IPv4 addresses. */
export function splitListen(v: string): { hostname: string; port: number } {
  const i = v.lastIndexOf(":");
  return {
    hostname: v.slice(0, i).replace(/^\[|\]$/g, "") || "0.0.0.0",
    port: Number(v.slice(i + 1)),
  };
}

export const LOG_LEVEL_SPEC = {
  check: (v: string) =>
    ["debug", "info", "warn", "error"].includes(v) ? undefined : "use debug, info, warn or error",
};
