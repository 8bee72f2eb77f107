/**
 * Controller settings: flag, environment variable, JSON config file
 * (`--config` / PHAROS_CONFIG), then the embedded default.
 */
import { connectionSettingSpecs, type ConnectionSettingValues } from "../core/conn_limits.ts";
import {
  checkListen,
  LOG_LEVEL_SPEC,
  resolveSettings,
  type SettingSpec,
} from "../core/settings.ts";
import { isCidr, isIpv4, isIpv6 } from "../core/net/address.ts";

export { ConfigError } from "../core/settings.ts";

export interface ControllerConfig extends ConnectionSettingValues {
  /** State directory: database, secret.key. */
  state: string;
  /** Dashboard and admin API listener; loopback by default. */
  uiListen: string;
  logLevel: "debug" | "info" | "warn" | "error";
  /** Embedded relay's device listener; "off" disables it. */
  relayListen: string;
  /** Comma-separated names/IPs clients use to reach the embedded relay (its certificate's SANs). */
  relayHosts: string;
  /** Comma-separated host:port of remote relays' tunnel ports to dial. */
  relayTunnels: string;
  /** Comma-separated addresses/CIDRs of TLS reverse proxies whose X-Forwarded-* are believed. */
  trustedProxies: string;
  /** Comma-separated origins (besides the dashboard's own) allowed to send writes. */
  allowedOrigins: string;
  /** "on": /metrics answers loopback peers without a token. */
  metricsLoopback: "on" | "off";
}

export const CONTROLLER_SETTINGS: SettingSpec[] = [
  {
    key: "state",
    flag: "state",
    env: "PHAROS_STATE",
    default: "./state",
    arg: "DIR",
    help: "state directory: database, secret.key, CA (made on first start)",
  },
  {
    key: "uiListen",
    flag: "ui-listen",
    env: "PHAROS_UI_LISTEN",
    default: "127.0.0.1:8443",
    check: checkListen,
    arg: "HOST:PORT",
    help: "dashboard and admin API listener",
  },
  {
    key: "logLevel",
    flag: "log-level",
    env: "PHAROS_LOG_LEVEL",
    default: "info",
    ...LOG_LEVEL_SPEC,
    arg: "LEVEL",
    help: "debug, info, warn or error",
  },
  {
    key: "relayListen",
    flag: "relay-listen",
    env: "PHAROS_RELAY_LISTEN",
    default: ":443",
    check: (v) => v === "off" ? undefined : checkListen(v),
    arg: "HOST:PORT|off",
    help: "embedded relay's device listener",
  },
  {
    key: "relayHosts",
    flag: "relay-hosts",
    env: "PHAROS_RELAY_HOSTS",
    default: "localhost,127.0.0.1",
    check: nonEmptyList,
    arg: "H[,H...]",
    help: "names/IPs in the embedded relay's certificate",
  },
  {
    key: "relayTunnels",
    flag: "relay-tunnels",
    env: "PHAROS_RELAY_TUNNELS",
    default: "",
    check: hostPortList,
    arg: "HOST:PORT,...",
    help: "remote relays' tunnel ports to dial",
  },
  {
    key: "trustedProxies",
    flag: "trusted-proxies",
    env: "PHAROS_TRUSTED_PROXIES",
    default: "",
    check: addressOrCidrList,
    arg: "IP|CIDR,...",
    help: "TLS reverse proxies whose X-Forwarded-* headers are believed",
  },
  {
    key: "allowedOrigins",
    flag: "allowed-origins",
    env: "PHAROS_ALLOWED_ORIGINS",
    default: "",
    check: originList,
    arg: "ORIGIN,...",
    help: "other origins whose pages may send the dashboard writes",
  },
  {
    key: "metricsLoopback",
    flag: "metrics-loopback",
    env: "PHAROS_METRICS_LOOPBACK",
    default: "off",
    check: (v) => v === "on" || v === "off" ? undefined : "use on or off",
    arg: "on|off",
    help: "/metrics without a token for loopback peers",
  },
  // Caps and time limits of the embedded relay's device listener and the dashboard.
  ...connectionSettingSpecs("PHAROS_"),
];

/** Splits a comma-separated setting into trimmed, non-empty items. */
export function listSetting(v: string): string[] {
  return v.split(",").map((s) => s.trim()).filter(Boolean);
}

function nonEmptyList(v: string): string | undefined {
  return listSetting(v).length === 0 ? "give at least one name or IP" : undefined;
}

function hostPortList(v: string): string | undefined {
  const bad = listSetting(v).find((e) => !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(e));
  return bad ? `"${bad}" is not host:port` : undefined;
}

function addressOrCidrList(v: string): string | undefined {
  const bad = listSetting(v).find((e) => !isIpv4(e) && !isIpv6(e) && !isCidr(e));
  return bad
    ? `"${bad.slice(0, 60)}" is not an IP address or CIDR prefix (such as 10.0.0.0/8)`
    : undefined;
}

function originList(v: string): string | undefined {
  const bad = listSetting(v).find((e) => {
    try {
      const u = new URL(e);
      return u.origin !== e || !["http:", "https:"].includes(u.protocol);
    } catch {
      return true;
    }
  });
  return bad
    ? `"${bad.slice(0, 60)}" is not an origin such as https://vpn.example.net (no path, no slash)`
    : undefined;
}

export function resolveConfig(
  flags: Record<string, unknown>,
  env: (name: string) => string | undefined,
  file: Record<string, unknown> = {},
): ControllerConfig {
  return resolveSettings(CONTROLLER_SETTINGS, flags, env, file) as unknown as ControllerConfig;
}
