/** `agent run` settings (flag > environment > JSON config file > default). */
import { parseIp } from "../core/net/mod.ts";
import {
  checkListen,
  ConfigError,
  LOG_LEVEL_SPEC,
  resolveSettings,
  type SettingSpec,
} from "../core/settings.ts";
import { fingerprintSet } from "../core/pki/fingerprint.ts";
import { AWG_KINDS } from "./dataplane/awg.ts";

export const DEFAULT_STATE_DIR = "/var/lib/pharos-agent";

export interface AgentConfig {
  state: string;
  listen: string;
  interface: string;
  awgPort: string;
  mtu: string;
  dataplane: string;
  xray: string;
  xrayApiPort: string;
  egressInterface: string;
  endpointIps: string;
  endpointPorts: string;
  pollInterval: string;
  logLevel: "debug" | "info" | "warn" | "error";
  legacyControllerPins: string;
}

const port = (v: string) =>
  /^[0-9]{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535
    ? undefined
    : "expected a port, 1-65535";

function checkPorts(v: string): string | undefined {
  if (v === "") return undefined;
  const m = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(v);
  if (!m || Number(m[1]) < 1 || Number(m[2]) > 65535 || Number(m[1]) > Number(m[2])) {
    return "expected MIN-MAX, e.g. 2000-60000";
  }
  return undefined;
}

function checkIps(v: string): string | undefined {
  for (const ip of v.split(",").map((s) => s.trim()).filter(Boolean)) {
    try {
      parseIp(ip);
    } catch {
      return `${JSON.stringify(ip)} is not an IP address`;
    }
  }
  return undefined;
}

/** `5s`, `250ms`: 50 ms to 10 min. */
export function parseInterval(v: string): number {
  const m = /^([0-9]{1,6})(ms|s)$/.exec(v);
  if (!m) return NaN;
  const ms = Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  return ms >= 50 && ms <= 600_000 ? ms : NaN;
}

export const AGENT_SETTINGS: SettingSpec[] = [
  {
    key: "state",
    flag: "state",
    env: "PHAROS_AGENT_STATE",
    default: DEFAULT_STATE_DIR,
    arg: "DIR",
    help: "state directory: node key and certificates, every pushed config",
  },
  {
    key: "listen",
    flag: "listen",
    env: "PHAROS_AGENT_LISTEN",
    default: ":8444",
    check: checkListen,
    arg: "ADDR",
    help: "NodeControl listener (mTLS 1.3, controller only)",
  },
  {
    key: "interface",
    flag: "interface",
    env: "PHAROS_AGENT_INTERFACE",
    default: "awg0",
    check: (v) => /^awg[0-9]{1,3}$/.test(v) ? undefined : "expected awg0 … awg999",
    arg: "NAME",
    help: "client AmneziaWG interface",
  },
  {
    key: "awgPort",
    flag: "awg-port",
    env: "PHAROS_AGENT_AWG_PORT",
    default: "443",
    check: port,
    arg: "PORT",
    help: "AmneziaWG UDP listen port",
  },
  {
    key: "mtu",
    flag: "mtu",
    env: "PHAROS_AGENT_MTU",
    default: "1420",
    check: (v) =>
      /^[0-9]{4}$/.test(v) && Number(v) >= 1280 && Number(v) <= 9000
        ? undefined
        : "expected 1280-9000",
    arg: "N",
    help: "client interface MTU",
  },
  {
    key: "dataplane",
    flag: "dataplane",
    env: "PHAROS_AGENT_DATAPLANE",
    default: "auto",
    check: (v) =>
      v === "auto" || (AWG_KINDS as readonly string[]).includes(v)
        ? undefined
        : `use auto, ${AWG_KINDS.join(", ")}`,
    arg: "KIND",
    help: `AmneziaWG implementation: auto, ${AWG_KINDS.join(", ")}`,
  },
  {
    key: "xray",
    flag: "xray",
    env: "PHAROS_AGENT_XRAY",
    default: "xray",
    check: (v) =>
      v === "xray" || /^\/[A-Za-z0-9._/+-]{1,4000}$/.test(v)
        ? undefined
        : "expected xray (on PATH) or an absolute path",
    arg: "PATH",
    help: "the xray program",
  },
  {
    key: "xrayApiPort",
    flag: "xray-api-port",
    env: "PHAROS_AGENT_XRAY_API_PORT",
    default: "10085",
    check: port,
    arg: "PORT",
    help: "loopback port of Xray's API (live user changes)",
  },
  {
    key: "egressInterface",
    flag: "egress-interface",
    env: "PHAROS_AGENT_EGRESS_INTERFACE",
    default: "",
    check: (v) =>
      v === "" || /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/.test(v)
        ? undefined
        : "not an interface name",
    arg: "NAME",
    help: "egress interface for masquerade (default: the default route's)",
  },
  {
    key: "endpointIps",
    flag: "endpoint-ips",
    env: "PHAROS_AGENT_ENDPOINT_IPS",
    default: "",
    check: checkIps,
    arg: "IP,...",
    help:
      "node IPs whose --endpoint-ports are forwarded to the AmneziaWG port while the controller pushes no endpoint ranges",
  },
  {
    key: "endpointPorts",
    flag: "endpoint-ports",
    env: "PHAROS_AGENT_ENDPOINT_PORTS",
    default: "",
    check: checkPorts,
    arg: "MIN-MAX",
    help:
      "UDP port range forwarded (DNAT) to the AmneziaWG port while the controller pushes no endpoint ranges",
  },
  {
    key: "pollInterval",
    flag: "poll-interval",
    env: "PHAROS_AGENT_POLL_INTERVAL",
    default: "5s",
    check: (v) =>
      Number.isNaN(parseInterval(v)) ? "expected 50ms-600s, e.g. 5s or 500ms" : undefined,
    arg: "DURATION",
    help: "how often the interface is read for events",
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
    key: "legacyControllerPins",
    flag: "legacy-controller-pins",
    env: "PHAROS_AGENT_LEGACY_CONTROLLER_PINS",
    default: "",
    check: (v) => {
      try {
        fingerprintSet(v);
        return undefined;
      } catch (e) {
        return (e as Error).message;
      }
    },
    arg: "FP,...",
    help: "SHA-256 fingerprints of original Go controller certificates to accept (off)",
  },
];

export function resolveAgentConfig(
  flags: Record<string, unknown>,
  env: (name: string) => string | undefined,
  file: Record<string, unknown> = {},
): AgentConfig {
  const c = resolveSettings(AGENT_SETTINGS, flags, env, file) as unknown as AgentConfig;
  if ((c.endpointIps === "") !== (c.endpointPorts === "")) {
    throw new ConfigError(
      "bad-config",
      "--endpoint-ips and --endpoint-ports go together: give both or neither",
    );
  }
  return c;
}
