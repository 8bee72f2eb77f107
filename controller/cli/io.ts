/** Where CLI commands write: injectable so tests run them in-process. */
export interface CliIo {
  /** Command output (stdout), written as given. */
  out(text: string): void;
  /** Progress and errors (stderr), one line each. */
  err(line: string): void;
}

export const processIo: CliIo = {
  out: (text) => Deno.stdout.writeSync(new TextEncoder().encode(text)),
  err: (line) => console.error(line),
};
