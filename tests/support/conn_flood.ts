/**
 * A connection flood for the abuse tests, run as its own process (so its
 * descriptors and CPU are not the test's, and its fd limit can be set with
 * prlimit): opens `count` connections of one kind to host:port from the
 * given loopback source addresses, holds them, and reports on stdout, one
 * JSON object per line:
 *
 * - {"event":"settled",…} once every attempt has an outcome;
 * - {"event":"all-closed",…} when, after that, the server has closed every
 *   connection that was open (the limits at work);
 * - {"event":"status",…} for each "status" line on stdin;
 * - {"event":"closed",…} after "close" on stdin (or stdin's end): it closes
 *   everything and exits.
 *
 * Counters: open (now), failed (never established), peerClosed (closed by
 * the server after being established). Kinds:
 * - tcp: connect, send nothing;
 * - half-tls: connect, send 11 bytes of a ClientHello, nothing more;
 * - tls: finish a TLS handshake (ALPN h2), send nothing;
 * - h2: TLS, then the HTTP/2 preface and SETTINGS (and the SETTINGS ack),
 *   then nothing: no stream.
 *
 * Usage: deno run -A conn_flood.ts '{"host":"127.0.0.1","port":8443,"kind":"tcp",
 *   "count":1200,"sources":["127.0.0.2","127.0.0.3"]}'
 */
import net from "node:net";
import tls from "node:tls";
import { decodeText } from "../../core/encoding.ts";

export type FloodKind = "tcp" | "half-tls" | "tls" | "h2";

export interface FloodPlan {
  host: string;
  port: number;
  kind: FloodKind;
  count: number;
  sources: string[];
  /** Attempts in flight at once (default 64). */
  concurrency?: number;
  /** An attempt not established in this time counts as failed (default 10 s). */
  connectTimeoutMs?: number;
  /** The process ends on its own after this long whatever happens (default 5 min). */
  maxLifeMs?: number;
}

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const EMPTY_SETTINGS = new Uint8Array([0, 0, 0, 4, 0, 0, 0, 0, 0]);
const SETTINGS_ACK = new Uint8Array([0, 0, 0, 4, 1, 0, 0, 0, 0]);
// A TLS record header announcing a 200-byte handshake message, and its first 6 bytes.
const HALF_HELLO = new Uint8Array([
  0x16,
  0x03,
  0x01,
  0x00,
  0xc8,
  0x01,
  0x00,
  0x00,
  0xc4,
  0x03,
  0x03,
]);

type State = "pending" | "open" | "failed" | "peer-closed" | "ours";

interface Attempt {
  state: State;
  socket?: net.Socket;
}

async function main(plan: FloodPlan): Promise<void> {
  const attempts: Attempt[] = [];
  const counts = { open: 0, failed: 0, peerClosed: 0 };
  let settled = false;
  let allClosedSent = false;
  const emit = (event: string) =>
    console.log(JSON.stringify({ event, ...counts, attempted: attempts.length }));
  const maybeAllClosed = () => {
    if (
      settled && !allClosedSent && counts.open === 0 && attempts.every((a) => a.state !== "pending")
    ) {
      allClosedSent = true;
      emit("all-closed");
    }
  };
  const to = (a: Attempt, s: State) => {
    if (a.state === "open") counts.open--;
    a.state = s;
    if (s === "open") counts.open++;
    if (s === "failed") counts.failed++;
    if (s === "peer-closed") counts.peerClosed++;
    maybeAllClosed();
  };

  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const a: Attempt = { state: "pending" };
      attempts.push(a);
      const localAddress = plan.sources[i % plan.sources.length];
      const timer = setTimeout(() => {
        if (a.state === "pending") {
          to(a, "failed");
          a.socket?.destroy();
          resolve();
        }
      }, plan.connectTimeoutMs ?? 10_000);
      const established = () => {
        if (a.state !== "pending") return;
        clearTimeout(timer);
        to(a, "open");
        resolve();
      };
      let sock: net.Socket;
      if (plan.kind === "tls" || plan.kind === "h2") {
        const t = tls.connect({
          host: plan.host,
          port: plan.port,
          localAddress,
          servername: "localhost",
          ALPNProtocols: ["h2"],
          rejectUnauthorized: false,
        } as tls.ConnectionOptions);
        sock = t;
        t.once("secureConnect", () => {
          if (plan.kind === "tls") return established();
          t.write(PREFACE);
          t.write(EMPTY_SETTINGS);
          // The server's SETTINGS come first: ack them, then say nothing more.
          t.once("data", () => {
            t.write(SETTINGS_ACK);
            established();
          });
        });
      } else {
        sock = net.connect({ host: plan.host, port: plan.port, localAddress });
        sock.once("connect", () => {
          if (plan.kind === "half-tls") sock.write(HALF_HELLO);
          established();
        });
      }
      a.socket = sock;
      sock.on("data", () => {}); // keep reading (the server's bytes are ignored)
      sock.on("error", () => {});
      sock.once("close", () => {
        clearTimeout(timer);
        if (a.state === "pending") {
          to(a, "failed");
          resolve();
        } else if (a.state === "open") {
          to(a, "peer-closed");
        }
      });
    });

  const life = setTimeout(() => finish(), plan.maxLifeMs ?? 300_000);
  let finished = false;
  function finish() {
    if (finished) return;
    finished = true;
    clearTimeout(life);
    for (const a of attempts) {
      if (a.state === "open" || a.state === "pending") a.state = "ours";
      a.socket?.destroy();
    }
    counts.open = 0;
    emit("closed");
    // Let the closes reach the kernel, then go.
    setTimeout(() => Deno.exit(0), 50);
  }

  // Commands on stdin.
  void (async () => {
    let buf = "";
    for await (const chunk of decodeText(Deno.stdin.readable)) {
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const l of lines) {
        if (l.trim() === "status") emit("status");
        if (l.trim() === "close") return finish();
      }
    }
    finish();
  })();

  const width = Math.max(1, plan.concurrency ?? 64);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, plan.count) }, async () => {
      while (next < plan.count && !finished) await one(next++);
    }),
  );
  settled = true;
  emit("settled");
  maybeAllClosed();
}

if (import.meta.main) await main(JSON.parse(Deno.args[0]) as FloodPlan);
