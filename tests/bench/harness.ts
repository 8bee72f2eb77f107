/**
 * Shared shape of benchmark results. Every figure is reported next to a
 * baseline measured in the same run, so the ratio is meaningful on any machine.
 */
export interface Figure {
  /** What was measured, e.g. "certificates issued". */
  name: string;
  value: number;
  unit: string;
  baselineName: string;
  baselineValue: number;
  /** value / baselineValue unless `lowerIsBetter`, then baseline / value. */
  ratio: number;
  /** The target from the issue, as text, e.g. ">= 0.7x raw TCP". */
  target?: string;
}

export interface BenchModule {
  /** Section heading in BENCHMARKS.md; a run replaces its section only. */
  section: string;
  /** What a reader needs to interpret the figures (printed under the table). */
  notes?: string;
  run(): Promise<Figure[]>;
}

export function figure(
  name: string,
  value: number,
  unit: string,
  baselineName: string,
  baselineValue: number,
  opts: { lowerIsBetter?: boolean; target?: string } = {},
): Figure {
  const ratio = opts.lowerIsBetter ? baselineValue / value : value / baselineValue;
  return { name, value, unit, baselineName, baselineValue, ratio, target: opts.target };
}

/**
 * Operations per second of `fn`, run until `minMs` elapsed (after a warm-up)
 * or `maxIters` reached. Every loop is bounded.
 */
export async function opsPerSecond(
  fn: () => unknown | Promise<unknown>,
  opts: { minMs?: number; maxIters?: number; warmup?: number } = {},
): Promise<number> {
  const minMs = opts.minMs ?? 1500;
  const maxIters = opts.maxIters ?? 1_000_000;
  for (let i = 0; i < (opts.warmup ?? 5); i++) await fn();
  const start = performance.now();
  let n = 0;
  while (n < maxIters && performance.now() - start < minMs) {
    await fn();
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

/** Percentile (0..100) of a list of samples. */
export function percentile(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[idx];
}
