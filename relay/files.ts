/** The relay's key and certificate files in its config directory. */
import type { KeyFileStore } from "../core/pki/mod.ts";

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
