/**
 * The link between the agent's main process (data plane, state) and its
 * control front (the TLS/gRPC listener): JSON, one message per line, over
 * the front's stdin and stdout. Byte fields travel as `{"$b64": …}`.
 *
 * front → main: {t:"ready", port} | {t:"fatal", code, message}
 *               | {t:"call", id, method, req}
 * main → front: {t:"result", id, res} | {t:"error", id, status, code, message}
 *               | {t:"event", e} | {t:"shutdown"}
 */

export type IpcMessage =
  | { t: "ready"; port: number }
  | { t: "fatal"; code: string; message: string }
  | { t: "call"; id: number; method: string; req: Record<string, unknown> }
  | { t: "result"; id: number; res: unknown }
  | { t: "error"; id: number; status: number; code: string; message: string }
  | { t: "event"; e: Record<string, unknown> }
  | { t: "shutdown" };

/** Longest line accepted (a PushConfig of tens of thousands of peers, in base64). */
export const MAX_LINE = 64 * 1024 * 1024;

export function encodeMessage(m: IpcMessage): string {
  return JSON.stringify(m, function (this: Record<string, unknown>, key, value) {
    const raw = this[key];
    if (raw instanceof Uint8Array) return { $b64: raw.toBase64() };
    return value;
  }) + "\n";
}

export function decodeMessage(line: string): IpcMessage {
  return JSON.parse(line, (_key, value) => {
    if (
      value && typeof value === "object" && !Array.isArray(value) &&
      typeof value.$b64 === "string" && Object.keys(value).length === 1
    ) {
      return Uint8Array.fromBase64(value.$b64);
    }
    return value;
  }) as IpcMessage;
}

/** Reads messages from a byte stream until it ends (bounded line length). */
export async function readMessages(
  stream: ReadableStream<Uint8Array>,
  onMessage: (m: IpcMessage) => void,
): Promise<void> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += dec.decode(chunk, { stream: true });
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() !== "") onMessage(decodeMessage(line));
    }
    if (buf.length > MAX_LINE) throw new Error("control link: message too long");
  }
}

/** Writes messages in order to a byte stream. */
export class MessageWriter {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #tail: Promise<void> = Promise.resolve();
  #broken = false;

  constructor(stream: WritableStream<Uint8Array>) {
    this.#writer = stream.getWriter();
  }

  send(m: IpcMessage): Promise<void> {
    if (this.#broken) return Promise.resolve();
    const bytes = new TextEncoder().encode(encodeMessage(m));
    this.#tail = this.#tail.then(() => this.#writer.write(bytes)).catch(() => {
      this.#broken = true;
    });
    return this.#tail;
  }

  async close(): Promise<void> {
    await this.#tail;
    await this.#writer.close().catch(() => {});
  }
}
