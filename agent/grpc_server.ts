/**
 * The NodeControl listener: gRPC over TLS 1.3 only, ALPN h2 (what the
 * original Go controller requires), the node's certificate chain, and a
 * client certificate requested at the handshake and checked in full (chain,
 * role, revocation) on every call by the guard. The key,
 * certificates and revocation list are re-read when their files change.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { Logger } from "../core/log.ts";
import type { TrustStore } from "../core/pki/mod.ts";
import { AgentError, GrpcCode } from "./errors.ts";
import { controllerGuard } from "./guard.ts";
import {
  materialStamp,
  type NodeMaterial,
  readMaterial,
  readRevoked,
  RevocationList,
} from "./materials.ts";
import { nodeControlService } from "./proto.ts";

export interface NodeControlServerOptions {
  dir: string;
  listen: { hostname: string; port: number };
  /** Setting name for the listen address, for the error message. */
  listenSetting: string;
  implementation: grpc.UntypedServiceImplementation;
  legacyControllerPins: ReadonlySet<string>;
  log: Logger;
  /** How often the files are checked for changes. */
  reloadIntervalMs?: number;
}

export interface NodeControlServer {
  port: number;
  material: NodeMaterial;
  revoked: RevocationList;
  /** Re-reads the files now (also done on a timer). */
  reload(): Promise<void>;
  close(): Promise<void>;
}

/** 16 MiB: a PushConfig with tens of thousands of peers fits. */
const MAX_MESSAGE = 16 * 1024 * 1024;

function secureContext(m: NodeMaterial) {
  return {
    ca: Buffer.from(m.clientCaPem),
    cert: [Buffer.from(m.chainPem)],
    key: [Buffer.from(m.keyPem)],
  };
}

export async function startNodeControl(opts: NodeControlServerOptions): Promise<NodeControlServer> {
  let material = await readMaterial(opts.dir);
  const revoked = new RevocationList(await readRevoked(opts.dir));
  let trust: TrustStore = material.trust;
  const server = new grpc.Server({
    interceptors: [
      controllerGuard({
        trust: () => trust,
        revoked,
        legacyControllerPins: opts.legacyControllerPins,
        log: opts.log,
      }),
    ],
    "grpc.max_receive_message_length": MAX_MESSAGE,
    "grpc.max_send_message_length": MAX_MESSAGE,
  });
  server.addService(nodeControlService, opts.implementation);
  const creds = grpc.ServerCredentials.createSsl(
    Buffer.from(material.clientCaPem),
    [{ cert_chain: Buffer.from(material.chainPem), private_key: Buffer.from(material.keyPem) }],
    true,
  );
  // grpc-js has no setting for these: set them on the options it hands to http2.
  // TLS 1.3 only. The TLS layer asks for a client certificate but leaves its
  // verdict to the guard, which runs TrustStore.verify (chain, validity, key
  // usage, EKU, role, revocation) on every call: so a node certificate
  // (server EKU only) is answered PERMISSION_DENIED like any wrong role,
  // rather than failing the handshake without a word.
  const serverOptions = (creds as unknown as { _getConstructorOptions(): Record<string, unknown> })
    ._getConstructorOptions();
  serverOptions.minVersion = "TLSv1.3";
  serverOptions.rejectUnauthorized = false;
  // Small request/response frames must not wait for ACKs (Nagle + delayed ACK).
  serverOptions.noDelay = true;
  const host = opts.listen.hostname.includes(":")
    ? `[${opts.listen.hostname}]`
    : opts.listen.hostname;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${host}:${opts.listen.port}`,
      creds,
      (err, p) => err ? reject(err) : resolve(p),
    )
  ).catch((e) => {
    server.forceShutdown();
    throw new AgentError(
      "listen-failed",
      `cannot listen on ${opts.listen.hostname}:${opts.listen.port} for NodeControl ` +
        `(${(e as Error).message}); change ${opts.listenSetting}`,
      GrpcCode.UNAVAILABLE,
    );
  });

  let stamp = await materialStamp(opts.dir);
  const reload = async () => {
    const now = await materialStamp(opts.dir);
    if (now === stamp) return;
    stamp = now;
    try {
      revoked.replace(await readRevoked(opts.dir));
      const next = await readMaterial(opts.dir);
      if (
        next.chainPem !== material.chainPem || next.keyPem !== material.keyPem ||
        next.clientCaPem !== material.clientCaPem
      ) {
        // Protected in the typings, public in the runtime: the documented way to rotate.
        (creds as unknown as { updateSecureContextOptions(o: unknown): void })
          .updateSecureContextOptions(secureContext(next));
        opts.log.info("node certificate reloaded", {
          code: "material-reloaded",
          serial: next.serial,
          not_after: next.notAfter.toISOString(),
        });
      }
      material = next;
      trust = next.trust;
      opts.log.info("revocation list loaded", { code: "revocation-loaded", revoked: revoked.size });
    } catch (e) {
      opts.log.error(
        "node key/certificate files changed but cannot be used; keeping the old ones",
        {
          code: (e as { code?: string }).code ?? "material-invalid",
          error: e,
        },
      );
    }
  };
  const timer = setInterval(() => void reload(), opts.reloadIntervalMs ?? 5000);
  return {
    port,
    get material() {
      return material;
    },
    revoked,
    reload,
    async close() {
      clearInterval(timer);
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
