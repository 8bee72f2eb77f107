/** Sending a relay its policy on a controller-opened stream. */
import { encodeConnect } from "../../core/connect/mod.ts";
import type { MuxSession } from "../../core/mux/mod.ts";
import { POLICY_HOST, POLICY_PORT, type PolicyDocument } from "../../core/relay_policy.ts";

/** Opens a stream, sends the document, and returns the relay's answer line. */
export async function pushPolicy(session: MuxSession, doc: PolicyDocument): Promise<string> {
  const stream = await session.open();
  const w = stream.writable.getWriter();
  await w.write(encodeConnect(POLICY_HOST, POLICY_PORT));
  await w.write(new TextEncoder().encode(JSON.stringify(doc)));
  await w.close();
  let answer = "";
  for await (const chunk of stream.readable) {
    answer += new TextDecoder().decode(chunk);
    if (answer.length > 4096) break;
  }
  return answer.trim();
}
