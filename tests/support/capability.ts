/**
 * Gate for suites that need something outside the project (root, a daemon,
 * a binary). When the capability is missing the suite is skipped with a loud
 * reason; under PHAROS_REQUIRE_ALL=1 (set by .ci/run) the skip becomes a
 * failing test, so CI never passes with a suite silently left out.
 */
export interface Capability {
  /** Pass as `ignore` to Deno.test. */
  ignore: boolean;
}

export const requireAll = Deno.env.get("PHAROS_REQUIRE_ALL") === "1";

export function capability(suite: string, available: boolean, reason: string): Capability {
  if (available) return { ignore: false };
  console.error(`\n!!! SKIPPING ${suite}: ${reason}\n`);
  if (requireAll) {
    Deno.test(`${suite}: required capability missing`, () => {
      throw new Error(`${suite} cannot run: ${reason} (PHAROS_REQUIRE_ALL=1 forbids skipping)`);
    });
  }
  return { ignore: true };
}

/** True when `cmd` is found on PATH and runs with the given args. */
export function hasCommand(cmd: string, args: string[] = ["--version"]): boolean {
  try {
    const out = new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).outputSync();
    return out.code === 0 || out.code === 1;
  } catch {
    return false;
  }
}

export function isRoot(): boolean {
  return Deno.uid() === 0;
}
