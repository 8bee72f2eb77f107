/**
 * A failed onboarding: which step, why (the underlying error's code and
 * message), and what to do. Re-running the same command resumes: every
 * step is safe to repeat.
 */
import { PharosError } from "../../core/errors.ts";
import type { StepName } from "./events.ts";

export class OnboardingError extends PharosError {
  constructor(
    code: string,
    message: string,
    readonly step: StepName | "prepare",
    options?: ErrorOptions,
  ) {
    super(code, message, options);
  }
}

/** The code and message of any error (typed ones keep their code). */
export function describeError(e: unknown): { code: string; message: string } {
  if (e instanceof PharosError) return { code: e.code, message: e.message };
  const err = e as { code?: unknown; message?: unknown };
  return {
    code: typeof err?.code === "string" ? err.code : "unexpected",
    message: typeof err?.message === "string" ? err.message : String(e),
  };
}
