/** Renders benchmark figures as Markdown and merges sections into BENCHMARKS.md. */
import type { Figure } from "./harness.ts";

const HEADER = `# Benchmarks

Written by \`deno task bench\` (or \`deno task bench <section>\` for one section).
Every figure is compared with a baseline measured in the same run on the same
machine, so read the ratio column rather than the absolute value. Ratios point
the same way everywhere, higher is better: baseline ÷ value for times, sizes and
memory, value ÷ baseline for rates (a render at 0.64× takes 1.56 times as long as
its baseline; a bundle at 14× is a fourteenth of its budget).
`;

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

export function renderSection(
  section: string,
  figures: Figure[],
  machine: string,
  date: string,
  notes?: string,
): string {
  const rows = figures.map((f) =>
    `| ${f.name} | ${fmt(f.value)} ${f.unit} | ${f.baselineName}: ${
      fmt(f.baselineValue)
    } ${f.unit} | ${fmt(f.ratio)}× | ${f.target ?? ""} |`
  );
  return [
    `## ${section}`,
    "",
    `Machine: ${machine}. Date: ${date}. Reproduce: \`deno task bench ${section.split(" ")[0]}\`.`,
    "",
    "| figure | value | baseline (same run) | ratio | target |",
    "|---|---|---|---|---|",
    ...rows,
    ...(notes ? ["", notes] : []),
    "",
  ].join("\n");
}

/** Replaces (or appends) the `## section` blocks named in `rendered`. */
export function replaceSections(existing: string, rendered: Map<string, string>): string {
  const blocks = new Map<string, string>();
  const order: string[] = [];
  const parts = existing.split(/^## /m).slice(1);
  for (const p of parts) {
    const title = p.slice(0, p.indexOf("\n")).trim();
    blocks.set(title, "## " + p.trimEnd() + "\n");
    order.push(title);
  }
  for (const [title, text] of rendered) {
    if (!blocks.has(title)) order.push(title);
    blocks.set(title, text);
  }
  return HEADER + "\n" + order.map((t) => blocks.get(t)).join("\n");
}
