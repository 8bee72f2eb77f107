/**
 * `user@host[:port]` as the operator types it (`cox nodes add`): the user
 * is a POSIX login name, the host an IP address (IPv6 in brackets when a
 * port follows) or a DNS name, the port 1-65535 (22 by default). Anything
 * else, shell characters included, is refused before any connection.
 */
import { formatHost, joinHostPort, NetError, parseHost } from "../../core/net/mod.ts";
import { SshError } from "./errors.ts";

export interface SshTarget {
  user: string;
  /** Canonical host (lower case, IPv6 compressed, no brackets). */
  host: string;
  port: number;
}

export const SSH_USER = /^[a-z_][a-z0-9_-]{0,31}$/;

function bad(text: string, why: string): SshError {
  return new SshError(
    "bad-target",
    `SSH target ${
      JSON.stringify(text.slice(0, 100))
    }: ${why}; write user@host, user@host:port or user@[ipv6]:port`,
  );
}

export function checkSshUser(user: string): string {
  if (!SSH_USER.test(user)) {
    throw new SshError(
      "bad-target",
      `SSH user ${
        JSON.stringify(user.slice(0, 40))
      } is not a login name (a-z, 0-9, _ and -, starting with a letter or _, at most 32)`,
    );
  }
  return user;
}

export function parseSshTarget(text: string, defaultUser = "root"): SshTarget {
  if (typeof text !== "string" || text.length === 0 || text.length > 300) {
    throw bad(String(text), "empty or too long");
  }
  const at = text.lastIndexOf("@");
  const user = at < 0 ? defaultUser : text.slice(0, at);
  if (!SSH_USER.test(user)) {
    throw bad(text, `${JSON.stringify(user.slice(0, 40))} is not a login name`);
  }
  const rest = text.slice(at + 1);
  let hostText: string;
  let portText: string | undefined;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 0) throw bad(text, "unclosed [");
    hostText = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) throw bad(text, "unexpected text after ]");
    portText = after === "" ? undefined : after.slice(1);
  } else {
    const colons = rest.split(":").length - 1;
    if (colons > 1) hostText = rest; // bare IPv6 without a port
    else [hostText, portText] = rest.split(":") as [string, string | undefined];
  }
  let host: string;
  try {
    host = formatHost(parseHost(hostText));
  } catch (e) {
    if (e instanceof NetError) {
      throw bad(
        text,
        `${JSON.stringify(hostText.slice(0, 60))} is neither an IP address nor a host name`,
      );
    }
    throw e;
  }
  let port = 22;
  if (portText !== undefined) {
    if (!/^[1-9][0-9]{0,4}$/.test(portText) || Number(portText) > 65535) {
      throw bad(text, `port ${JSON.stringify(portText.slice(0, 10))} is not 1-65535`);
    }
    port = Number(portText);
  }
  return { user, host, port };
}

/** `user@host:port` (IPv6 bracketed). */
export function formatSshTarget(t: SshTarget): string {
  return `${t.user}@${joinHostPort(t.host, t.port)}`;
}
