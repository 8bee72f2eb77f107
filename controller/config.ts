/**
 * Controller settings: flag, environment variable, JSON config file
 * (`--config` / PHAROS_CONFIG), then the embedded default.
 */
import {
  checkListen,
  LOG_LEVEL_SPEC,
  resolveSettings,
  type SettingSpec,
} from "../core/settings.ts";

export { ConfigError } from "../core/settings.ts";

export interface ControllerConfig {
  /** State directory: database, secret.key. */
  state: string;
  /** Dashboard and admin API listener; loopback by default. */
  uiListen: string;
  logLevel: "debug" | "info" | "warn" | "error";
}

export const CONTROLLER_SETTINGS: SettingSpec[] = [
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
    ...LOG_LEVEL_SPEC,
  },
];

export function resolveConfig(
  flags: Record<string, unknown>,
  env: (name: string) => string | undefined,
  file: Record<string, unknown> = {},
): ControllerConfig {
  return resolveSettings(CONTROLLER_SETTINGS, flags, env, file) as unknown as ControllerConfig;
}
