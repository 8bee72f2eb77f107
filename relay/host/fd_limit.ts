/**
 * The process's file-descriptor limit (RLIMIT_NOFILE) and how many it has
 * open (Linux). Deno cannot call getrlimit, and reads /proc/self only with
 * --allow-all (the controller has it); the relay runs with narrower
 * permissions that include running `prlimit` (util-linux), which reports
 * the limit it inherited from us. Where neither works, the answer is null
 * and the callers assume the usual 1024 (core/conn_limits.ts
 * ASSUMED_NOFILE) — safe, but low: set --max-connections then.
 */

/** The text of /proc/self/limits, for parseNofile. */
function readLimits(): string | null {
  try {
    if (
      Deno.permissions.querySync({ name: "read", path: "/proc/self/limits" }).state !== "granted"
    ) {
      return null;
    }
    return Deno.readTextFileSync("/proc/self/limits");
  } catch {
    return null;
  }
}

/**
 * The "Max open files" row of /proc/<pid>/limits: soft and hard limit
 * (null for "unlimited" or an unreadable row).
 */
export function parseNofile(limits: string): { soft: number | null; hard: number | null } | null {
  const row = limits.split("\n").find((l) => l.startsWith("Max open files"));
  if (!row) return null;
  const [soft, hard] = row.slice("Max open files".length).trim().split(/\s+/);
  const num = (v: string | undefined) => (v && /^\d+$/.test(v) ? Number(v) : null);
  return { soft: num(soft), hard: num(hard) };
}

/** Our limit as `prlimit` (inheriting it) reports it, when we may run prlimit. */
function prlimitSoft(): number | null {
  try {
    if (Deno.permissions.querySync({ name: "run", command: "prlimit" }).state !== "granted") {
      return null;
    }
    const out = new Deno.Command("prlimit", {
      args: ["--nofile", "--raw", "--noheadings", "--output=SOFT"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const text = new TextDecoder().decode(out.stdout).trim();
    return out.success && /^\d+$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

let cached: number | null | undefined;

/** The soft RLIMIT_NOFILE of this process, or null when it cannot be read (read once). */
export function softNofile(): number | null {
  if (cached !== undefined) return cached;
  const text = readLimits();
  const fromProc: number | null = text === null ? null : (parseNofile(text)?.soft ?? null);
  cached = fromProc ?? prlimitSoft();
  return cached;
}

/** Open file descriptors of this process, or null when /proc/self/fd cannot be listed. */
export function openFds(): number | null {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n;
  } catch {
    return null;
  }
}
