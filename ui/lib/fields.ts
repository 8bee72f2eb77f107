/**
 * Reading API objects: the API may spell a field in camelCase or
 * snake_case, and (like the original Go programs) may send null for an
 * empty list; these helpers accept both so a page never breaks on either.
 */
export type Obj = Record<string, unknown>;

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

/** The field `name` (camelCase) or its snake_case twin. */
export function field(o: unknown, name: string): unknown {
  if (!o || typeof o !== "object") return undefined;
  const r = o as Obj;
  return name in r ? r[name] : r[snake(name)];
}

export function str(o: unknown, name: string, fallback = ""): string {
  const v = field(o, name);
  return v === undefined || v === null ? fallback : String(v);
}

export function num(o: unknown, name: string): number | null {
  const v = field(o, name);
  const n = typeof v === "string" ? Number(v) : v;
  return typeof n === "number" && Number.isFinite(n) ? n : null;
}

export function bool(o: unknown, name: string): boolean {
  return field(o, name) === true;
}

/** A list field, or the body itself when it is a list; null/absent is empty. */
export function list(o: unknown, name?: string): Obj[] {
  const v = name === undefined ? o : field(o, name);
  if (Array.isArray(v)) return v as Obj[];
  if (name === undefined && v && typeof v === "object") {
    for (const k of ["items", "data", "results"]) {
      const inner = (v as Obj)[k];
      if (Array.isArray(inner)) return inner as Obj[];
    }
    for (const inner of Object.values(v as Obj)) if (Array.isArray(inner)) return inner as Obj[];
  }
  return [];
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(n: number | null): string {
  if (n === null) return "—";
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${UNITS[i]}`;
}

/** A timestamp as "YYYY-MM-DD HH:MM:SS UTC"; "—" when absent. */
export function when(v: unknown): string {
  if (v === null || v === undefined || v === "") return "—";
  const d = typeof v === "number" ? new Date(v < 1e12 ? v * 1000 : v) : new Date(String(v));
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** How a state word is shown: a colour class plus a symbol and the word, never colour alone. */
export function tone(state: string): { cls: string; icon: string } {
  const s = state.toLowerCase();
  if (
    /^(active|healthy|up|ok|done|finished|valid|connected|online|enabled|applied|resolved|on)$/
      .test(s)
  ) {
    return { cls: "s-ok", icon: "✓" };
  }
  if (/^(pending|onboarding|running|started|progress|warning|warn|degraded|medium|used)$/.test(s)) {
    return { cls: "s-warn", icon: "…" };
  }
  if (/^(unreachable|down|failed|error|critical|high|revoked|invalid|broken|expired)$/.test(s)) {
    return { cls: "s-bad", icon: "✕" };
  }
  return { cls: "s-idle", icon: "•" };
}
