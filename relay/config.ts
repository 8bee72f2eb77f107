/** Remote relay settings (flag > environment > JSON config file > default). */
import { connectionSettingSpecs, type ConnectionSettingValues } from "../core/conn_limits.ts";
import { fingerprintSet } from "../core/pki/fingerprint.ts";
import {
  checkListen,
  LOG_LEVEL_SPEC,
  resolveSettings,
  type SettingSpec,
} from "../core/settings.ts";

export interface RelayConfig extends ConnectionSettingValues {
  /** Directory with relay.key, relay.crt, ca.crt, fleet-ca.crt, device-ca.crt. */
  dir: string;
  clientAddr: string;
  tunnelAddr: string;
  /** "off" disables control-plane egress. */
  egressAddr: string;
  /** Comma-separated host:port list for controllers that cannot push one. */
  egressAllow: string;
  logLevel: "debug" | "info" | "warn" | "error";
  /**
   * Comma-separated SHA-256 fingerprints (DER, any notation) of original Go
   * controller certificates to accept as the controller. Empty (off) by default.
   */
  legacyControllerPins: string;
}

const listenOrOff = (v: string) => v === "off" ? undefined : checkListen(v);

export const RELAY_SETTINGS: SettingSpec[] = [
  { key: "dir", flag: "dir", env: "PHAROS_RELAY_DIR", default: "/etc/pharos-relay" },
  {
    key: "clientAddr",
    flag: "client-addr",
    env: "PHAROS_RELAY_CLIENT_ADDR",
    default: ":8443",
    check: checkListen,
  },
  {
    key: "tunnelAddr",
    flag: "tunnel-addr",
    env: "PHAROS_RELAY_TUNNEL_ADDR",
    default: ":8444",
    check: checkListen,
  },
  {
    key: "egressAddr",
    flag: "egress-addr",
    env: "PHAROS_RELAY_EGRESS_ADDR",
    default: ":8456",
    check: listenOrOff,
  },
  { key: "egressAllow", flag: "egress-allow", env: "PHAROS_RELAY_EGRESS_ALLOW", default: "" },
  {
    key: "logLevel",
    flag: "log-level",
    env: "PHAROS_LOG_LEVEL",
    default: "info",
    ...LOG_LEVEL_SPEC,
  },
  {
    key: "legacyControllerPins",
    flag: "legacy-controller-pins",
    env: "PHAROS_RELAY_LEGACY_CONTROLLER_PINS",
    default: "",
    check: checkPins,
  },
  ...connectionSettingSpecs("PHAROS_RELAY_"),
];

export function resolveRelayConfig(
  flags: Record<string, unknown>,
  env: (name: string) => string | undefined,
  file: Record<string, unknown> = {},
): RelayConfig {
  return resolveSettings(RELAY_SETTINGS, flags, env, file) as unknown as RelayConfig;
}

function checkPins(v: string): string | undefined {
  try {
    fingerprintSet(v);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}
