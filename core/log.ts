/**
 * Structured logs: one JSON object per line with time, level, component and
 * message, then the caller's fields. Never pass bodies, tokens or passwords.
 */
export type Level = "debug" | "info" | "warn" | "error";
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  /** False when lines of `level` are dropped anyway (below the configured level). */
  enabled?(level: Level): boolean;
}

/**
 * Creates a logger writing lines to `sink` (stderr-like by default).
 * @example createLogger("relay").info("listening", { addr: ":8443" })
 */
export function createLogger(
  component: string,
  opts: { level?: Level; sink?: (line: string) => void; base?: Record<string, unknown> } = {},
): Logger {
  const min = RANK[opts.level ?? "info"];
  const sink = opts.sink ?? ((line: string) => console.error(line));
  const base = { component, ...opts.base };
  const emit = (level: Level) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (RANK[level] < min) return;
    sink(
      JSON.stringify(
        { time: new Date().toISOString(), level, ...base, msg, ...fields },
        errorReplacer,
      ),
    );
  };
  return {
    debug: emit("debug"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
    child: (fields) => createLogger(component, { ...opts, base: { ...opts.base, ...fields } }),
    enabled: (level) => RANK[level] >= min,
  };
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (typeof value === "bigint") return value.toString();
  return value;
}
