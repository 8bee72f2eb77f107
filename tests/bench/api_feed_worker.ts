/**
 * Feed subscribers for the "Admin API" benchmark, in a worker so that the
 * publishing process and the receiving one do not share a thread. Each
 * message's delay is measured on the wall clock shared by both
 * (performance.timeOrigin + performance.now()).
 */
/// <reference lib="deno.worker" />

const delays: number[] = [];
const sockets: WebSocket[] = [];
const now = () => performance.timeOrigin + performance.now();

self.onmessage = async (m: MessageEvent) => {
  const msg = m.data as { cmd: string; url?: string; n?: number; headers?: Record<string, string> };
  if (msg.cmd === "open") {
    await Promise.all(Array.from({ length: msg.n! }, () =>
      new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(msg.url!, { headers: msg.headers } as unknown as string[]);
        sockets.push(ws);
        ws.onerror = () => reject(new Error("subscriber refused"));
        ws.onopen = () => resolve();
        ws.onmessage = (e) => {
          const ev = JSON.parse(e.data);
          const t = ev.data?.t ?? ev.t;
          if (typeof t === "number") delays.push(now() - t);
        };
      })));
    self.postMessage({ cmd: "opened" });
  } else if (msg.cmd === "count") {
    self.postMessage({ cmd: "count", n: delays.length });
  } else if (msg.cmd === "report") {
    for (const ws of sockets) ws.close();
    self.postMessage({ cmd: "report", delays });
  }
};
