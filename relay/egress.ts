/**
 * Control-plane egress: on a controller-only session (the relay is the
 * yamux server) each stream starts with a CONNECT line; the relay dials the
 * target — only if the controller's allow-list names it — with a 15 s
 * timeout and pumps raw bytes both ways. Refusals and failures close the
 * stream and are logged with the reason. Never an open proxy.
 */
import { type Duplex as WebDuplex, MuxSession, type MuxStream } from "../core/mux/mod.ts";
import { splitConnectStream } from "../core/connect/mod.ts";
import type { Logger } from "../core/log.ts";
import { receivePolicy } from "./control_stream.ts";
import { POLICY_HOST, type RelayPolicy } from "../core/relay_policy.ts";

export const EGRESS_DIAL_TIMEOUT_MS = 15_000;

export interface EgressOptions {
  policy: RelayPolicy;
  log: Logger;
  dialTimeoutMs?: number;
  keepAliveIntervalMs?: number;
}

/** Serves one controller egress session until it ends. */
export async function serveEgress(conn: WebDuplex, opts: EgressOptions): Promise<void> {
  const session = new MuxSession(conn, {
    role: "server",
    keepAliveIntervalMs: opts.keepAliveIntervalMs ?? 20_000,
  });
  for await (const stream of session) void handleStream(stream, opts);
}

async function dialWithTimeout(host: string, port: number, ms: number): Promise<Deno.TcpConn> {
  const pending = Deno.connect({ hostname: host, port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`connect timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([pending, timeout]);
  } catch (e) {
    pending.then((c) => c.close(), () => {}); // a late connection is closed, not leaked
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

async function handleStream(stream: MuxStream, opts: EgressOptions): Promise<void> {
  const { log, policy } = opts;
  let split;
  try {
    split = await splitConnectStream(stream.readable);
  } catch (e) {
    log.warn("egress refused: bad CONNECT line", { stream: stream.id, error: e });
    return stream.reset();
  }
  const { host, port } = split.target;
  if (host === POLICY_HOST) return receivePolicy(split.payload, stream.writable, policy, log);
  if (!policy.allows(host, port)) {
    log.warn("egress refused: destination not in the controller's allow-list", {
      target: `${host}:${port}`,
    });
    await split.payload.cancel().catch(() => {});
    return stream.reset();
  }
  let tcp: Deno.TcpConn;
  try {
    tcp = await dialWithTimeout(host, port, opts.dialTimeoutMs ?? EGRESS_DIAL_TIMEOUT_MS);
  } catch (e) {
    log.warn("egress dial failed", { target: `${host}:${port}`, error: e });
    await split.payload.cancel().catch(() => {});
    return stream.reset();
  }
  log.info("egress connected", { target: `${host}:${port}` });
  // No half-close: when either direction ends, both sides are closed.
  const up = split.payload.pipeTo(tcp.writable).catch(() => {});
  const down = tcp.readable.pipeTo(stream.writable).catch(() => {});
  await Promise.race([up, down]);
  try {
    tcp.close();
  } catch {
    // already closed by its pipe
  }
  await split.payload.cancel().catch(() => {});
  await Promise.allSettled([up, down]);
}
