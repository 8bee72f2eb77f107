/**
 * Works around denoland/deno#35947 (open in Deno 2.9): a node:http2 client
 * stream can emit "data" (and then "trailers"/"end") before "response" when
 * headers and body arrive in one read. grpc-js and our relay's backend leg
 * then lose or misplace messages. This holds back every such event on a
 * client stream until "response" has been emitted, restoring Node's order.
 * It patches http2.connect once per process; remove it when Deno is fixed.
 */
import http2 from "node:http2";

const PATCHED = Symbol.for("pharos.http2-order-fix");
const HELD = new Set(["data", "end", "trailers", "close", "aborted"]);
/** If "response" never comes (a reset stream), held events go out after this. */
const FALLBACK_MS = 50;

type Emit = (event: string | symbol, ...args: unknown[]) => boolean;

function fixStream(stream: http2.ClientHttp2Stream): void {
  const emit = stream.emit.bind(stream) as Emit;
  let held: [string | symbol, unknown[]][] | null = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const release = () => {
    clearTimeout(timer);
    const queue = held ?? [];
    held = null;
    for (const [e, a] of queue) emit(e, ...a);
  };
  (stream as unknown as { emit: Emit }).emit = (event, ...args) => {
    if (held !== null) {
      if (event === "response") {
        const r = emit(event, ...args);
        release();
        return r;
      }
      if (event === "error") {
        release();
      } else if (typeof event === "string" && HELD.has(event)) {
        held.push([event, args]);
        timer ??= setTimeout(release, FALLBACK_MS);
        return true;
      }
    }
    return emit(event, ...args);
  };
}

export function installHttp2ClientOrderFix(): void {
  const mod = http2 as unknown as Record<symbol, boolean> & { connect: typeof http2.connect };
  if (mod[PATCHED]) return;
  mod[PATCHED] = true;
  const connect = http2.connect;
  mod.connect = function (this: unknown, ...args: Parameters<typeof http2.connect>) {
    const session = connect.apply(this, args) as http2.ClientHttp2Session;
    const request = session.request.bind(session);
    session.request = ((...a: Parameters<typeof session.request>) => {
      const stream = request(...a);
      fixStream(stream);
      return stream;
    }) as typeof session.request;
    return session;
  } as typeof http2.connect;
}

installHttp2ClientOrderFix();
