/** Applying a policy document received on a controller-opened stream. */
import type { Logger } from "../core/log.ts";
import { MAX_POLICY_BYTES, type RelayPolicy } from "../core/relay_policy.ts";

/** Reads the document (bounded), applies it, answers "ok" or "error: …" and closes. */
export async function receivePolicy(
  payload: ReadableStream<Uint8Array>,
  writable: WritableStream<Uint8Array>,
  policy: RelayPolicy,
  log: Logger,
): Promise<void> {
  const parts: Uint8Array[] = [];
  let size = 0;
  let answer = "ok\n";
  try {
    for await (const chunk of payload) {
      size += chunk.length;
      if (size > MAX_POLICY_BYTES) {
        throw new Error(`policy is larger than ${MAX_POLICY_BYTES} bytes`);
      }
      parts.push(chunk);
    }
    const text = new TextDecoder("utf-8", { fatal: true }).decode(
      await new Blob(parts as BlobPart[]).bytes(),
    );
    policy.apply(text, log);
  } catch (e) {
    answer = `error: ${(e as Error).message}\n`;
    log.warn("policy refused", { error: e });
  }
  const w = writable.getWriter();
  await w.write(new TextEncoder().encode(answer)).catch(() => {});
  await w.close().catch(() => {});
}
