/** @jsxImportSource preact */
/**
 * rx/tx over time as two polylines, drawn on the server (no script): rx
 * solid, tx dashed, so they are told apart without colour; the SVG's title
 * says in words what it shows.
 */
import { bytes } from "../lib/fields.ts";

const W = 160;
const H = 36;

export function Sparkline({ rx, tx, label }: { rx: number[]; tx: number[]; label?: string }) {
  const max = Math.max(1, ...rx, ...tx);
  const line = (v: number[]) =>
    v.map((y, i) =>
      `${((i / Math.max(1, v.length - 1)) * W).toFixed(1)},${
        (H - 2 - (y / max) * (H - 4)).toFixed(1)
      }`
    ).join(" ");
  const text = label ??
    `Traffic over ${rx.length} intervals: rx (solid) up to ${bytes(Math.max(0, ...rx))}, ` +
      `tx (dashed) up to ${bytes(Math.max(0, ...tx))} per interval`;
  return (
    <svg
      class="spark"
      viewBox={`0 0 ${W} ${H}`}
      preserveAspectRatio="none"
      role="img"
      aria-label={text}
      data-sparkline=""
    >
      <title>{text}</title>
      <polyline class="rx" points={line(rx)} vector-effect="non-scaling-stroke" />
      <polyline class="tx" points={line(tx)} vector-effect="non-scaling-stroke" />
    </svg>
  );
}
