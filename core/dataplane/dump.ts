/**
 * Parser (and formatter, for round trips and test doubles) of
 * `wg show <if> dump` / `awg show <if> dump`: tab-separated, one interface
 * line then one line per peer (CONTRACTS.md §8).
 *
 * Interface line: private key, public key, listen port, [AmneziaWG fields],
 * fwmark (`off` or `0x…`). The AmneziaWG fields differ between awg versions
 * (jc … h4, later s3/s4, i1–i5 and more); they are kept verbatim in order.
 * Peer line: public key, preshared key or `(none)`, endpoint or `(none)`,
 * allowed IPs (comma-separated) or `(none)`, latest handshake (unix
 * seconds, 0 = never), rx bytes, tx bytes, persistent keepalive or `off`.
 */
import { DataplaneError } from "./errors.ts";
import { canonicalCidr, canonicalEndpoint } from "./ip.ts";
import { checkWgKey } from "./validate.ts";

/** The interface line. */
export interface DumpInterface {
  privateKey: string | null;
  publicKey: string | null;
  listenPort: number;
  /** AmneziaWG-only columns between listen port and fwmark, verbatim; empty for wg. */
  awgFields: string[];
  fwmark: number | null;
}

/** One peer line. */
export interface DumpPeer {
  publicKey: string;
  presharedKey: string | null;
  endpoint: string | null;
  allowedIps: string[];
  /** Unix seconds of the latest handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: bigint;
  txBytes: bigint;
  persistentKeepalive: number | null;
}

/** A parsed dump. */
export interface WgDump {
  interface: DumpInterface;
  peers: DumpPeer[];
}

const NONE = "(none)";
const U64_MAX = (1n << 64n) - 1n;

/** Parses dump output; any malformed line gives a DataplaneError naming line and column. */
export function parseWgDump(text: string): WgDump {
  if (typeof text !== "string") {
    throw new DataplaneError("bad-dump", "dump", "expected the text of `wg show <if> dump`");
  }
  const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
  if (lines.length === 0 || lines[0] === "") {
    throw new DataplaneError("bad-dump", "dump line 1", "missing the interface line");
  }
  return {
    interface: parseInterfaceLine(lines[0]),
    peers: lines.slice(1).map((line, i) => parsePeerLine(line, i + 2)),
  };
}

function parseInterfaceLine(line: string): DumpInterface {
  const f = "dump line 1";
  const cols = line.split("\t");
  if (cols.length < 4) {
    throw new DataplaneError("bad-dump", f, `interface line has ${cols.length} columns, need ≥ 4`);
  }
  const fwmarkText = cols[cols.length - 1];
  let fwmark: number | null = null;
  if (fwmarkText !== "off") {
    if (!/^0x[0-9a-f]{1,8}$/.test(fwmarkText)) {
      throw new DataplaneError("bad-dump", `${f} fwmark`, `${JSON.stringify(fwmarkText)}`);
    }
    fwmark = parseInt(fwmarkText.slice(2), 16);
  }
  const awgFields = cols.slice(3, -1);
  awgFields.forEach((v, i) => {
    if (!/^[ -~]*$/.test(v)) {
      throw new DataplaneError("bad-dump", `${f} column ${i + 4}`, "not printable ASCII");
    }
  });
  return {
    privateKey: maybeKey(cols[0], `${f} private key`),
    publicKey: maybeKey(cols[1], `${f} public key`),
    listenPort: decimal(cols[2], `${f} listen port`, 65535),
    awgFields,
    fwmark,
  };
}

function parsePeerLine(line: string, n: number): DumpPeer {
  const f = `dump line ${n}`;
  const cols = line.split("\t");
  if (cols.length !== 8) {
    throw new DataplaneError("bad-dump", f, `peer line has ${cols.length} columns, need 8`);
  }
  const [pub, psk, endpoint, ips, handshake, rx, tx, keepalive] = cols;
  return {
    publicKey: dumpKey(pub, `${f} public key`),
    presharedKey: maybeKey(psk, `${f} preshared key`),
    endpoint: endpoint === NONE ? null : wrap(() => canonicalEndpoint(endpoint, `${f} endpoint`)),
    allowedIps: ips === NONE
      ? []
      : ips.split(",").map((c, i) => wrap(() => canonicalCidr(c, `${f} allowed ip ${i + 1}`))),
    latestHandshake: decimal(handshake, `${f} latest handshake`, Number.MAX_SAFE_INTEGER),
    rxBytes: u64(rx, `${f} rx bytes`),
    txBytes: u64(tx, `${f} tx bytes`),
    persistentKeepalive: keepalive === "off"
      ? null
      : decimal(keepalive, `${f} persistent keepalive`, 65535),
  };
}

/** Re-labels a field error as a dump error, keeping its field and message. */
function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof DataplaneError) {
      throw new DataplaneError("bad-dump", e.field, e.message.slice(e.field.length + 2));
    }
    throw e;
  }
}

function dumpKey(text: string, field: string): string {
  return wrap(() => checkWgKey(text, field));
}

function maybeKey(text: string, field: string): string | null {
  return text === NONE ? null : dumpKey(text, field);
}

function decimal(text: string, field: string, max: number): number {
  if (!/^(?:0|[1-9][0-9]{0,15})$/.test(text) || Number(text) > max) {
    throw new DataplaneError("bad-dump", field, `${JSON.stringify(text)} is not a number ≤ ${max}`);
  }
  return Number(text);
}

function u64(text: string, field: string): bigint {
  if (!/^(?:0|[1-9][0-9]{0,19})$/.test(text) || BigInt(text) > U64_MAX) {
    throw new DataplaneError("bad-dump", field, `${JSON.stringify(text)} is not a 64-bit counter`);
  }
  return BigInt(text);
}

/** Formats a dump the way `wg show <if> dump` prints it (trailing newline included). */
export function formatWgDump(dump: WgDump): string {
  const i = dump.interface;
  const head = [
    i.privateKey ?? NONE,
    i.publicKey ?? NONE,
    String(i.listenPort),
    ...i.awgFields,
    i.fwmark === null ? "off" : `0x${i.fwmark.toString(16)}`,
  ];
  const peers = dump.peers.map((p) =>
    [
      p.publicKey,
      p.presharedKey ?? NONE,
      p.endpoint ?? NONE,
      p.allowedIps.length === 0 ? NONE : p.allowedIps.join(","),
      String(p.latestHandshake),
      String(p.rxBytes),
      String(p.txBytes),
      p.persistentKeepalive === null ? "off" : String(p.persistentKeepalive),
    ].join("\t")
  );
  return [head.join("\t"), ...peers].join("\n") + "\n";
}
