/**
 * A rapid-reset flood in a Worker (tests/bench/relay_abuse.ts), so that the
 * attacker's own frame building and parsing do not run on the relay's event
 * loop: a real attacker is another machine. One device certificate; rounds
 * of `perRound` calls opened then reset at once; when the relay ends the
 * connection (GOAWAY), the worker reconnects and goes on, as an attacker
 * would. Protocol: post {start: FloodPlan}, later {stop: true}; the worker
 * answers {resets, connections} and closes.
 */
import { deviceResetRounds } from "./h2_attacks.ts";
import { RawH2 } from "./h2_raw.ts";

export interface ResetFloodPlan {
  port: number;
  caPem: string;
  certPem: string;
  keyPem: string;
  perRound: number;
}

export interface ResetFloodResult {
  resets: number;
  connections: number;
  /** Connections the relay ended with GOAWAY, by error code. */
  goaways: Record<string, number>;
}

/** Bound on connections per run, so a bug cannot make it spin. */
const MAX_CONNECTIONS = 10_000;

async function flood(plan: ResetFloodPlan, stopped: () => boolean): Promise<ResetFloodResult> {
  const out: ResetFloodResult = { resets: 0, connections: 0, goaways: {} };
  while (!stopped() && out.connections < MAX_CONNECTIONS) {
    let raw: RawH2;
    try {
      raw = await RawH2.connect(plan);
    } catch {
      await new Promise((r) => setTimeout(r, 50)); // refused by a connection cap: try again
      continue;
    }
    out.connections++;
    try {
      while (!stopped() && !raw.closed && !raw.goaway) {
        out.resets += (await deviceResetRounds(raw, 1, plan.perRound)).resetsSent;
      }
    } catch {
      // the relay ended the connection mid-round
    } finally {
      if (raw.goaway) {
        const code = String(raw.goaway.code);
        out.goaways[code] = (out.goaways[code] ?? 0) + 1;
      }
      raw.close();
    }
  }
  return out;
}

/** The worker side: present only when this module runs as a Worker. */
interface WorkerScope {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(m: unknown): void;
  close(): void;
}
if ("WorkerGlobalScope" in globalThis) {
  const scope = globalThis as unknown as WorkerScope;
  let stop = false;
  scope.onmessage = async (e: MessageEvent) => {
    if (e.data?.stop) stop = true;
    if (e.data?.start) {
      const result = await flood(e.data.start as ResetFloodPlan, () => stop);
      scope.postMessage(result);
      scope.close();
    }
  };
}

/** Starts the flood in a Worker; `stop()` ends it and returns what it did. */
export function startResetFlood(plan: ResetFloodPlan): { stop(): Promise<ResetFloodResult> } {
  const worker = new Worker(import.meta.url, { type: "module" });
  const done = new Promise<ResetFloodResult>((resolve, reject) => {
    worker.onmessage = (e) => resolve(e.data as ResetFloodResult);
    worker.onerror = (e) => {
      e.preventDefault();
      reject(new Error(`reset flood worker: ${e.message}`));
    };
  });
  worker.postMessage({ start: plan });
  return {
    async stop() {
      worker.postMessage({ stop: true });
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        return await Promise.race([
          done,
          new Promise<never>((_, reject) =>
            timer = setTimeout(() => reject(new Error("reset flood worker did not stop")), 30_000)
          ),
        ]);
      } finally {
        clearTimeout(timer);
        worker.terminate();
      }
    },
  };
}
