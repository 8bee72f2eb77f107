/**
 * Go tools from the module proxy for tests (h2spec, ...): `go install
 * module/cmd@version` into a temporary directory next to the cache, then an
 * atomic rename to `${XDG_CACHE_HOME:-$HOME/.cache}/pharos-tests/go-tools/
 * <name>-<version>-<go version hash>/<name>`, so concurrent test processes
 * never run a half-written binary and a cached one is reused. Gate suites
 * with goCapability (go_peer.ts) first.
 */
import { goCommand } from "./go_peer.ts";

function cacheRoot(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const base = xdg && xdg.startsWith("/") ? xdg : `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
  return `${base}/pharos-tests/go-tools`;
}

async function hash(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(d.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
}

const builds = new Map<string, Promise<string>>();

/** Builds (or finds in the cache) `module/path/cmd@version`; returns the binary's path. */
export function buildGoTool(spec: string): Promise<string> {
  const m = /^([a-z0-9.\-]+(?:\/[A-Za-z0-9._\-]+)+)@(v[0-9A-Za-z.+\-]+)$/.exec(spec);
  if (!m) throw new Error(`buildGoTool: "${spec}" is not module/path@version`);
  let p = builds.get(spec);
  if (!p) {
    p = build(m[1], m[2]);
    builds.set(spec, p);
    p.catch(() => builds.delete(spec));
  }
  return p;
}

async function build(pkg: string, version: string): Promise<string> {
  const go = goCommand();
  if (go === null) throw new Error("buildGoTool: no Go toolchain found");
  const name = pkg.slice(pkg.lastIndexOf("/") + 1);
  const env = { GOTOOLCHAIN: "local", GOFLAGS: "-buildvcs=false" };
  const v = await new Deno.Command(go, { args: ["version"], env, stdout: "piped" }).output();
  const goVersion = new TextDecoder().decode(v.stdout).trim();
  const root = cacheRoot();
  const dir = `${root}/${name}-${version.replace(/[^0-9A-Za-z.\-]/g, "_")}-${await hash(
    goVersion,
  )}`;
  const binary = `${dir}/${name}`;
  try {
    if ((await Deno.stat(binary)).isFile) return binary;
  } catch {
    // not built yet
  }
  await Deno.mkdir(root, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: root, prefix: `.${name}-build-` });
  try {
    const out = await new Deno.Command(go, {
      args: ["install", "-trimpath", `${pkg}@${version}`],
      env: { ...env, GOBIN: tmp },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.code !== 0) {
      throw new Error(
        `go install ${pkg}@${version} failed (exit ${out.code}):\n${
          new TextDecoder().decode(out.stderr)
        }`,
      );
    }
    await Deno.mkdir(dir, { recursive: true });
    await Deno.rename(`${tmp}/${name}`, binary);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return binary;
}
