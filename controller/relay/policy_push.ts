/**
 * Sending a relay its policy on a controller-opened stream. Every push is
 * bounded by a short deadline: a relay that does not take the stream (an
 * original relay never acknowledges it; yamux would wait 75 s) or does not
 * answer costs at most `timeoutMs`, and the stream is reset, never left
 * pending. Callers must not push to a relay that did not negotiate the
 * policy channel (see dial.ts) in the first place.
 */
import { encodeConnect } from "../../core/connect/mod.ts";
import { PharosError } from "../../core/errors.ts";
import type { MuxSession } from "../../core/mux/mod.ts";
import {
  parsePolicyAnswer,
  POLICY_HOST,
  POLICY_PORT,
  type PolicyAnswer,
  type PolicyDocument,
} from "../../core/relay_policy.ts";

export const POLICY_ACK_TIMEOUT_MS = 5000;

/** Codes: timeout (no answer in time), failed (the stream broke). */
export class PolicyPushError extends PharosError {}

/** Opens a stream, sends the document, and returns the relay's answer. */
export async function pushPolicy(
  session: MuxSession,
  doc: PolicyDocument,
  timeoutMs = POLICY_ACK_TIMEOUT_MS,
): Promise<PolicyAnswer> {
  const stream = await session.open();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new PolicyPushError(
            "timeout",
            `the relay did not answer the policy (revision ${doc.revision}) within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
  });
  const exchange = (async () => {
    const w = stream.writable.getWriter();
    await w.write(encodeConnect(POLICY_HOST, POLICY_PORT));
    await w.write(new TextEncoder().encode(JSON.stringify(doc)));
    await w.close();
    let answer = "";
    for await (const chunk of stream.readable) {
      answer += new TextDecoder().decode(chunk);
      if (answer.length > 4096) break;
    }
    return answer;
  })();
  try {
    return parsePolicyAnswer(await Promise.race([exchange, deadline]));
  } catch (e) {
    if (e instanceof PolicyPushError) throw e;
    throw new PolicyPushError("failed", `policy stream failed: ${(e as Error).message}`, {
      cause: e,
    });
  } finally {
    clearTimeout(timer);
    exchange.catch(() => {});
    stream.reset();
  }
}
