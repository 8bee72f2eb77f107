/**
 * The fleet driver's gRPC worker: a child process of the controller that
 * holds every NodeControl client (node_clients.ts). Deno's HTTP/2 client can
 * abort the process it runs in when a node goes away under a session
 * (denoland/deno#36788); here that costs a worker restart, not the
 * controller. Commands arrive as JSON lines on stdin, answers and events
 * leave as JSON lines on stdout (wire.ts). It exits when stdin ends (the
 * parent is gone).
 */
import type { Logger } from "../../core/log.ts";
import { holdHeapTrim } from "../../relay/host/heap_trim.ts";
import { NodeClients } from "./node_clients.ts";
import { decodeBytes, encodeBytes, type FromWorker, readLines, type ToWorker } from "./wire.ts";

const out = new TextEncoder();
function emit(m: FromWorker): void {
  const line = JSON.stringify(m.t === "event" || m.t === "reply" ? encodeBytes(m) : m) + "\n";
  // Synchronous: lines never interleave, and a dying worker has flushed what it said.
  try {
    const bytes = out.encode(line);
    for (let off = 0; off < bytes.length;) off += Deno.stdout.writeSync(bytes.subarray(off));
  } catch {
    Deno.exit(0); // the parent is gone
  }
}

/** The worker's logs go to the parent, which writes them with its own. */
function workerLog(base: Record<string, unknown> = {}): Logger {
  const line =
    (level: "debug" | "info" | "warn" | "error") =>
    (msg: string, fields: Record<string, unknown> = {}) =>
      emit({ t: "log", level, msg, fields: { ...base, ...fields } });
  return {
    debug: line("debug"),
    info: line("info"),
    warn: line("warn"),
    error: line("error"),
    child: (fields) => workerLog({ ...base, ...fields }),
  };
}

// A thousand TLS sessions leave glibc's heap full of freed chunks after a
// burst of (re)connects; give them back (relay/host/heap_trim.ts).
holdHeapTrim(workerLog());
const clients = new NodeClients(emit);
emit({ t: "ready", pid: Deno.pid });
for await (const line of readLines(Deno.stdin.readable)) {
  let cmd: ToWorker;
  try {
    cmd = JSON.parse(line) as ToWorker;
  } catch {
    emit({
      t: "log",
      level: "error",
      msg: "unreadable command line",
      fields: { code: "bad-line" },
    });
    continue;
  }
  switch (cmd.t) {
    case "identity":
      clients.setIdentity(cmd.identity);
      break;
    case "nodes":
      clients.setNodes(cmd.nodes);
      break;
    case "call":
      void clients.call(cmd.nodeId, cmd.method, decodeBytes(cmd.request), cmd.timeoutMs).then(
        (r) => emit({ t: "reply", id: cmd.id, ...r }),
      );
      break;
    case "memory": {
      const { rss, heapUsed, heapTotal, external } = Deno.memoryUsage();
      emit({ t: "memory", id: cmd.id, usage: { rss, heapUsed, heapTotal, external } });
      break;
    }
    case "crash":
      Deno.exit(70);
  }
}
clients.close();
Deno.exit(0);
