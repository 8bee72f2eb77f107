/**
 * The reference client's state directory: `state.json` (keys, pins,
 * session; core/client's format) and `pharos.conf` (the rendered tunnel
 * config, which holds the WireGuard private key). The directory is 0700,
 * both files 0600, written atomically.
 */
import {
  ClientError,
  type ClientState,
  decodeClientState,
  encodeClientState,
} from "../../core/client/mod.ts";
import { writeFileAtomic } from "../store.ts";

export const STATE_FILE = "state.json";
export const CONFIG_FILE = "pharos.conf";

/** Default state directory: $PHAROS_CLIENT_STATE, else ~/.config/pharos-client. */
export function defaultStateDir(env: (n: string) => string | undefined): string {
  return env("PHAROS_CLIENT_STATE") ?? `${env("HOME") ?? "."}/.config/pharos-client`;
}

export async function loadState(dir: string): Promise<ClientState> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/${STATE_FILE}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ClientError(
        "bad-state",
        `no client state in ${dir}: enroll first (deno task client enroll LINK)`,
      );
    }
    throw e;
  }
  return decodeClientState(text);
}

export async function saveState(dir: string, state: ClientState): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  await writeFileAtomic(`${dir}/${STATE_FILE}`, encodeClientState(state));
}

export async function saveConfig(dir: string, text: string): Promise<string> {
  const path = `${dir}/${CONFIG_FILE}`;
  await writeFileAtomic(path, text);
  return path;
}
