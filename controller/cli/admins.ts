/**
 * `cox admins add` and `cox admins reset-totp`, run from the one `cox`
 * command table (run.ts):
 * - add prints a one-time setup link (24 h) with which a new admin chooses
 *   an e-mail address and password in the dashboard — the same link the
 *   controller's first start prints. Under the personal preset there is one
 *   admin at most; the link then fails at use.
 * - reset-totp is for an admin who lost the authenticator: two-factor
 *   sign-in and recovery codes are removed and every session of theirs
 *   ends (audited); they sign in with the password and may enrol again.
 */
import { PharosError } from "../../core/errors.ts";
import { splitListen } from "../../core/settings.ts";
import type { CliIo } from "../../relay/host/cli_support.ts";
import { AdminAuth } from "../api/admin_auth.ts";
import type { ControllerConfig } from "../config.ts";
import { withService } from "./with_state.ts";

/** `cox admins add [--url BASE]`: BASE defaults to the dashboard's --ui-listen. */
export async function adminsAdd(
  cfg: ControllerConfig,
  url: string | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  const { hostname, port } = splitListen(cfg.uiListen);
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const base = (url ?? `http://${host}:${port}`).replace(/\/+$/, "");
  const { token, expiresAt } = await withService(
    cfg.state,
    (service, st) => new AdminAuth({ service, keystore: st.keystore }).createSetupToken(actor),
  );
  io.out(`${base}/setup#token=${token}\n`);
  io.out(`one-time admin setup link, valid until ${expiresAt}\n`);
  return 0;
}

/** `cox admins reset-totp EMAIL`: TOTP off and every session ended; one closing line. */
export async function adminsResetTotp(
  state: string,
  email: string,
  actor: string,
  io: CliIo,
): Promise<number> {
  const done = await withService(state, (service, st) => {
    const auth = new AdminAuth({ service, keystore: st.keystore });
    const user = auth.users.find(email);
    if (!user || user.role !== "admin") {
      throw new PharosError(
        "not-found",
        `no admin ${email.slice(0, 254)}; "cox users list" shows them`,
      );
    }
    return { user, ...auth.resetTotp(actor, user.id) };
  });
  const ended = `${done.sessionsEnded} session${done.sessionsEnded === 1 ? "" : "s"} ended`;
  io.out(
    done.hadTotp
      ? `two-factor sign-in of ${done.user.email} removed, ${ended}; they sign in with the password alone and may enrol again\n`
      : `${done.user.email} had no two-factor sign-in; ${ended}\n`,
  );
  return 0;
}
