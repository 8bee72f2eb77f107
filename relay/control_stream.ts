/** Applying a policy document received on a controller-opened stream. */
import type { Logger } from "../core/log.ts";
import {
  formatPolicyAnswer,
  MAX_POLICY_BYTES,
  type PolicyAnswer,
  type RelayPolicy,
} from "../core/relay_policy.ts";

/**
 * Reads the document (bounded), applies it, answers and closes. The answer
 * is "ok" (applied), "stale: <revision held>" (not newer than the applied
 * one: nothing changed) or "error: …" (refused).
 */
export async function receivePolicy(
  payload: ReadableStream<Uint8Array>,
  writable: WritableStream<Uint8Array>,
  policy: RelayPolicy,
  log: Logger,
): Promise<void> {
  const parts: Uint8Array[] = [];
  let size = 0;
  let answer: PolicyAnswer;
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
    if (policy.apply(text, log)) {
      answer = { kind: "ok" };
    } else {
      answer = { kind: "stale", relayRevision: policy.revision };
      log.warn("stale policy ignored", { code: "policy-stale", holds: policy.revision });
    }
  } catch (e) {
    answer = { kind: "error", message: (e as Error).message };
    log.warn("policy refused", { code: "policy-refused", error: e });
  }
  const w = writable.getWriter();
  await w.write(new TextEncoder().encode(formatPolicyAnswer(answer))).catch(() => {});
  await w.close().catch(() => {});
}
