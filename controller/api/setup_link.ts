/**
 * The first admin's setup link: while no admin with a password exists, each
 * controller start makes a one-time token (24 h) and prints the link on
 * stdout — never in the JSON log, which is kept and shipped. The token is
 * in the URL fragment, so the browser sends it to no server log or Referer;
 * the dashboard's /setup page posts it to /api/auth/setup.
 *
 * A new start link replaces the unused ones earlier starts made (each
 * removal audited): they were printed once and cannot be shown again, so
 * keeping them valid only leaves more live secrets in old terminals and
 * logs of service managers. Links made with `cox admins add` are left alone.
 */
import type { Logger } from "../../core/log.ts";
import type { Actor } from "../service/service.ts";
import type { AdminAuth } from "./admin_auth.ts";

/** Who makes the start links (their creation is audited under this actor). */
const START_ACTOR: Actor = "system:controller";

export function announceSetupLink(
  auth: AdminAuth,
  baseUrl: string,
  log: Logger,
  print: (line: string) => void = (line) => console.log(line),
): string | undefined {
  if (auth.hasAdmin()) return undefined;
  const { token, expiresAt } = replaceStartLinks(auth);
  const url = `${baseUrl}/setup#token=${token}`;
  print(
    `No admin yet. Create the first one within 24 h, with the link of the latest start: ${url}`,
  );
  log.info("no admin yet: a one-time setup link was printed on stdout", {
    code: "setup-link",
    expires_at: expiresAt,
  });
  return url;
}

/** Removes the unused setup tokens of earlier starts and makes a new one, in one transaction. */
function replaceStartLinks(auth: AdminAuth): ReturnType<AdminAuth["createSetupToken"]> {
  const { service } = auth;
  return service.transaction(() => {
    const earlier = service.db.prepare(
      `SELECT t.id, t.version FROM admin_setup_tokens t
        WHERE t.used_at IS NULL AND EXISTS (
          SELECT 1 FROM audit_log a
           WHERE a.action = 'setup_token.create' AND a.target_type = 'setup_token'
             AND a.target_id = t.id AND a.actor = ?)`,
    ).all(START_ACTOR) as { id: string; version: number }[];
    for (const t of earlier) {
      service.mutate(
        {
          actor: START_ACTOR,
          action: "setup_token.revoke",
          target: { type: "setup_token", id: t.id },
          expectVersion: t.version,
        },
        (tx) => tx.remove(),
      );
    }
    return auth.createSetupToken(START_ACTOR);
  });
}
