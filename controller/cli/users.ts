/** `cox users add|list`. */
import type { CliIo } from "../../relay/host/cli_support.ts";
import { Users } from "../service/users.ts";
import { formatTable } from "./format.ts";
import { withService } from "./with_state.ts";

/** `cox users add EMAIL [--admin]`: prints the new user's id. */
export async function usersAdd(
  state: string,
  email: string,
  admin: boolean,
  actor: string,
  io: CliIo,
): Promise<number> {
  const user = await withService(
    state,
    (svc) => new Users(svc).add(actor, { email, role: admin ? "admin" : "user" }),
  );
  io.out(`added ${user.role} ${user.email}: id ${user.id}, version ${user.version}\n`);
  return 0;
}

export async function usersList(state: string, io: CliIo): Promise<number> {
  const users = await withService(state, (svc) => new Users(svc).list());
  if (users.length === 0) {
    io.out(`no users yet; add one with "cox users add EMAIL"\n`);
    return 0;
  }
  io.out(formatTable(
    ["EMAIL", "ROLE", "STATUS", "PASSWORD", "ID", "VERSION", "UPDATED"],
    users.map((u) => [
      u.email,
      u.role,
      u.status,
      u.hasPassword ? "set" : "none",
      u.id,
      String(u.version),
      u.updatedAt.toISOString(),
    ]),
  ));
  return 0;
}
