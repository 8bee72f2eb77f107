/**
 * `cox profiles reseal --user ID|EMAIL | --all`: reseals device profiles
 * on the state directly (as the dashboard's "Reseal all" does through the
 * API), printing "n of m devices resealed" on stderr as it goes and one
 * closing line; exit 1 when any device could not be resealed (the others
 * are resealed all the same).
 */
import type { CliIo } from "../../relay/host/cli_support.ts";
import { formatResealProgress } from "../onboarding/events.ts";
import type { ControllerConfig } from "../config.ts";
import { Service } from "../service/service.ts";
import { Users } from "../service/users.ts";
import { withAccounts } from "./accounts.ts";
import { UsageError } from "./format.ts";

export async function profilesReseal(
  cfg: ControllerConfig,
  opts: { user?: string; all: boolean },
  actor: string,
  io: CliIo,
): Promise<number> {
  if ((opts.user === undefined) === !opts.all) {
    throw new UsageError("give --user ID (one user's devices) or --all (every user's), not both");
  }
  const { total, who } = await withAccounts(cfg, io, async (accounts, st) => {
    let userId: string | undefined;
    let who = "every user";
    if (opts.user !== undefined) {
      const u = new Users(new Service(st.db)).find(opts.user);
      if (!u) {
        throw new UsageError(`no user "${opts.user.slice(0, 80)}"; "cox users list" shows them`);
      }
      userId = u.id;
      who = u.email;
    }
    const r = await accounts.resealProfiles({
      userId,
      actor,
      // The closing line is printed once, below (or as the error).
      emit: (e) => e.status !== "finished" && io.err(formatResealProgress(e)),
    });
    return { total: r.total, who };
  });
  io.out(`${total} of ${total} device profiles of ${who} resealed\n`);
  return 0;
}
