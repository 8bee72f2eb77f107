/**
 * core/mux against Go github.com/hashicorp/yamux v0.1.2 (the library the
 * original relay and controller use, CONTRACTS.md §3.4) over loopback TCP,
 * with Go as yamux client and as yamux server. The Go side is the test peer
 * tests/support/go/yamuxpeer (built and cached by tests/support/go_peer.ts),
 * driven by line commands; both sides speak the same per-stream requests
 * (echo, sink, source, hold, watch) with seeded content and SHA-256 checks.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MuxError, type MuxOptions, MuxSession, type MuxStream } from "../../core/mux/mod.ts";
import { buildGoPeer, goCapability, GoPeerProcess } from "../support/go_peer.ts";

const GO = goCapability("mux interop with Go hashicorp/yamux");

const isCode = (code: string) => (e: unknown) => e instanceof MuxError && e.code === code;

/**
 * Marks `p` handled and returns it unchanged, for a promise that is awaited
 * only after other awaits: if it rejects meanwhile, the rejection surfaces
 * where it is awaited instead of as an uncaught error that aborts the file.
 */
function later<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** seededBytes() of tests/unit/mux_helpers.ts, produced piece by piece. */
class Pattern {
  #x: number;
  constructor(seed: number) {
    this.#x = Math.imul(seed, 2654435761 | 0) >>> 0 || 1;
  }
  fill(b: Uint8Array): Uint8Array {
    let x = this.#x;
    for (let i = 0; i < b.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b[i] = x & 0xff;
    }
    this.#x = x;
    return b;
  }
  /** Throws unless `chunk` is the next piece of the pattern. */
  check(chunk: Uint8Array, offset: number, what: string): void {
    const want = this.fill(new Uint8Array(chunk.length));
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] !== want[i]) throw new Error(`${what}: bytes differ at offset ${offset + i}`);
    }
  }
}

const enc = new TextEncoder();

/** Reads a mux stream: one request line, then chunks to the end. */
class StreamReader {
  readonly #r: ReadableStreamDefaultReader<Uint8Array>;
  #rest: Uint8Array = new Uint8Array(0);
  constructor(readable: ReadableStream<Uint8Array>) {
    this.#r = readable.getReader();
  }

  async line(): Promise<string> {
    for (let i = 0; i < 300; i++) {
      const nl = this.#rest.indexOf(10);
      if (nl >= 0) {
        const line = new TextDecoder().decode(this.#rest.subarray(0, nl));
        this.#rest = this.#rest.subarray(nl + 1);
        return line;
      }
      if (this.#rest.length > 256) break;
      const { value, done } = await this.#r.read();
      if (done) throw new Error("stream ended inside its first line");
      const joined = new Uint8Array(this.#rest.length + value.length);
      joined.set(this.#rest);
      joined.set(value, this.#rest.length);
      this.#rest = joined;
    }
    throw new Error("stream line too long");
  }

  /** Calls `onChunk` for every remaining chunk; returns the byte count. */
  async each(onChunk: (c: Uint8Array) => void | Promise<void>): Promise<number> {
    let n = 0;
    if (this.#rest.length > 0) {
      n += this.#rest.length;
      await onChunk(this.#rest);
      this.#rest = new Uint8Array(0);
    }
    // Bounded: a stream carries at most a few MiB here.
    for (let i = 0; i < 1_000_000; i++) {
      const { value, done } = await this.#r.read();
      if (done) return n;
      n += value.length;
      await onChunk(value);
    }
    throw new Error("stream did not end");
  }

  /** Reads `size` pattern bytes to the end of the stream and checks them. */
  async expectPattern(seed: number, size: number, what: string): Promise<void> {
    const p = new Pattern(seed);
    let off = 0;
    const n = await this.each((c) => {
      p.check(c, off, what);
      off += c.length;
    });
    assert.equal(n, size, `${what}: byte count`);
  }
}

async function writePattern(
  w: WritableStreamDefaultWriter<Uint8Array>,
  seed: number,
  size: number,
  onWrite?: () => void | Promise<void>,
): Promise<void> {
  const p = new Pattern(seed);
  for (let off = 0; off < size; off += 64 * 1024) {
    await w.write(p.fill(new Uint8Array(Math.min(64 * 1024, size - off))));
    await onWrite?.();
  }
}

const sha256 = () => createHash("sha256");

/** Our acceptor side of one stream (the same requests the Go peer serves). */
async function serveOurs(s: MuxStream): Promise<void> {
  const r = new StreamReader(s.readable);
  const w = s.writable.getWriter();
  const [kind, sizeText, seedText] = (await r.line()).split(" ");
  const size = Number(sizeText);
  const seed = Number(seedText);
  const what = `our ${kind} stream ${s.id}`;
  const p = new Pattern(seed);
  let off = 0;
  switch (kind) {
    case "echo": {
      const n = await r.each(async (c) => {
        p.check(c, off, what);
        off += c.length;
        await w.write(c);
      });
      assert.equal(n, size, `${what}: byte count`);
      break;
    }
    case "sink": {
      const h = sha256();
      const n = await r.each((c) => {
        p.check(c, off, what);
        off += c.length;
        h.update(c);
      });
      assert.equal(n, size, `${what}: byte count`);
      await w.write(enc.encode(`${size} ${h.digest("hex")}\n`));
      break;
    }
    case "source":
      assert.equal(await r.each(() => {}), 0, `${what}: nothing after the request`);
      await writePattern(w, seed, size);
      break;
    default:
      throw new Error(`unknown request ${kind}`);
  }
  await w.close();
}

/** Serves every stream the peer opens until the session ends; resolves with the errors. */
function serveAllOurs(session: MuxSession, accepted: number[] = []): Promise<unknown[]> {
  return (async () => {
    const work: Promise<unknown>[] = [];
    for await (const s of session) {
      accepted.push(s.id);
      work.push(serveOurs(s).then(() => null, (e) => e));
    }
    return (await Promise.all(work)).filter((e) => e !== null);
  })();
}

interface OpenHooks {
  /** Called with the stream after open() and after each write. */
  stream?: (s: MuxStream) => void;
  /** Called once our FIN is queued. */
  fin?: () => void;
  /** Echo only: awaited once, after the first data chunk was written. */
  midway?: () => Promise<void>;
}

/**
 * Holds echo streams in the middle of their transfer: each stream opened with
 * `hook()` stops after its first data chunk until `release()`.
 */
class Midway {
  readonly #arrived: Promise<void>[] = [];
  #release!: () => void;
  readonly #released = new Promise<void>((resolve) => this.#release = resolve);

  hook(): OpenHooks {
    let arrive!: () => void;
    this.#arrived.push(new Promise<void>((resolve) => arrive = resolve));
    return {
      midway: () => {
        arrive();
        return this.#released;
      },
    };
  }

  /** Resolves once every stream is held; rejects if one of `streams` fails first. */
  async reached(streams: Promise<unknown>[]): Promise<void> {
    await Promise.race([Promise.all(this.#arrived), Promise.all(streams)]);
  }

  release(): void {
    this.#release();
  }
}

/** Our opener side of one stream, mirroring the Go peer's. */
async function openOurs(
  session: MuxSession,
  kind: "echo" | "sink" | "source",
  size: number,
  seed: number,
  hooks: OpenHooks = {},
): Promise<void> {
  const s = await session.open();
  const onStream = hooks.stream;
  onStream?.(s);
  const close = async () => {
    await w.close();
    hooks.fin?.();
  };
  const w = s.writable.getWriter();
  const r = new StreamReader(s.readable);
  const what = `Go ${kind} stream ${s.id}`;
  await w.write(enc.encode(`${kind} ${size} ${seed}\n`));
  switch (kind) {
    case "echo": {
      let first = true;
      const afterWrite = async () => {
        onStream?.(s);
        if (first) {
          first = false;
          await hooks.midway?.();
        }
      };
      await Promise.all([
        writePattern(w, seed, size, afterWrite).then(close),
        r.expectPattern(seed, size, what),
      ]);
      return;
    }
    case "sink": {
      const h = sha256();
      h.update(new Pattern(seed).fill(new Uint8Array(size)));
      await writePattern(w, seed, size);
      await close();
      assert.equal(await r.line(), `${size} ${h.digest("hex")}`, `${what}: checksum`);
      assert.equal(await r.each(() => {}), 0, `${what}: nothing after the checksum`);
      return;
    }
    case "source":
      await close();
      await r.expectPattern(seed, size, what);
  }
}

type Arrangement = "go-client" | "go-server";
const BOTH: Arrangement[] = ["go-client", "go-server"];

interface Pair {
  go: GoPeerProcess;
  ours: MuxSession;
  stop(): Promise<void>;
}

/**
 * A Go peer and our session on one loopback TCP connection. "go-client": Go
 * is the yamux client and dials our listener; "go-server": Go is the yamux
 * server and listens, we dial.
 */
async function startPair(
  arrangement: Arrangement,
  opts: { window?: number; closeTimeoutMs?: number; ours?: Partial<MuxOptions> } = {},
): Promise<Pair> {
  const binary = await buildGoPeer("yamuxpeer");
  const extra = [
    ...(opts.window ? ["-window", String(opts.window)] : []),
    ...(opts.closeTimeoutMs ? ["-close-timeout-ms", String(opts.closeTimeoutMs)] : []),
  ];
  let go: GoPeerProcess;
  let conn: Deno.TcpConn;
  if (arrangement === "go-client") {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      go = new GoPeerProcess(binary, [
        "-role",
        "client",
        "-dial",
        `127.0.0.1:${listener.addr.port}`,
        ...extra,
      ]);
      conn = await listener.accept();
    } finally {
      listener.close();
    }
  } else {
    go = new GoPeerProcess(binary, ["-role", "server", "-listen", ...extra]);
    const port = Number((await go.line(/^listening (\d+)$/))[1]);
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  }
  conn.setNoDelay(true);
  await go.line(/^ready$/);
  const ours = new MuxSession(conn, {
    keepAliveIntervalMs: 0,
    ...opts.ours,
    role: arrangement === "go-client" ? "server" : "client",
  });
  return {
    go,
    ours,
    async stop() {
      await ours.close();
      try {
        conn.close();
      } catch {
        // the session already released it
      }
      await go.stop();
    },
  };
}

/** Fails with the Go peer's log attached. */
async function withPair(
  arrangement: Arrangement,
  opts: Parameters<typeof startPair>[1],
  body: (p: Pair) => Promise<void>,
): Promise<void> {
  const pair = await startPair(arrangement, opts);
  try {
    await body(pair);
  } catch (e) {
    throw new Error(
      `${arrangement}: ${e instanceof Error ? e.message : e}\nGo peer log:\n${pair.go.stderr}`,
      {
        cause: e,
      },
    );
  } finally {
    await pair.stop();
  }
}

function assertStillUp(session: MuxSession, what: string): void {
  assert.equal(session.isClosed, false, `${what}: our session is still up`);
}

Deno.test({
  name: "mux vs Go yamux: 100 concurrent opens from Go, ten sessions each way",
  ignore: GO.ignore,
  async fn() {
    const SESSIONS = 10;
    const STREAMS = 100;
    let outOfOrder = 0;
    for (const arrangement of BOTH) {
      for (let i = 0; i < SESSIONS; i++) {
        await withPair(arrangement, {}, async ({ go, ours }) => {
          const accepted: number[] = [];
          const serving = serveAllOurs(ours, accepted);
          assert.equal(await go.run("open", "echo", STREAMS, 1000 + i, 100 * i), String(STREAMS));
          assertStillUp(ours, `session ${i}`);
          assert.equal(accepted.length, STREAMS);
          assert.equal(new Set(accepted).size, STREAMS);
          if (accepted.some((id, k) => k > 0 && id < accepted[k - 1])) outOfOrder++;
          await ours.close();
          assert.deepEqual(await serving, []);
        });
      }
    }
    // Informative only: how often Go put the SYNs on the wire out of order.
    console.log(`SYNs arrived out of id order in ${outOfOrder} of ${2 * SESSIONS} sessions`);
  },
});

const SIZES = [1, 100, 65_536, 262_145, 1024 * 1024 + 3, 8 * 1024 * 1024];

Deno.test({
  name: "mux vs Go yamux: 1 B to 8 MiB per stream both ways (echo, sink, source), ping both ways",
  ignore: GO.ignore,
  async fn() {
    for (const arrangement of BOTH) {
      await withPair(arrangement, {}, async ({ go, ours }) => {
        assert.ok((await ours.ping()) >= 0, "Go answers our ping");
        assert.ok(Number(await go.run("ping")) >= 0, "we answer Go's ping");
        const kinds = ["echo", "sink", "source"] as const;
        // Go opens, we serve.
        const serving = serveAllOurs(ours);
        await Promise.all(
          kinds.flatMap((kind, k) =>
            SIZES.map((size, i) => go.run("open", kind, 1, size, 10 * k + i + 1))
          ),
        );
        // We open, Go serves.
        const served = go.command("serve", kinds.length * SIZES.length);
        await Promise.all(
          kinds.flatMap((kind, k) =>
            SIZES.map((size, i) => openOurs(ours, kind, size, 100 + 10 * k + i))
          ),
        );
        assert.equal(await served.ok(), String(kinds.length * SIZES.length));
        assertStillUp(ours, "after the transfers");
        assert.ok((await ours.ping()) >= 0);
        // Go forgets a stream in its reader goroutine, just after the reply.
        let goStreams = "";
        for (let i = 0; i < 100 && goStreams !== "0"; i++) {
          await go.run("ping");
          goStreams = await go.run("streams");
        }
        assert.equal(goStreams, "0", "Go forgot every finished stream");
        assert.equal(ours.streamCount, 0, "we forgot every finished stream");
        await ours.close();
        assert.deepEqual(await serving, []);
      });
    }
  },
});

Deno.test({
  name: "mux vs Go yamux: half-close from either side before the other accepts",
  ignore: GO.ignore,
  async fn() {
    for (const arrangement of BOTH) {
      await withPair(arrangement, {}, async ({ go, ours }) => {
        // Our FIN reaches Go before Go's AcceptStream.
        const fins: Promise<void>[] = [];
        const finHook = (): OpenHooks => {
          let fin!: () => void;
          fins.push(new Promise<void>((resolve) => fin = resolve));
          return { fin };
        };
        const sink = later(openOurs(ours, "sink", 100_000, 7, finHook()));
        const source = later(openOurs(ours, "source", 5000, 8, finHook()));
        await Promise.race([Promise.all(fins), Promise.all([sink, source])]);
        await ours.ping(); // Go has read our SYNs, data and FINs
        assert.equal(await go.run("serve", 2), "2");
        await Promise.all([sink, source]);

        // Go's FIN reaches us before our accept().
        const echo = go.command("open", "echo", 1, 100_000, 9, "fin-event");
        const src = go.command("open", "source", 1, 3000, 10, "fin-event");
        await echo.event((e) => e.startsWith("fin "));
        await src.event((e) => e.startsWith("fin "));
        await ours.ping(); // Go's data and FIN came before this answer
        const a = (await ours.accept())!;
        const b = (await ours.accept())!;
        await Promise.all([serveOurs(a), serveOurs(b)]);
        await echo.ok();
        await src.ok();
        assertStillUp(ours, "after the half-closes");
      });
    }
  },
});

Deno.test({
  name: "mux vs Go yamux: a reset stream beside live ones, from either side",
  ignore: GO.ignore,
  async fn() {
    for (const arrangement of BOTH) {
      // Our reset: Go sees ErrConnectionReset on that stream only, while
      // three echo streams are held in the middle of their transfer.
      await withPair(arrangement, {}, async ({ go, ours }) => {
        const served = go.command("serve", 4);
        const held = new Midway();
        const live = [0, 1, 2].map((i) =>
          later(openOurs(ours, "echo", 2 * 1024 * 1024, 30 + i, held.hook()))
        );
        const victim = await ours.open();
        const w = victim.writable.getWriter();
        await w.write(enc.encode("watch 0 0\n"));
        await w.write(new Uint8Array(5000));
        await served.event((e) => e === `watching ${victim.id}`);
        await held.reached(live);
        victim.reset();
        assert.equal(await served.event((e) => e.startsWith("reset ")), `reset ${victim.id}`);
        await assert.rejects(w.closed, isCode("stream-reset-local"));
        held.release();
        await Promise.all(live);
        assert.equal(await served.ok(), "4");
        assertStillUp(ours, "after our reset");
      });
      // Go's reset: after Go's FIN we never close, so Go's stream close
      // timeout (short here) sends RST; the other streams go on. Go sends its
      // FIN only when told (fin-after), once we are reading and three echo
      // streams are held in the middle of their transfer; they go on only
      // after the RST. So nothing has to happen within the close timeout.
      await withPair(arrangement, { closeTimeoutMs: 1000 }, async ({ go, ours }) => {
        const opened = go.command("open", "source", 1, 0, 40, "fin-after=victim");
        const victim = (await ours.accept())!;
        const r = new StreamReader(victim.readable);
        assert.equal(await r.line(), "source 0 40");
        const w = victim.writable.getWriter();
        const served = go.command("serve", 3);
        const held = new Midway();
        const live = [0, 1, 2].map((i) =>
          later(openOurs(ours, "echo", 1024 * 1024, 50 + i, held.hook()))
        );
        await held.reached(live);
        // Reading before the FIN is sent: the end of the stream is delivered
        // as the FIN is handled, before any later frame (the RST).
        const eof = later(r.each(() => {}));
        assert.equal(await go.run("release", "victim"), "");
        assert.equal(await eof, 0); // Go's FIN; we leave our side open
        await assert.rejects(w.closed, isCode("stream-reset"));
        held.release();
        await Promise.all(live);
        assert.equal(await served.ok(), "3");
        await opened.ok();
        assertStillUp(ours, "after Go's reset");
      });
    }
  },
});

Deno.test({
  name: "mux vs Go yamux: go-away both ways stops new streams, existing ones go on",
  ignore: GO.ignore,
  async fn() {
    for (const arrangement of BOTH) {
      // Ours.
      await withPair(arrangement, {}, async ({ go, ours }) => {
        const served = go.command("serve", 1);
        let stream: MuxStream | undefined;
        const existing = later(
          openOurs(ours, "echo", 1024 * 1024, 60, { stream: (s) => stream = s }),
        );
        ours.goAway();
        await ours.ping(); // Go has read the go-away
        const refused = await go.command("open", "echo", 1, 10, 61).reply;
        assert.equal(refused.ok, false);
        assert.match(refused.text, /remote end is not accepting connections/);
        await existing;
        assert.ok(stream !== undefined);
        assert.equal(await served.ok(), "1");
        assertStillUp(ours, "after our go-away");
      });
      // Go's.
      await withPair(arrangement, {}, async ({ go, ours }) => {
        const served = go.command("serve", 1);
        const existing = later(openOurs(ours, "sink", 1024 * 1024, 62));
        // Go's reader handles our SYN before it answers this ping. Without it
        // Go may take the goaway command first and refuse the stream (RST).
        await ours.ping();
        await go.run("goaway");
        await ours.ping(); // the go-away was written before Go answered
        await assert.rejects(ours.open(), isCode("go-away"));
        await existing;
        assert.equal(await served.ok(), "1");
        assertStillUp(ours, "after Go's go-away");
      });
    }
  },
});

Deno.test({
  name: "mux vs Go yamux: a 32 MiB Go stream window (MaxStreamWindowSize) both ways",
  ignore: GO.ignore,
  async fn() {
    const window = 32 * 1024 * 1024;
    for (const arrangement of BOTH) {
      await withPair(arrangement, { window }, async ({ go, ours }) => {
        const serving = serveAllOurs(ours);
        let largest = 0;
        const watch = (s: MuxStream) => largest = Math.max(largest, s.sendWindow);
        const served = go.command("serve", 2);
        await Promise.all([
          go.run("open", "echo", 2, 8 * 1024 * 1024, 70),
          openOurs(ours, "echo", 8 * 1024 * 1024, 72, { stream: watch }),
          openOurs(ours, "sink", 8 * 1024 * 1024, 73, { stream: watch }),
        ]);
        assert.equal(await served.ok(), "2");
        assert.ok(largest > 16 * 1024 * 1024, `Go granted a large window (${largest})`);
        assertStillUp(ours, "with Go's 32 MiB window");
        await ours.close();
        assert.deepEqual(await serving, []);
      });
    }
  },
});

Deno.test({
  name: "mux vs Go yamux: our FIN before Go's accept — no ACK ever comes, the stream is not reset",
  ignore: GO.ignore,
  async fn() {
    // Generous: Go must accept and write before it fires, even on a loaded machine.
    const timeout = 4000;
    for (const arrangement of BOTH) {
      await withPair(
        arrangement,
        { ours: { streamOpenTimeoutMs: timeout } },
        async ({ go, ours }) => {
          const size = 4000;
          const held = await ours.open();
          const hw = held.writable.getWriter();
          await hw.write(enc.encode(`hold ${size} 80 g1\n`));
          await hw.close(); // FIN before Go accepts: Go will never send an ACK
          // Opened after it with the same timeout and never accepted by Go: its
          // reset marks the moment the held stream's timer would have fired.
          const ignored = await ours.open();
          await ignored.writable.getWriter().write(enc.encode("echo 0 0\n"));
          await ours.ping(); // Go has both SYNs and our FIN
          const served = go.command("serve", 1); // accepts the held stream only
          await served.event((e) => e === "held g1");
          const r = new StreamReader(held.readable);
          const p = new Pattern(80);
          let off = 0;
          // (Settled into a value at once: a reset would otherwise surface as
          // an unhandled rejection before it is awaited.)
          const reading = r.each((c) => {
            p.check(c, off, "held stream");
            off += c.length;
          }).catch((e) => e);
          await assert.rejects(
            new StreamReader(ignored.readable).each(() => {}),
            isCode("stream-open-timeout"),
          );
          assert.equal(await go.run("release", "g1"), "");
          assert.equal(await reading, 2 * size, "the held stream completes after the timeout");
          assert.equal(await served.ok(), "1", "Go wrote all of it: never reset");
          assertStillUp(ours, "after the open timeout");
        },
      );
    }
  },
});
