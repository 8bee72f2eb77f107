/** Checks made before any row is written or any connection opened. */
import { SshError } from "../ssh/errors.ts";
import { normalizeSshFingerprint } from "../ssh/host_key.ts";
import { OnboardingError } from "./errors.ts";
import { type RemoteSetup, type ResolvedSetup, resolveSetup } from "./setup.ts";

export async function prepare(
  defaults: RemoteSetup,
  overrides: Partial<RemoteSetup> | undefined,
  acceptHostKey: string | undefined,
): Promise<{ setup: ResolvedSetup; acceptHostKey?: string }> {
  const setup = resolveSetup({ ...defaults, ...overrides });
  for (const f of setup.staged) {
    try {
      if (!(await Deno.stat(f.local)).isFile) throw new Deno.errors.NotFound();
    } catch {
      throw new OnboardingError(
        "bad-setup",
        `the install file ${
          JSON.stringify(f.local)
        } does not exist here; check the checkout (or the --install-script path)`,
        "prepare",
      );
    }
  }
  let accept: string | undefined;
  if (acceptHostKey !== undefined) {
    try {
      accept = normalizeSshFingerprint(acceptHostKey);
    } catch (e) {
      if (!(e instanceof SshError)) throw e;
      throw new OnboardingError(e.code, e.message, "prepare");
    }
  }
  return { setup, acceptHostKey: accept };
}
