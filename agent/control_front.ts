/**
 * The control front: the one process of the agent that speaks TLS and
 * HTTP/2 to the network. It serves NodeControl (grpc_server.ts: TLS 1.3,
 * h2, the controller-only guard) and forwards each call to the agent's
 * main process over its stdin/stdout; WatchEvents streams are fed from the
 * events the main process sends. It runs with network and read access
 * only (it can neither write files nor run programs), and when Deno's
 * HTTP/2 stack crashes under connection churn (denoland/deno#36788) only
 * this process dies: the main process restarts it and the data plane never
 * notices. It exits when its stdin ends (the main process is gone).
 */
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../core/log.ts";
import { GrpcCode } from "./errors.ts";
import { EventHub } from "./events.ts";
import { startNodeControl } from "./grpc_server.ts";
import { type IpcMessage, MessageWriter, readMessages } from "./ipc.ts";
import { nodeControlService } from "./proto.ts";

type Obj = Record<string, unknown>;
type WireEvent = Obj & { type: string };

export interface FrontOptions {
  state: string;
  listen: { hostname: string; port: number };
  legacyControllerPins: ReadonlySet<string>;
  log: Logger;
  input: ReadableStream<Uint8Array>;
  output: WritableStream<Uint8Array>;
}

const BIND_RETRY_MS = 10_000;

/** Runs the front until the main process says shutdown or goes away; resolves with an exit code. */
export async function runControlFront(opts: FrontOptions): Promise<number> {
  const out = new MessageWriter(opts.output);
  const pending = new Map<
    number,
    { resolve: (v: Obj) => void; reject: (e: grpc.ServiceError) => void }
  >();
  const hub = new EventHub<WireEvent>(opts.log);
  let nextId = 1;
  let stop!: () => void;
  const stopped = new Promise<void>((r) => stop = r);

  const forward = (method: string, req: Obj): Promise<Obj> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      void out.send({ t: "call", id, method, req });
    });

  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [name, def] of Object.entries(nodeControlService)) {
    if (def.responseStream) continue;
    implementation[name] = ((call: grpc.ServerUnaryCall<Obj, Obj>, cb: grpc.sendUnaryData<Obj>) => {
      forward(name, call.request).then((res) => cb(null, res), (e) => cb(e));
    }) as grpc.handleUnaryCall<Obj, Obj>;
  }
  implementation.WatchEvents = ((call: grpc.ServerWritableStream<Obj, Obj>) => {
    const sub = hub.subscribe();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      sub.close();
    };
    call.on("cancelled", finish);
    call.on("error", finish);
    void (async () => {
      for (;;) {
        const e = await sub.next();
        if (e === null) break;
        if (!call.cancelled) call.write(e);
      }
      if (!call.cancelled) call.end();
    })().catch(finish);
  }) as grpc.handleServerStreamingCall<Obj, Obj>;

  const reading = readMessages(opts.input, (m: IpcMessage) => {
    switch (m.t) {
      case "result": {
        const p = pending.get(m.id);
        pending.delete(m.id);
        p?.resolve(m.res as Obj);
        break;
      }
      case "error": {
        const p = pending.get(m.id);
        pending.delete(m.id);
        p?.reject({ code: m.status, details: m.message } as grpc.ServiceError);
        break;
      }
      case "event":
        hub.publish(m.e as WireEvent);
        break;
      case "shutdown":
        stop();
        break;
    }
  }).catch((e) => opts.log.error("control link broken", { code: "control-link", error: e }))
    .finally(() => stop());

  let server;
  const until = Date.now() + BIND_RETRY_MS;
  for (let attempt = 0;; attempt++) {
    try {
      server = await startNodeControl({
        dir: opts.state,
        listen: opts.listen,
        listenSetting: "--listen",
        implementation,
        legacyControllerPins: opts.legacyControllerPins,
        log: opts.log,
      });
      break;
    } catch (e) {
      const err = e as { code?: string; message: string };
      // The previous front may still be letting go of the port.
      if (err.code === "listen-failed" && Date.now() < until && attempt < 100) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      await out.send({ t: "fatal", code: err.code ?? "front-failed", message: err.message });
      await out.close();
      return 1;
    }
  }
  await out.send({ t: "ready", port: server.port });
  await stopped;
  // Shutdown: streams end after the events already queued (node-shutdown ones included).
  hub.closeAll();
  for (const p of pending.values()) {
    p.reject({ code: GrpcCode.UNAVAILABLE, details: "node agent stopping" } as grpc.ServiceError);
  }
  await server.close();
  await out.close();
  await Promise.race([reading, new Promise((r) => setTimeout(r, 100))]);
  return 0;
}
