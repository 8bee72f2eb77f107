/** The relay's key and certificate files in its config directory. */
import type { KeyFileStore } from "../../core/pki/mod.ts";
import { checkConfigFile, ConfigError, type SettingSpec } from "../../core/settings.ts";

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

/**
 * Reads an optional JSON config file: an object whose keys are the given
 * settings and whose values are strings. No path gives {}; an unreadable
 * file, bad JSON, an unknown key or a non-string value is a ConfigError
 * naming the file.
 */
export async function readJsonConfig(
  path: string | undefined,
  specs: readonly SettingSpec[],
): Promise<Record<string, string>> {
  if (!path) return {};
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError("bad-config", `cannot read config file ${path}: ${(e as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(
      "bad-config",
      `config file ${path} is not a JSON object: ${(e as Error).message}`,
    );
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ConfigError("bad-config", `config file ${path} is not a JSON object`);
  }
  checkConfigFile(specs, v as Record<string, unknown>, path);
  return v as Record<string, string>;
}
