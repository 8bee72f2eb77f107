/**
 * The controller's HTTP surface (dashboard + admin API) as a fetch-style
 * handler, so tests call it without sockets.
 */
import type { ControllerState } from "../state.ts";

export type Handler = (req: Request) => Promise<Response>;

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

export function createApp(state: ControllerState): Handler {
  return (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/healthz" && req.method === "GET") {
      return Promise.resolve(
        json({ status: "ok", root_ca_fingerprint: state.pki.rootFingerprint }),
      );
    }
    return Promise.resolve(json({ error: "not found" }, 404));
  };
}
