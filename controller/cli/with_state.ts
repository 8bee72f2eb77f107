/** Opens an existing state for one `cox` command and closes it afterwards. */
import { userInfo } from "node:os";
import { Service } from "../service/service.ts";
import { type ControllerState, openState } from "../state.ts";

export async function withService<T>(
  state: string,
  fn: (service: Service, st: ControllerState) => T | Promise<T>,
): Promise<T> {
  const st = await openState(state);
  try {
    return await fn(new Service(st.db), st);
  } finally {
    st.close();
  }
}

/** The audit actor of a command typed by an operator: `cli:<OS user name>`. */
export function cliActor(): string {
  let name: string;
  try {
    name = userInfo().username;
  } catch {
    name = "unknown";
  }
  return `cli:${name.replace(/[^A-Za-z0-9._@+-]/g, "_").slice(0, 64) || "unknown"}`;
}
