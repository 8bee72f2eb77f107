/**
 * A bare node:http2 TLS server (no relay logic) for the idle-connections
 * benchmark's memory baseline: what the runtime itself costs per idle
 * HTTP/2 connection. Prints {"port","pid"} and serves until killed.
 * Usage: deno run -A bare_h2_server.ts CERT.pem KEY.pem
 */
import http2 from "node:http2";

const [certFile, keyFile] = Deno.args;
const server = http2.createSecureServer({
  cert: Deno.readTextFileSync(certFile),
  key: Deno.readTextFileSync(keyFile),
  ALPNProtocols: ["h2"],
});
server.on("sessionError", () => {});
server.listen({ port: 0, host: "127.0.0.1", backlog: 64 }, () => {
  console.log(
    JSON.stringify({
      ready: true,
      port: (server.address() as { port: number }).port,
      pid: Deno.pid,
    }),
  );
});
