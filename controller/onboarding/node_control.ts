/**
 * Waiting for a freshly started agent: NodeControl.GetStatus over mTLS with
 * the controller's client certificate, retried a bounded number of times.
 * The server must present exactly the certificate onboarding just issued
 * (its DER is compared), on top of the TLS chain check against the fleet's
 * CA, so an old agent or a stranger on the port never counts as ready.
 *
 * Each call runs in a short-lived child process (node_probe_main.ts):
 * Deno's HTTP/2 client can abort the process it runs in when the server
 * goes away under a session (denoland/deno#36788), and the controller must
 * survive an agent that restarts. A crashed probe is one failed attempt.
 */
import { fileURLToPath } from "node:url";
import { PharosError } from "../../core/errors.ts";
import { toBase64 } from "../../core/encoding.ts";

export class ReadyError extends PharosError {}

export interface ReadyWait {
  /** Calls before giving up (default 30). */
  attempts?: number;
  /** Pause between calls (default 2 s). */
  intervalMs?: number;
  /** Limit of one call (default 5 s; the probe process gets 30 s more to start). */
  callTimeoutMs?: number;
}

export interface ClientIdentity {
  /** Leaf + Fleet CA. */
  chainPem: string;
  keyPem: string;
  /** Root + Fleet CA: what the server's chain must lead to. */
  caPem: string;
}

export interface NodeStatusSummary {
  agent_version: string;
  uptime_seconds: string;
  applied_revision: string;
}

const PROBE = fileURLToPath(new URL("./node_probe_main.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

/** Waits `ms`, or less when `signal` aborts (then rejects with its reason). */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const stop = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", stop);
      resolve();
    }, ms);
    signal?.addEventListener("abort", stop, { once: true });
  });
}

type ProbeResult =
  | { ok: true; status: NodeStatusSummary }
  | { ok: false; error: string; mismatch?: boolean };

/** One GetStatus in a child process; never throws. */
async function probe(
  req: {
    target: string;
    identity: ClientIdentity;
    expectDer: Uint8Array;
    timeoutMs: number;
    signal?: AbortSignal;
  },
): Promise<ProbeResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-net",
        "--allow-read",
        "--allow-env",
        "--allow-sys",
        // Deno wants write access to connect to a unix socket (a test's forwarder).
        ...(req.target.startsWith("unix:") ? [`--allow-write=${req.target.slice(5)}`] : []),
        "--config",
        CONFIG,
        PROBE,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    return { ok: false, error: `cannot start the probe process: ${(e as Error).message}` };
  }
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  };
  const timer = setTimeout(kill, req.timeoutMs + 30_000);
  req.signal?.addEventListener("abort", kill, { once: true });
  try {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(JSON.stringify({
      target: req.target,
      chainPem: req.identity.chainPem,
      keyPem: req.identity.keyPem,
      caPem: req.identity.caPem,
      expectDer: toBase64(req.expectDer),
      timeoutMs: req.timeoutMs,
    })));
    await w.close();
    const out = await child.output();
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
    try {
      const r = JSON.parse(line) as ProbeResult;
      if (typeof r?.ok === "boolean") return r;
    } catch { /* below */ }
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-2).join(" ");
    return {
      ok: false,
      error: `the probe process ended (${out.signal ?? `exit ${out.code}`})${
        err ? `: ${err.slice(-300)}` : ""
      }`,
    };
  } catch (e) {
    return { ok: false, error: `probe: ${(e as Error).message}` };
  } finally {
    clearTimeout(timer);
    req.signal?.removeEventListener("abort", kill);
  }
}

/**
 * Calls GetStatus on `target` (a gRPC target: `host:port`, `unix:/path`)
 * until it answers; throws ReadyError `not-ready` with the last error.
 */
export async function waitNodeControl(opts: {
  target: string;
  identity: ClientIdentity;
  expectDer: Uint8Array;
  wait?: ReadyWait;
  onAttempt?: (attempt: number, error: string) => void;
  /** Stops the wait (rejecting with the abort reason) and the call in progress. */
  signal?: AbortSignal;
}): Promise<NodeStatusSummary> {
  const attempts = opts.wait?.attempts ?? 30;
  const interval = opts.wait?.intervalMs ?? 2000;
  const timeoutMs = opts.wait?.callTimeoutMs ?? 5000;
  let mismatch = false;
  let last = "no attempt";
  for (let i = 1; i <= attempts; i++) {
    opts.signal?.throwIfAborted();
    const r = await probe({ ...opts, timeoutMs });
    opts.signal?.throwIfAborted();
    if (r.ok) return r.status;
    last = r.error;
    mismatch ||= r.mismatch === true;
    opts.onAttempt?.(i, last);
    if (i < attempts) await pause(interval, opts.signal);
  }
  throw new ReadyError(
    "not-ready",
    `NodeControl at ${opts.target} did not answer after ${attempts} attempts (last: ${last})` +
      (mismatch
        ? "; the agent there presents another certificate than the one just installed (restart it)"
        : "") +
      "; check the agent's log on the node (journalctl -u pharos-agent) and that the controller can reach its port",
  );
}
