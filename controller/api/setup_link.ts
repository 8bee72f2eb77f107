/**
 * The first admin's setup link: while no admin with a password exists, each
 * controller start makes a one-time token (24 h) and prints the link on
 * stdout — never in the JSON log, which is kept and shipped. The token is
 * in the URL fragment, so the browser sends it to no server log or Referer;
 * the dashboard's /setup page posts it to /api/auth/setup.
 */
import type { Logger } from "../../core/log.ts";
import type { AdminAuth } from "./admin_auth.ts";

export function announceSetupLink(
  auth: AdminAuth,
  baseUrl: string,
  log: Logger,
  print: (line: string) => void = (line) => console.log(line),
): string | undefined {
  if (auth.hasAdmin()) return undefined;
  const { token, expiresAt } = auth.createSetupToken("system:controller");
  const url = `${baseUrl}/setup#token=${token}`;
  print(`No admin yet. Create the first one within 24 h at: ${url}`);
  log.info("no admin yet: a one-time setup link was printed on stdout", {
    code: "setup-link",
    expires_at: expiresAt,
  });
  return url;
}
