/**
 * `deno task test`: runs every test file under tests/ (or the files and
 * folders given) in a `deno test` process of its own, one after the other,
 * and ends with one summary line in Deno's own form
 * (`ok | N passed | M failed | K ignored (T)`), which .ci/run reads.
 *
 * Every file is type-checked first, all together (one program, as
 * `deno test` does); then each runs with --no-check. One process per file keeps what a file leaves behind (listeners, rate
 * limits, calmed addresses, sessions) out of the next file, and confines a
 * runtime abort to the file it happened in. Deno 2.9.6's HTTP/2 stack can
 * abort a process that holds both ends of an HTTP/2 connection while one end
 * goes away (nghttp2 `find_stream_on_goaway_func` assertion,
 * denoland/deno#36788; the product keeps its HTTP/2 clients in child
 * processes for this reason, but a test process holds both ends). A file
 * whose process died of that assertion, or of a segfault (which JavaScript
 * cannot cause; the same bug shows both ways), is run once more, and the
 * summary says so; so is a file whose failed test shows that assertion from
 * a process it ran (a relay or controller dying of it under a test). Any
 * other crash or failure, and a second one, fail the run.
 */
import { CHILD_RUNTIME_CRASH, RUNTIME_ABORT } from "./support/runtime_crash.ts";
import { walk } from "./support/walk.ts";

const ROOT = new URL("./", import.meta.url).pathname;
/** Deno's own pattern for test files: test.ts, *_test.ts, *.test.ts (and tsx). */
const TEST_FILE = /(^|[._])test\.tsx?$/;
/** `ok | 3 passed (7 steps) | 0 failed | 1 ignored (2s)`, steps and ignored optional. */
const SUMMARY =
  /^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed(?: \(\d+ steps?\))?(?: \| (\d+) ignored)?/m;

interface FileResult {
  passed: number;
  failed: number;
  ignored: number;
  /** The process ended without Deno's summary line (a crash). */
  crashed: boolean;
  /** Its output named the known nghttp2 abort. */
  runtimeAbort: boolean;
  code: number;
  signal: string | null;
  /** "test name => file:line — first error line" of each failed test. */
  failures: string[];
}

/**
 * The failed tests in Deno's ERRORS section, each with its first error
 * line: repeated at the very end of the run, where a CI log's tail shows them.
 */
function failuresIn(plain: string): string[] {
  const errors = plain.split("\n ERRORS \n")[1]?.split("\n FAILURES \n")[0];
  if (!errors) return [];
  const out: string[] = [];
  const lines = errors.split("\n");
  for (const [i, line] of lines.entries()) {
    if (!/ => \S+:\d+:\d+$/.test(line)) continue;
    const error = lines.slice(i + 1).find((l) => l.startsWith("error:")) ?? "";
    out.push(`${line} — ${error.slice(0, 400)}`);
  }
  return out;
}

/** Runs one file, copying its output through; reads Deno's summary line from it. */
async function runFile(file: string, extra: string[]): Promise<FileResult> {
  const child = new Deno.Command(Deno.execPath(), {
    // Type-checked once for all files before (see main).
    args: ["test", "-A", "--no-check", ...extra, file],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let tail = "";
  const copy = async (
    from: ReadableStream<Uint8Array>,
    to: { write(p: Uint8Array): Promise<number> },
  ) => {
    const decoder = new TextDecoder();
    for await (const chunk of from) {
      await writeAll(to, chunk);
      // Only the end matters (summary line, abort message): keep the last 64 KiB.
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(-65536);
    }
  };
  const [status] = await Promise.all([
    child.status,
    copy(child.stdout, Deno.stdout),
    copy(child.stderr, Deno.stderr),
  ]);
  // deno-lint-ignore no-control-regex
  const plain = tail.replace(/\x1b\[[0-9;]*m/g, "");
  const m = plain.match(SUMMARY);
  const crashed = m === null && !status.success;
  return {
    passed: m ? Number(m[1]) : 0,
    failed: m ? Number(m[2]) : 0,
    ignored: m?.[3] ? Number(m[3]) : 0,
    crashed,
    // The test process died of the known nghttp2 assertion or a segfault (JavaScript can
    // raise neither, so that is Deno's own: the same bug shows both ways, see README).
    runtimeAbort: crashed && (status.signal === "SIGSEGV" || plain.includes(RUNTIME_ABORT)),
    code: status.code,
    signal: status.signal,
    failures: failuresIn(plain),
  };
}

async function writeAll(to: { write(p: Uint8Array): Promise<number> }, data: Uint8Array) {
  let off = 0;
  while (off < data.length) off += await to.write(data.subarray(off));
}

async function testFiles(targets: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const target of targets) {
    const info = await Deno.stat(target);
    if (info.isFile) files.push(target);
    else {
      for await (const f of walk(target)) {
        if (TEST_FILE.test(f.slice(f.lastIndexOf("/") + 1))) files.push(f);
      }
    }
  }
  return files.sort();
}

async function main(): Promise<number> {
  const started = performance.now();
  // Flags (e.g. --filter) go to every `deno test`; the rest are files or folders.
  const extra = Deno.args.filter((a) => a.startsWith("-"));
  const targets = Deno.args.filter((a) => !a.startsWith("-"));
  const files = await testFiles(targets.length > 0 ? targets : [ROOT]);
  // One type check of every file together, as `deno test` would do, instead of one per process.
  const check = await new Deno.Command(Deno.execPath(), {
    args: ["check", ...files],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!check.success) {
    console.log("FAILED | 0 passed | 1 failed (type check)");
    return 1;
  }
  let passed = 0, failed = 0, ignored = 0;
  const broken: string[] = [];
  const retried: string[] = [];
  const failures: string[] = [];
  for (const file of files) {
    let r = await runFile(file, extra);
    // Once more when the test process died of the runtime's abort, or when every failed
    // test's own error says that a process it ran (relay, controller) died so.
    const childCrashes = r.failed > 0 && r.failures.length === r.failed &&
      r.failures.every((f) => f.includes(CHILD_RUNTIME_CRASH) || f.includes(RUNTIME_ABORT));
    if (r.runtimeAbort || childCrashes) {
      retried.push(file);
      const who = r.crashed
        ? `the test process crashed inside the Deno runtime (${r.signal ?? `exit ${r.code}`})`
        : "a process of a failed test died inside the Deno runtime (see its output)";
      console.error(
        `\n!!! ${file}: ${who}; nghttp2 ${RUNTIME_ABORT}, denoland/deno#36788; ` +
          "running the file once more\n",
      );
      r = await runFile(file, extra);
    }
    passed += r.passed;
    failed += r.failed;
    ignored += r.ignored;
    failures.push(...r.failures);
    if (r.crashed) {
      failed++;
      broken.push(`${file} (exit ${r.code}${r.signal ? `, ${r.signal}` : ""})`);
    }
  }
  const secs = Math.round((performance.now() - started) / 1000);
  const time = secs >= 60 ? `${Math.floor(secs / 60)}m${secs % 60}s` : `${secs}s`;
  console.log(`\ntest files: ${files.length}`);
  if (retried.length > 0) {
    console.log(`re-run after a runtime abort (denoland/deno#36788): ${retried.join(", ")}`);
  }
  for (const b of broken) console.log(`crashed without a summary: ${b}`);
  for (const f of failures) console.log(`failed: ${f}`);
  const ok = failed === 0;
  console.log(
    `${ok ? "ok" : "FAILED"} | ${passed} passed | ${failed} failed${
      ignored > 0 ? ` | ${ignored} ignored` : ""
    } (${time})`,
  );
  return ok ? 0 : 1;
}

Deno.exit(await main());
