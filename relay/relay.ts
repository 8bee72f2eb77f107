/**
 * One relay: the client listener and the proxy in front of a transport to
 * the controller. Used by the remote relay program and embedded in the
 * controller, with the same trust rules either way.
 */
import type { Logger } from "../core/log.ts";
import type { RevocationList, TrustStore } from "../core/pki/mod.ts";
import { Backend } from "./backend.ts";
import { createClientServer } from "./client_listener.ts";
import { DeviceAuth } from "./device_auth.ts";
import { createProxy } from "./proxy.ts";
import { listenOrExplain } from "./listen.ts";
import type { BackendTransport } from "./transport.ts";

export interface RelayOptions {
  listen: { hostname: string; port: number };
  /** Relay leaf + Fleet CA, PEM. */
  certPem: string;
  keyPem: string;
  /** Root and Fleet CA PEM (trust for the controller leg). */
  caPem: string;
  deviceCaPem: string;
  trust: TrustStore;
  /** Original-controller certificates allowed without a role marker. */
  legacyControllerPins?: ReadonlySet<string>;
  /** Revoked serials: devices on the client listener, the controller on the backend leg. */
  revoked: RevocationList;
  transport: BackendTransport;
  log: Logger;
  maxMessageBytes?: number;
  /** The setting that moves the listener, named in bind errors. */
  listenSetting?: string;
  /** TLS handshake limit on the client listener (default 10 s). */
  handshakeTimeoutMs?: number;
}

export interface RunningRelay {
  /** The bound client port (useful with port 0). */
  port: number;
  backend: Backend;
  close(): Promise<void>;
}

export async function startRelay(opts: RelayOptions): Promise<RunningRelay> {
  const devices = new DeviceAuth(opts.trust, opts.revoked);
  const backend = new Backend(opts.transport, opts, opts.log);
  // A new tunnel means the old backend session runs over a dead path.
  opts.transport.onChange?.(() => backend.reset());
  const server = createClientServer({
    ...opts,
    devices,
    onStream: createProxy({
      backend,
      devices,
      log: opts.log,
      maxMessageBytes: opts.maxMessageBytes,
    }),
  });
  const sessions = new Set<import("node:http2").ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await listenOrExplain(server, opts.listen, opts.listenSetting ?? "the client listener address");
  const port = (server.address() as { port: number }).port;
  opts.log.info("client listener ready", {
    addr: `${opts.listen.hostname}:${port}`,
    transport: opts.transport.name,
  });
  return {
    port,
    backend,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        backend.close();
        server.close(() => resolve());
      }),
  };
}
