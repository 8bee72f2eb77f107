/** Output and argument helpers shared by the `cox` commands. */
import { PharosError } from "../../core/errors.ts";

/** A command-line mistake: the command prints it and exits with 2. */
export class UsageError extends PharosError {
  constructor(message: string) {
    super("usage", message);
  }
}

/** Left-aligned columns separated by two spaces, one row per line (with a final newline). */
export function formatTable(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n") +
    "\n";
}

/** `on` / `off` for a flag, undefined when absent. */
export function onOff(flag: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === "on") return true;
  if (value === "off") return false;
  throw new UsageError(`--${flag} takes on or off, not "${value.slice(0, 40)}"`);
}

/** A whole number ≥ 0 (or ≥ 1 with `min`), undefined when absent. */
export function wholeNumber(flag: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^(0|[1-9][0-9]{0,14})$/.test(value) || Number(value) < min) {
    throw new UsageError(`${flag} takes a whole number ≥ ${min}, not "${value.slice(0, 40)}"`);
  }
  return Number(value);
}

export function yesNo(b: boolean): string {
  return b ? "on" : "off";
}
