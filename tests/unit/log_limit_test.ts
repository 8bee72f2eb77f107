/** The rate-limited logger: per (message, source) buckets, a global bucket, counted drops, summaries. */
import assert from "node:assert/strict";
import { createLogger } from "../../core/log.ts";
import { rateLimitedLogger } from "../../core/log_limit.ts";

function setup(opts: Parameters<typeof rateLimitedLogger>[1] = {}) {
  const lines: Record<string, unknown>[] = [];
  let t = 0;
  const base = createLogger("relay", { sink: (l) => lines.push(JSON.parse(l)) });
  const log = rateLimitedLogger(base, {
    burst: 3,
    perSecond: 1,
    globalBurst: 100,
    globalPerSecond: 100,
    summaryIntervalMs: 60_000,
    now: () => t,
    ...opts,
  });
  return { lines, log, advance: (ms: number) => (t += ms) };
}

Deno.test("log limit: one noisy source is cut to its burst and rate; the others are not", () => {
  const { lines, log, advance } = setup();
  try {
    for (let i = 0; i < 1000; i++) log.warn("refused", { remote: "198.51.100.7", i });
    log.warn("refused", { remote: "203.0.113.1" });
    log.warn("another message", { remote: "198.51.100.7" });
    assert.equal(lines.filter((l) => l.remote === "198.51.100.7" && l.msg === "refused").length, 3);
    assert.equal(lines.filter((l) => l.remote === "203.0.113.1").length, 1);
    assert.equal(lines.filter((l) => l.msg === "another message").length, 1);
    assert.equal(log.stats.suppressed, 997);
    // One second later the source earned one line back.
    advance(1000);
    log.warn("refused", { remote: "198.51.100.7" });
    log.warn("refused", { remote: "198.51.100.7" });
    assert.equal(lines.filter((l) => l.remote === "198.51.100.7" && l.msg === "refused").length, 4);
    assert.equal(log.stats.suppressed, 998);
    assert.equal(log.stats.emitted, lines.length);
  } finally {
    log.close();
  }
});

Deno.test("log limit: one summary line counts the dropped lines, with the top sources", () => {
  const { lines, log } = setup();
  for (let i = 0; i < 50; i++) log.info("call", { device: "ab:cd", status: 1 });
  for (let i = 0; i < 10; i++) log.info("call", { remote: "192.0.2.9", status: 1 });
  log.flush();
  const summary = lines.at(-1)!;
  assert.equal(summary.msg, "log lines suppressed");
  assert.equal(summary.code, "log-suppressed");
  assert.equal(summary.level, "warn");
  assert.equal(summary.suppressed, 47 + 7);
  assert.equal(summary.total_suppressed, 54);
  assert.deepEqual(summary.top, [
    { msg: "call", source: "ab:cd", count: 47 },
    { msg: "call", source: "192.0.2.9", count: 7 },
  ]);
  // Nothing dropped since: no further summary; close flushes nothing new.
  const n = lines.length;
  log.flush();
  log.close();
  assert.equal(lines.length, n);
  assert.equal(log.stats.summaries, 1);
});

Deno.test("log limit: many sources together are held to the global budget", () => {
  const { lines, log } = setup({ globalBurst: 20, globalPerSecond: 1, maxKeys: 50 });
  try {
    for (let i = 0; i < 500; i++) log.warn("refused", { remote: `10.0.${i >> 8}.${i & 255}` });
    assert.equal(lines.length, 20);
    assert.equal(log.stats.suppressed, 480);
    log.flush();
    const summary = lines.at(-1)!;
    assert.equal(summary.suppressed, 480);
    assert.ok((summary.by_global_limit as number) > 0);
  } finally {
    log.close();
  }
});

Deno.test("log limit: children share the limiter; lines below the level are neither written nor counted", () => {
  const lines: string[] = [];
  const base = createLogger("relay", { level: "warn", sink: (l) => lines.push(l) });
  const log = rateLimitedLogger(base, { burst: 2, perSecond: 0.001, now: () => 0 });
  try {
    const child = log.child({ part: "client" });
    for (let i = 0; i < 5; i++) child.warn("x", { remote: "a" });
    for (let i = 0; i < 5; i++) log.warn("x", { remote: "a" });
    for (let i = 0; i < 100; i++) log.debug("y", { remote: "a" });
    assert.equal(lines.length, 2);
    assert.equal(JSON.parse(lines[0]).part, "client");
    assert.equal(log.stats.suppressed, 8);
    assert.equal(child.stats.suppressed, 8);
  } finally {
    log.close();
  }
  assert.equal(JSON.parse(lines.at(-1)!).suppressed, 8);
});

Deno.test("log limit: the summary is written on its own after the interval", async () => {
  const lines: Record<string, unknown>[] = [];
  let written!: () => void;
  const summary = new Promise<void>((resolve) => (written = resolve));
  const base = createLogger("relay", {
    sink: (l) => {
      const line = JSON.parse(l);
      lines.push(line);
      if (line.code === "log-suppressed") written();
    },
  });
  const log = rateLimitedLogger(base, { burst: 1, perSecond: 0.001, summaryIntervalMs: 20 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    log.warn("x", { remote: "a" });
    log.warn("x", { remote: "a" });
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no summary within 10 s")), 10_000);
    });
    await Promise.race([summary, late]);
    assert.equal(lines.find((l) => l.code === "log-suppressed")!.suppressed, 1);
  } finally {
    clearTimeout(timer);
    log.close();
  }
});

Deno.test("log limit: a remote with a port counts as its address (v4 and [v6]), one source per host", () => {
  const { lines, log } = setup();
  try {
    for (let port = 1000; port < 1010; port++) {
      log.info("call", { remote: `198.51.100.7:${port}` });
      log.info("call", { remote: `[2001:db8::7]:${port}` });
    }
    assert.equal(lines.filter((l) => String(l.remote).startsWith("198.51.100.7:")).length, 3);
    assert.equal(lines.filter((l) => String(l.remote).startsWith("[2001:db8::7]:")).length, 3);
    assert.equal(log.stats.suppressed, 14);
  } finally {
    log.close();
  }
});
