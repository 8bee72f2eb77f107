/**
 * One NodeControl.GetStatus call, in a child process of its own (see
 * node_control.ts): Deno's HTTP/2 client can abort the whole process when a
 * server goes away under a session (denoland/deno#36788; an agent being
 * restarted does exactly that), so the controller never makes this call in
 * its own process. Reads one JSON request on stdin, prints one JSON result
 * line on stdout, exits 0 (also when the call failed: `ok` says).
 *
 *   stdin:  {"target", "chainPem", "keyPem", "caPem", "expectDer" (base64), "timeoutMs"}
 *   stdout: {"ok": true, "status": {...}} | {"ok": false, "error": "...", "mismatch": bool}
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { loadProto, NODE_PROTO } from "../../proto/load.ts";

interface ProbeRequest {
  target: string;
  chainPem: string;
  keyPem: string;
  caPem: string;
  expectDer: string;
  timeoutMs: number;
}

/** Not an IP: the TLS server name (the node certificate is pinned by DER instead). */
const SERVER_NAME = "pharos-node";

async function main(): Promise<void> {
  const req = JSON.parse(await new Response(Deno.stdin.readable).text()) as ProbeRequest;
  const expect = Uint8Array.fromBase64(req.expectDer);
  // deno-lint-ignore no-explicit-any
  const pkg = grpc.loadPackageDefinition(loadProto(NODE_PROTO)) as any;
  const NodeControl = pkg.pharos.node.v1.NodeControl as grpc.ServiceClientConstructor;
  let mismatch = false;
  const creds = grpc.credentials.createSsl(
    Buffer.from(req.caPem),
    Buffer.from(req.keyPem),
    Buffer.from(req.chainPem),
    {
      checkServerIdentity: (_host, cert) => {
        const raw = cert?.raw;
        if (raw && raw.length === expect.length && raw.every((b, i) => b === expect[i])) {
          return undefined;
        }
        mismatch = true;
        return new Error("the agent presents another certificate than the one just issued");
      },
    },
  );
  const client = new NodeControl(req.target, creds, {
    "grpc.ssl_target_name_override": SERVER_NAME,
    "grpc.default_authority": SERVER_NAME,
    "grpc.enable_retries": 0,
  });
  const result = await new Promise<Record<string, unknown>>((resolve) =>
    client.GetStatus(
      {},
      { deadline: Date.now() + req.timeoutMs },
      (err: Error | null, status: Record<string, unknown>) =>
        resolve(err ? { ok: false, error: err.message, mismatch } : { ok: true, status }),
    )
  );
  console.log(JSON.stringify(result));
  client.close();
  Deno.exit(0);
}

await main();
