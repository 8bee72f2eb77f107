/**
 * The dashboard and admin API listener: a fetch-style handler served by
 * node:http behind a GuardedListener (relay/conn_guard.ts), not Deno.serve.
 * Deno.serve exits the process on EMFILE (its `finished` promise rejects)
 * and shows no connection before its first request, so it can apply no
 * connection cap, no time to the first request and no idle limit; here
 * every connection is counted and timed, and a listener that stops
 * accepting is rebuilt (the controller never ends because of it).
 *
 * Limits: the first request's headers must arrive within prefaceMs of the
 * connect; a keep-alive connection with no request in progress is closed
 * after idleMs (node's own keep-alive timeout, 5 s, usually comes first).
 */
import http from "node:http";
import { Buffer } from "node:buffer";
import { type Duplex, Readable } from "node:stream";
import type { Logger } from "../../core/log.ts";
import type { ConnectionBudget, TimeLimits } from "../../core/conn_limits.ts";
import { GuardedListener, type WatchdogOptions } from "../../relay/conn_guard.ts";
// @ts-types="npm:@types/ws@^8.18.1"
import { WebSocketServer } from "ws";
import type { FeedSocket, Handler, UpgradeResult } from "./app.ts";

/** A handler that also takes WebSocket upgrades (createApp's App). */
export interface UpgradingHandler extends Handler {
  upgrade?(req: Request, info?: { remoteAddr?: string }): Promise<UpgradeResult>;
}

export interface DashboardOptions {
  listen: { hostname: string; port: number };
  handler: UpgradingHandler;
  budget: ConnectionBudget;
  limits?: Partial<TimeLimits>;
  log: Logger;
  /** Rate-limited logger for per-connection lines. */
  noisy: Logger;
  watchdog?: Partial<WatchdogOptions>;
  statsIntervalMs?: number;
}

export interface RunningDashboard {
  port: number;
  listener: GuardedListener;
  /** Stops accepting, lets requests in progress finish (at most `graceMs`), closes the rest. */
  close(graceMs?: number): Promise<void>;
}

/** Largest request header block the dashboard reads. */
const MAX_HEADER_BYTES = 32 * 1024;
/** Largest message a feed client may send (it sends none that matter). */
const MAX_WS_MESSAGE = 4 * 1024;
/** Feed sockets are pinged this often; one that missed a pong is closed. */
const WS_PING_MS = 30_000;

export async function startDashboard(opts: DashboardOptions): Promise<RunningDashboard> {
  const server = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES });
  const listener = new GuardedListener({
    name: "dashboard",
    listen: opts.listen,
    listenSetting: "--ui-listen (PHAROS_UI_LISTEN)",
    inner: server,
    budget: opts.budget,
    limits: opts.limits,
    tls: false,
    idle: true,
    log: opts.log,
    noisy: opts.noisy,
    watchdog: opts.watchdog,
    // A dashboard that cannot be rebuilt is logged at every attempt; the controller goes on.
    onFatal: () => {},
    statsIntervalMs: opts.statsIntervalMs,
  });
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    listener.established(socket);
    listener.activity(socket, 1);
    res.once("close", () => listener.activity(socket, -1));
    void respond(req, res, opts.handler, opts.noisy);
  });
  server.on("clientError", (_e: Error, socket: import("node:stream").Duplex) => {
    if (!socket.destroyed) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WS_MESSAGE });
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    listener.established(req.socket);
    void upgrade(req, socket, head, opts.handler, wss, opts.noisy);
  });
  const ping = setInterval(() => {
    for (const ws of wss.clients) {
      const w = ws as typeof ws & { pharosAlive?: boolean };
      if (w.pharosAlive === false) {
        w.terminate();
        continue;
      }
      w.pharosAlive = false;
      w.ping();
    }
  }, WS_PING_MS);
  const port = await listener.listen();
  return {
    port,
    listener,
    close: async (graceMs = 5000) => {
      clearInterval(ping);
      for (const ws of wss.clients) ws.close(1001, "server stopping");
      await listener.close(graceMs);
      for (const ws of wss.clients) ws.terminate();
    },
  };
}

/**
 * A WebSocket upgrade: the handler authorises it (cookie + Origin, or a
 * token) like any request; refused, its answer is written to the socket.
 */
async function upgrade(
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  handler: UpgradingHandler,
  wss: WebSocketServer,
  log: Logger,
): Promise<void> {
  let result: UpgradeResult;
  try {
    if (!handler.upgrade) throw new Error("no WebSocket routes");
    result = await handler.upgrade(toRequest(req, new AbortController().signal), {
      remoteAddr: req.socket.remoteAddress,
    });
  } catch (e) {
    log.warn("upgrade failed", { code: "upgrade-failed", error: e });
    result = { response: new Response(null, { status: 404 }) };
  }
  if (socket.destroyed) return;
  if ("response" in result) {
    const r = result.response;
    const body = r.body ? new Uint8Array(await r.arrayBuffer()) : new Uint8Array(0);
    const lines = [`HTTP/1.1 ${r.status} ${r.statusText || "Refused"}`];
    r.headers.forEach((v, k) => {
      if (k !== "content-length" && k !== "connection") lines.push(`${k}: ${v}`);
    });
    lines.push(`content-length: ${body.length}`, "connection: close", "", "");
    socket.end(Buffer.concat([Buffer.from(lines.join("\r\n")), Buffer.from(body)]));
    return;
  }
  const open = result.open;
  wss.handleUpgrade(req, socket, head, (ws) => {
    const w = ws as typeof ws & { pharosAlive?: boolean };
    w.pharosAlive = true;
    ws.on("pong", () => void (w.pharosAlive = true));
    ws.on("error", () => ws.terminate());
    const feedSocket: FeedSocket = {
      send: (text) => ws.send(text),
      close: (code, reason) => ws.close(code, reason),
      get bufferedAmount() {
        return ws.bufferedAmount;
      },
      onClose: (fn) => void ws.on("close", fn),
    };
    open(feedSocket);
  });
}

/** Runs the handler for one node:http request and writes its Response. */
async function respond(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  handler: Handler,
  log: Logger,
): Promise<void> {
  const abort = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) abort.abort();
  });
  let response: Response;
  try {
    response = await handler(toRequest(req, abort.signal), {
      remoteAddr: req.socket.remoteAddress,
    });
  } catch (e) {
    log.error("request failed", { code: "handler-failed", path: req.url?.slice(0, 200), error: e });
    response = new Response(JSON.stringify({ error: "internal error" }), {
      status: 500,
      headers: { "content-type": "application/json; charset=utf-8" },
    });
  }
  if (res.destroyed) return void response.body?.cancel().catch(() => {});
  response.headers.forEach((v, k) => {
    if (k !== "set-cookie") res.setHeader(k, v);
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader("set-cookie", cookies);
  res.statusCode = response.status;
  if (response.statusText) res.statusMessage = response.statusText;
  if (!response.body || req.method === "HEAD") {
    await response.body?.cancel().catch(() => {});
    res.end();
    return;
  }
  const reader = response.body.getReader();
  try {
    while (!res.destroyed) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          const go = () => {
            res.off("drain", go);
            res.off("close", go);
            resolve();
          };
          res.on("drain", go);
          res.on("close", go);
        });
      }
    }
  } catch (e) {
    log.warn("response body failed", { code: "response-failed", error: e });
    res.destroy();
    return;
  } finally {
    reader.releaseLock();
  }
  if (res.destroyed) await response.body.cancel().catch(() => {});
  else res.end();
}

function toRequest(req: http.IncomingMessage, signal: AbortSignal): Request {
  const host = req.headers.host && /^[A-Za-z0-9.:[\]-]{1,255}$/.test(req.headers.host)
    ? req.headers.host
    : "localhost";
  const url = new URL(req.url ?? "/", `http://${host}`);
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      headers.append(raw[i], raw[i + 1]);
    } catch {
      // a header the fetch API refuses is dropped
    }
  }
  const method = req.method ?? "GET";
  const body = method === "GET" || method === "HEAD"
    ? undefined
    : (Readable.toWeb(req) as ReadableStream<Uint8Array>);
  return new Request(url, { method, headers, body, signal, duplex: "half" } as RequestInit);
}
