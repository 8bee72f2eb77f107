/**
 * Reading a node's observed traffic for display: the API sends cumulative
 * byte totals per observation; the page shows what moved between
 * observations (a counter that went down means the data plane restarted:
 * the new total is what moved since).
 */
import { num, type Obj, str } from "./fields.ts";

export interface TrafficStep {
  /** Seconds covered. */
  seconds: number;
  rx: number;
  tx: number;
}

/** Bytes moved between consecutive samples (oldest first); one step fewer than samples. */
export function trafficSteps(samples: Obj[]): TrafficStep[] {
  const out: TrafficStep[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const moved = (k: string) => {
      const before = num(a, k) ?? 0;
      const now = num(b, k) ?? 0;
      return now >= before ? now - before : now;
    };
    const seconds = Math.max(0, (Date.parse(str(b, "t")) - Date.parse(str(a, "t"))) / 1000);
    out.push({ seconds: Number.isFinite(seconds) ? seconds : 0, rx: moved("rx"), tx: moved("tx") });
  }
  return out;
}

/** How long ago `iso` was, in words ("42 s ago", "3 min ago"); "never" when absent. */
export function ago(iso: unknown, now = Date.now()): string {
  if (typeof iso !== "string" || iso === "") return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "never";
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
