/**
 * Live VLESS user changes through Xray's own gRPC API (HandlerService
 * AlterInbound with AddUserOperation / RemoveUserOperation), on loopback
 * in plaintext. Each operation opens a fresh channel and closes it when
 * done: no HTTP/2 session stays open across an Xray restart (an open
 * grpc-js session whose server dies can abort a Deno process,
 * denoland/deno#36788).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";
import { fileURLToPath } from "node:url";
import { XRAY_INBOUND_TAG } from "../../core/dataplane/mod.ts";
import { AgentError, GrpcCode } from "../errors.ts";

const PROTO = fileURLToPath(new URL("./xray_api.proto", import.meta.url));
const root = protobuf.loadSync(PROTO);
const VlessAccount = root.lookupType("xray.app.proxyman.command.VlessAccount");
const AddUserOperation = root.lookupType("xray.app.proxyman.command.AddUserOperation");
const RemoveUserOperation = root.lookupType("xray.app.proxyman.command.RemoveUserOperation");

// deno-lint-ignore no-explicit-any
const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, { keepCase: true })) as any;
const HandlerService = pkg.xray.app.proxyman.command
  .HandlerService as grpc.ServiceClientConstructor;

/** Type URLs Xray resolves (its Go message names). */
const TYPE = {
  add: "xray.app.proxyman.command.AddUserOperation",
  remove: "xray.app.proxyman.command.RemoveUserOperation",
  vless: "xray.proxy.vless.Account",
} as const;

const CALL_TIMEOUT_MS = 5000;

function encode(type: protobuf.Type, value: Record<string, unknown>): Uint8Array {
  return type.encode(type.create(value)).finish();
}

/** The AlterInbound request adding one VLESS user (email = its id). */
export function addUserRequest(id: string, flow: string) {
  const account = encode(VlessAccount, { id, flow, encryption: "none" });
  const op = encode(AddUserOperation, {
    user: { level: 0, email: id, account: { type: TYPE.vless, value: account } },
  });
  return { tag: XRAY_INBOUND_TAG, operation: { type: TYPE.add, value: op } };
}

export function removeUserRequest(id: string) {
  return {
    tag: XRAY_INBOUND_TAG,
    operation: { type: TYPE.remove, value: encode(RemoveUserOperation, { email: id }) },
  };
}

export class XrayApi {
  constructor(readonly port: number) {}

  async #call<T>(method: string, request: unknown): Promise<T> {
    const client = new HandlerService(`127.0.0.1:${this.port}`, grpc.credentials.createInsecure(), {
      "grpc.enable_retries": 0,
    });
    try {
      return await new Promise<T>((resolve, reject) => {
        // deno-lint-ignore no-explicit-any
        (client as any)[method](
          request,
          { deadline: Date.now() + CALL_TIMEOUT_MS },
          (err: grpc.ServiceError | null, res: T) => err ? reject(err) : resolve(res),
        );
      });
    } catch (e) {
      const err = e as grpc.ServiceError;
      throw new AgentError(
        "xray-api-failed",
        `xray API ${method}: ${err.details || err.message}`,
        GrpcCode.INTERNAL,
        { cause: e },
      );
    } finally {
      client.close();
    }
  }

  addUser(id: string, flow: string): Promise<unknown> {
    return this.#call("AlterInbound", addUserRequest(id, flow));
  }

  removeUser(id: string): Promise<unknown> {
    return this.#call("AlterInbound", removeUserRequest(id));
  }
}
