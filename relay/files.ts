/** The relay's key and certificate files in its config directory. */
import type { KeyFileStore } from "../core/pki/mod.ts";
import { ConfigError } from "../core/settings.ts";

/** A KeyFileStore over a directory; secrets are created with mode 0600. */
export function dirStore(dir: string): KeyFileStore {
  return {
    async read(name) {
      try {
        return await Deno.readTextFile(`${dir}/${name}`);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return null;
        throw e;
      }
    },
    async writeSecret(name, text) {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      await Deno.writeTextFile(`${dir}/${name}`, text, { mode: 0o600, createNew: true });
    },
    async write(name, text) {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      await Deno.writeTextFile(`${dir}/${name}`, text);
    },
  };
}

/** Reads an optional JSON config file (an object); a missing path gives {}. */
export async function readJsonConfig(path: string | undefined): Promise<Record<string, unknown>> {
  if (!path) return {};
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError("bad-config", `cannot read config file ${path}: ${(e as Error).message}`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new Error("not a JSON object");
    }
    return v;
  } catch (e) {
    throw new ConfigError(
      "bad-config",
      `config file ${path} is not a JSON object: ${(e as Error).message}`,
    );
  }
}
