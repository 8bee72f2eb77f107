/**
 * A client of the cross-platform WireGuard configuration socket ("UAPI")
 * that wireguard-go and amneziawg-go create per interface. One connection
 * is kept open and requests go one at a time (the daemon serves several
 * requests per connection); a broken connection is re-opened once per
 * request. Every read and the whole request are bounded.
 */
import { parseUapiErrno, parseUapiGet, type WgDump } from "../../core/dataplane/mod.ts";
import { AgentError } from "../errors.ts";

const REQUEST_TIMEOUT_MS = 10_000;
/** A get reply with 65,536 peers is ~20 MB; refuse anything larger. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

export class UapiClient {
  #conn: Deno.UnixConn | null = null;
  #tail: Promise<unknown> = Promise.resolve();
  #buf = "";
  /** One read buffer for the life of the client (a fresh 64 KiB per request fragments memory). */
  readonly #chunk = new Uint8Array(65536);
  readonly #dec = new TextDecoder();

  constructor(readonly socketPath: string) {}

  /** Sends `set=1` text (already rendered and terminated by a blank line). */
  async set(request: string): Promise<void> {
    if (!request.startsWith("set=1\n") || !request.endsWith("\n\n")) {
      throw new AgentError("bad-uapi-request", "a UAPI set request must start with set=1");
    }
    const reply = await this.#request(request);
    const errno = parseUapiErrno(reply);
    if (errno !== 0) {
      throw new AgentError(
        "uapi-rejected",
        `${this.socketPath} refused the change (errno=${errno}); see the interface's log`,
      );
    }
  }

  async get(): Promise<WgDump> {
    return parseUapiGet(await this.#request("get=1\n\n"));
  }

  /** True when the socket answers a get. */
  async alive(): Promise<boolean> {
    try {
      await this.get();
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    try {
      this.#conn?.close();
    } catch { /* already closed */ }
    this.#conn = null;
    this.#buf = "";
  }

  #request(text: string): Promise<string> {
    const run = this.#tail.then(() => this.#exchange(text, true));
    this.#tail = run.catch(() => {});
    return run;
  }

  async #exchange(text: string, retry: boolean): Promise<string> {
    const fresh = this.#conn === null;
    try {
      if (this.#conn === null) {
        this.#conn = await Deno.connect({ transport: "unix", path: this.socketPath });
      }
      const conn = this.#conn;
      return await bounded(this.#roundTrip(conn, text), REQUEST_TIMEOUT_MS, this.socketPath);
    } catch (e) {
      this.close();
      if (retry && !fresh) return await this.#exchange(text, false);
      if (e instanceof AgentError) throw e;
      throw new AgentError(
        "uapi-unreachable",
        `cannot talk to ${this.socketPath}: ${(e as Error).message}`,
      );
    }
  }

  async #roundTrip(conn: Deno.UnixConn, text: string): Promise<string> {
    const bytes = new TextEncoder().encode(text);
    let off = 0;
    while (off < bytes.length) off += await conn.write(bytes.subarray(off));
    const dec = this.#dec;
    const chunk = this.#chunk;
    let total = 0;
    for (;;) {
      const end = this.#buf.indexOf("\n\n");
      if (end >= 0) {
        const reply = this.#buf.slice(0, end + 2);
        this.#buf = this.#buf.slice(end + 2);
        return reply;
      }
      const n = await conn.read(chunk);
      if (n === null) throw new Error("connection closed before the reply ended");
      total += n;
      if (total > MAX_REPLY_BYTES) throw new Error("reply too large");
      this.#buf += dec.decode(chunk.subarray(0, n), { stream: true });
    }
  }
}

async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no reply within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
