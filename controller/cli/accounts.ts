/**
 * `cox tickets create`, `cox devices list|revoke`, `cox users passwd`: the
 * operator's side of accounts (controller/accounts), run from the one `cox`
 * command table (run.ts). Each command opens the state, does one thing, and
 * ends in one line; a running controller picks the change up from the
 * database (revocations within seconds, peers through its reconcile loop).
 */
import { Accounts, relayEndpoint } from "../accounts/mod.ts";
import { createLogger } from "../../core/log.ts";
import { splitHostPort } from "../../core/profile/mod.ts";
import type { CliIo } from "../../relay/host/cli_support.ts";
import type { ControllerConfig } from "../config.ts";
import { Devices } from "../devices.ts";
import { qrTerminal } from "../qr.ts";
import { Revocations } from "../revocation.ts";
import { type ControllerState, openState } from "../state.ts";
import { formatTable, UsageError } from "./format.ts";
import { type CoxIo, readAtMost } from "./onboarding_io.ts";

const UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };
/** Longest password `users passwd` reads (the accounts service has its own bounds). */
const MAX_PASSWORD_BYTES = 1024;

/** Ticket lifetime such as 15m, 2h or 1d. */
export function parseTtl(text: string): number {
  const m = /^([1-9][0-9]{0,4})(m|h|d)$/.exec(text);
  if (!m) {
    throw new UsageError(
      `--ttl takes minutes, hours or days such as 15m, 2h or 1d, not "${text.slice(0, 20)}"`,
    );
  }
  return Number(m[1]) * UNITS[m[2]];
}

/** Opens the state and the accounts service for one command, and closes them. */
export async function withAccounts<T>(
  cfg: ControllerConfig,
  io: CliIo,
  fn: (accounts: Accounts, st: ControllerState) => T | Promise<T>,
  relay = relayEndpoint(cfg),
): Promise<T> {
  const st = await openState(cfg.state);
  try {
    const log = createLogger("cox", { sink: io.err, level: "warn" });
    const devices = new Devices(st.db, new Revocations(st.db, log));
    const accounts = await Accounts.open({
      db: st.db,
      keystore: st.keystore,
      pki: st.pki,
      devices,
      relay,
      log,
    });
    return await fn(accounts, st);
  } finally {
    st.close();
  }
}

/**
 * `cox tickets create EMAIL [--ttl T] [--relay HOST:PORT] [--unbound]`: QR,
 * deep link, one closing line. Bound by default (the link's secret MACs the
 * claim, §7.3 c); `--unbound` for the original app, which sends no MAC.
 */
export async function ticketsCreate(
  cfg: ControllerConfig,
  email: string,
  opts: { ttl?: string; relay?: string; unbound?: boolean },
  actor: string,
  io: CliIo,
): Promise<number> {
  let relay = relayEndpoint(cfg);
  if (opts.relay !== undefined) {
    const hp = splitHostPort(opts.relay);
    if (!hp) throw new UsageError(`--relay takes HOST:PORT, not "${opts.relay.slice(0, 60)}"`);
    relay = { addr: opts.relay, serverName: hp.host };
  }
  const ttlMs = opts.ttl === undefined ? undefined : parseTtl(opts.ttl);
  const t = await withAccounts(
    cfg,
    io,
    (a) => a.createTicket(email, { actor, ttlMs, unbound: opts.unbound }),
    relay,
  );
  io.out(qrTerminal(t.url, { ansi: Deno.stdout.isTerminal() }));
  io.out(`${t.url}\n`);
  const kind = opts.unbound ? "unbound: original app, no claim MAC" : "bound to this link";
  io.out(
    `ticket ${t.ticketId} for ${email}: single use, expires ${t.expiresAt.toISOString()} (${kind})\n`,
  );
  return 0;
}

/** `cox devices list [--user EMAIL]`. */
export function devicesList(cfg: ControllerConfig, email: string | undefined, io: CliIo) {
  return withAccounts(cfg, io, (_a, st) => listDevices(st.db, email, io));
}

/** `cox devices revoke ID [--reason TEXT]`. */
export async function devicesRevoke(
  cfg: ControllerConfig,
  id: string,
  reason: string | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  await withAccounts(cfg, io, (a) => a.revokeDevice(id, actor, reason));
  io.out(`revoked device ${id}: its certificate is refused and its peers removed\n`);
  return 0;
}

/** `cox users passwd EMAIL`: the password is one line on stdin, read before the state opens. */
export async function usersPasswd(
  cfg: ControllerConfig,
  email: string,
  actor: string,
  io: CoxIo,
): Promise<number> {
  const password = await passwordLine(io);
  const user = await withAccounts(cfg, io, (a) => a.setPassword(actor, email, password));
  io.out(`password set for ${user.email}\n`);
  return 0;
}

/** One line of stdin (a final newline dropped): UTF-8, not empty, at most MAX_PASSWORD_BYTES. */
async function passwordLine(io: CoxIo): Promise<string> {
  const bytes =
    await (io.stdin ?? (() => readAtMost(Deno.stdin.readable, MAX_PASSWORD_BYTES + 2)))();
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError("the password on stdin is not UTF-8 text");
  }
  text = text.replace(/\r?\n$/, "");
  if (text === "") throw new UsageError("give the new password on stdin (one line)");
  if (/[\r\n]/.test(text)) throw new UsageError("stdin must hold the password on one line");
  if (new TextEncoder().encode(text).length > MAX_PASSWORD_BYTES) {
    throw new UsageError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  }
  return text;
}

interface DeviceListRow {
  id: string;
  email: string | null;
  name: string | null;
  platform: string | null;
  status: string;
  tunnel_ip: string | null;
  created_at: string;
  not_after: string;
}

function listDevices(
  db: ControllerState["db"],
  email: string | undefined,
  io: CliIo,
): number {
  const rows = db.prepare(
    `SELECT d.id, u.email, d.name, d.platform, d.status, d.tunnel_ip, d.created_at, d.not_after
       FROM devices d LEFT JOIN users u ON u.id = d.user_id
      WHERE ? IS NULL OR lower(u.email) = lower(?)
      ORDER BY d.created_at`,
  ).all(email ?? null, email ?? null) as unknown as DeviceListRow[];
  if (rows.length === 0) {
    io.out(
      `no devices${email ? ` for ${email}` : ""}; enroll one with "cox tickets create EMAIL"\n`,
    );
    return 0;
  }
  io.out(formatTable(
    ["ID", "USER", "NAME", "PLATFORM", "STATUS", "TUNNEL IP", "CREATED", "CERT UNTIL"],
    rows.map((r) => [
      r.id,
      r.email ?? "-",
      r.name ?? "-",
      r.platform ?? "-",
      r.status,
      r.tunnel_ip ?? "-",
      r.created_at,
      r.not_after,
    ]),
  ));
  return 0;
}
