/**
 * The `gen-csr` step of a node or relay: reuse the private key file if one
 * exists (so re-running never changes the identity), otherwise make one, and
 * write a fresh CSR beside it. File access is injected so this stays pure.
 */
import { type CsrKind, generateCsr } from "./csr.ts";
import { importKeyPair } from "./keys.ts";

export interface KeyFileStore {
  /** Text of a file, or null when it does not exist. */
  read(name: string): Promise<string | null>;
  /** Writes a file readable by its owner only (0600). */
  writeSecret(name: string, text: string): Promise<void>;
  write(name: string, text: string): Promise<void>;
}

export interface KeyAndCsr {
  csrPem: string;
  /** False when an existing key file was reused. */
  createdKey: boolean;
}

export async function ensureKeyAndCsr(
  store: KeyFileStore,
  kind: CsrKind,
  files: { key: string; csr: string },
): Promise<KeyAndCsr> {
  const existing = await store.read(files.key);
  const keys = existing === null ? undefined : await importKeyPair(existing);
  const made = await generateCsr(kind, { keys });
  if (existing === null) await store.writeSecret(files.key, made.keyPem);
  await store.write(files.csr, made.csrPem);
  return { csrPem: made.csrPem, createdKey: existing === null };
}
