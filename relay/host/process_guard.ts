/**
 * Last-resort error handling for the long-running programs (relay,
 * controller): a runtime error that nothing handled is logged as one JSON
 * line (code unhandled-error, rate-limited) and the program keeps serving,
 * instead of dying with a stack trace — one bad connection must not take
 * down every other one.
 */
import { createLogger } from "../../core/log.ts";
import { type LimitedLogger, rateLimitedLogger } from "../../core/log_limit.ts";

/** Installs the handlers; the returned logger's close() flushes its summary. */
export function logUnhandledErrors(
  component: string,
  sink?: (line: string) => void,
): LimitedLogger {
  const log = rateLimitedLogger(createLogger(component, { sink }));
  const report = (kind: string, error: unknown) =>
    log.error("unhandled error", { code: "unhandled-error", kind, error });
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    report("rejection", e.reason);
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    report("exception", e.error);
  });
  return log;
}

/** The error code for a log line: the error's own code when it has a plain one. */
export function errorCode(e: unknown, fallback: string): string {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" && /^[A-Za-z0-9_-]{1,40}$/.test(code) ? code : fallback;
}
