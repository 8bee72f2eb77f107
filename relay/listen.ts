/** Binding a Node server with an error that tells the operator what to change. */
import type { Server } from "node:net";
import { PharosError } from "../core/errors.ts";

export class ListenError extends PharosError {}

/**
 * Kernel accept queue of our listeners. Small on purpose: what a listener
 * accepts in one burst is bounded by it, and every connection accepted
 * beyond the caps holds a file descriptor until the event loop turns
 * (relay/conn_guard.ts), so the caps' headroom below the fd limit must
 * cover a burst.
 */
export const LISTEN_BACKLOG = 64;

/**
 * Listens on hostname:port; a refusal becomes a ListenError naming the
 * listener and the setting that moves it (`what`, e.g. "--client-addr").
 */
export function listenOrExplain(
  server: Server,
  at: { hostname: string; port: number },
  what: string,
  backlog = LISTEN_BACKLOG,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const fail = (e: Error & { code?: string }) => {
      const where = `${at.hostname}:${at.port}`;
      const hint = e.code === "EACCES" || e.name === "PermissionDenied"
        ? `permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another port with ${what}`
        : e.code === "EADDRINUSE" || e.name === "AddrInUse"
        ? `the address is already in use; stop the other program or choose another with ${what}`
        : `${e.message}; check ${what}`;
      reject(new ListenError("listen-failed", `cannot listen on ${where}: ${hint}`, { cause: e }));
    };
    server.once("error", fail);
    server.listen({ port: at.port, host: at.hostname, backlog }, () => {
      server.off("error", fail);
      resolve();
    });
  });
}
