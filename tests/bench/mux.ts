/**
 * Multiplexer benchmarks: one-way throughput over loopback TCP with 1 and 16
 * streams, against raw TCP, against npm:@libp2p/yamux and against Go
 * hashicorp/yamux talking to itself (tests/support/go/yamuxpeer -bench) in the
 * same run (median of three interleaved rounds; TCP_NODELAY on every connection);
 * heap cost of an idle substream (measured in a child process started with
 * --expose-gc, so the figures are taken after a full collection).
 *
 * Run directly with `--memory-probe` it is that child process.
 */
import { type BenchModule, type Figure, figure } from "./harness.ts";
import { MuxSession } from "../../core/mux/mod.ts";
import { libp2pMuxer, libp2pReadAll, libp2pWrite } from "../support/libp2p_yamux.ts";
import { buildGoPeer, goCommand } from "../support/go_peer.ts";

const CHUNK = 64 * 1024;
/** Each throughput measurement stops after this long or this many bytes. */
const RUN_MS = 1000;
const ROUNDS = 3;
const MAX_BYTES = 4 * 1024 * 1024 * 1024;
const IDLE_STREAMS = 1000;

async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const accepted = listener.accept();
    const dialed = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const pair: [Deno.TcpConn, Deno.TcpConn] = [dialed, await accepted];
    // Like Go's net package (and so the original relay/controller), no Nagle.
    for (const c of pair) c.setNoDelay(true);
    return pair;
  } finally {
    listener.close();
  }
}

function closeQuietly(...conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // already closed
    }
  }
}

/** Writes CHUNK-sized buffers until the time or byte budget is used up. */
async function pump(
  write: (b: Uint8Array) => Promise<void>,
  until: number,
  budget: number,
): Promise<void> {
  const buf = new Uint8Array(CHUNK).fill(0x5a);
  for (let sent = 0; sent < budget && performance.now() < until; sent += CHUNK) await write(buf);
}

/** MB/s (10^6 bytes per second) of `received` bytes over `ms`. */
const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

async function rawTcp(): Promise<number> {
  const [a, b] = await tcpPair();
  let received = 0;
  const reading = (async () => {
    for await (const c of b.readable) received += c.length;
  })();
  const started = performance.now();
  const w = a.writable.getWriter();
  await pump((buf) => w.write(buf), started + RUN_MS, MAX_BYTES);
  await w.close();
  await reading;
  const ms = performance.now() - started;
  closeQuietly(a, b);
  return mbps(received, ms);
}

async function ours(streams: number): Promise<number> {
  const [a, b] = await tcpPair();
  const client = new MuxSession(a, { role: "client", keepAliveIntervalMs: 0 });
  const server = new MuxSession(b, { role: "server", keepAliveIntervalMs: 0 });
  let received = 0;
  const readers: Promise<void>[] = [];
  const accepting = (async () => {
    for (let i = 0; i < streams; i++) {
      const s = await server.accept();
      if (s === null) return;
      readers.push((async () => {
        for await (const c of s.readable) received += c.length;
      })());
    }
  })();
  const started = performance.now();
  const until = started + RUN_MS;
  await Promise.all(Array.from({ length: streams }, async () => {
    const s = await client.open();
    const w = s.writable.getWriter();
    await pump((buf) => w.write(buf), until, MAX_BYTES / streams);
    await w.close();
  }));
  await accepting;
  await Promise.all(readers);
  const ms = performance.now() - started;
  await client.close();
  await server.closed;
  closeQuietly(a, b);
  return mbps(received, ms);
}

async function theirs(streams: number): Promise<number> {
  const [a, b] = await tcpPair();
  const client = libp2pMuxer(a, "outbound");
  const server = libp2pMuxer(b, "inbound");
  let received = 0;
  const readers: Promise<void>[] = [];
  server.addEventListener("stream", (evt) => {
    readers.push(libp2pReadAll(evt.detail, (c) => received += c.length));
  });
  const started = performance.now();
  const until = started + RUN_MS;
  await Promise.all(Array.from({ length: streams }, async () => {
    const s = await client.createStream();
    const buf = new Uint8Array(CHUNK).fill(0x5a);
    for (let sent = 0; sent < MAX_BYTES / streams && performance.now() < until; sent += CHUNK) {
      await libp2pWrite(s, buf);
    }
    await s.close();
  }));
  await Promise.all(readers);
  const ms = performance.now() - started;
  await client.close();
  await server.close();
  closeQuietly(a, b);
  return mbps(received, ms);
}

/**
 * Go hashicorp/yamux client ⇄ server in one Go process over loopback TCP, the
 * same shape as ours(): 64 KiB writes on `streams` streams for RUN_MS, MB/s
 * of the bytes the reader got, until the readers saw every FIN.
 */
async function goYamux(binary: string, streams: number, oneThread = false): Promise<number> {
  const out = await new Deno.Command(binary, {
    args: ["-bench", "-streams", String(streams), "-ms", String(RUN_MS)],
    // GOMAXPROCS=1: Go on one thread, as both core/mux ends share one JS thread.
    env: oneThread ? { GOMAXPROCS: "1" } : {},
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) {
    throw new Error(`go yamux bench failed (exit ${out.code}): ${dec.decode(out.stderr)}`);
  }
  const r = JSON.parse(dec.decode(out.stdout)) as { mbps: number };
  return r.mbps;
}

// ---- memory probe (child process) ----

const gc = (globalThis as { gc?: () => void }).gc;

function heap(): number {
  gc!();
  gc!();
  return Deno.memoryUsage().heapUsed;
}

const probeLimits = {
  keepAliveIntervalMs: 0,
  maxStreams: 2 * IDLE_STREAMS,
  acceptBacklog: 2 * IDLE_STREAMS,
};

async function oursPair(): Promise<{ client: MuxSession; server: MuxSession; conns: Deno.Conn[] }> {
  const [a, b] = await tcpPair();
  const client = new MuxSession(a, { role: "client", ...probeLimits });
  const server = new MuxSession(b, { role: "server", ...probeLimits });
  await client.ping();
  return { client, server, conns: [a, b] };
}

async function closePair(
  p: { client: MuxSession; server: MuxSession; conns: Deno.Conn[] },
): Promise<void> {
  await p.client.close();
  await p.server.closed;
  closeQuietly(...p.conns);
}

/** Heap bytes of an idle session pair, and per idle stream (both ends). */
async function probeOurs(): Promise<{ session: number; perStream: number }> {
  // Warm-up: the first pair also pays for code and lazily created globals.
  const warm = await oursPair();
  await warm.client.open();
  await warm.server.accept();
  await closePair(warm);

  const empty = heap();
  const pair = await oursPair();
  const held = [await pair.client.open(), await pair.server.accept()];
  await pair.client.ping();
  const withOne = heap();
  for (let i = 0; i < IDLE_STREAMS; i++) held.push(await pair.client.open());
  for (let i = 0; i < IDLE_STREAMS; i++) held.push((await pair.server.accept())!);
  await pair.client.ping();
  await pair.server.ping();
  const withMany = heap();
  if (held.length !== 2 * IDLE_STREAMS + 2) throw new Error("probe lost streams");
  await closePair(pair);
  return { session: withOne - empty, perStream: (withMany - withOne) / IDLE_STREAMS };
}

async function probeTheirs(): Promise<number> {
  const [wa, wb] = await tcpPair();
  const warm = [libp2pMuxer(wa, "outbound"), libp2pMuxer(wb, "inbound")];
  await warm[0].ping();
  for (const m of warm) await m.close();
  closeQuietly(wa, wb);
  const [a, b] = await tcpPair();
  const client = libp2pMuxer(a, "outbound", { maxStreams: 2 * IDLE_STREAMS });
  const server = libp2pMuxer(b, "inbound", { maxStreams: 2 * IDLE_STREAMS });
  const held: unknown[] = [];
  server.addEventListener("stream", (evt) => held.push(evt.detail));
  const first = await client.createStream();
  first.send(new Uint8Array(1));
  await client.ping();
  const withOne = heap();
  for (let i = 0; i < IDLE_STREAMS; i++) {
    const s = await client.createStream();
    s.send(new Uint8Array(1)); // makes the stream known to the server
    held.push(s);
  }
  await client.ping();
  await server.ping();
  const withMany = heap();
  if (held.length !== 2 * IDLE_STREAMS + 1) throw new Error(`probe saw ${held.length} streams`);
  await client.close();
  await server.close();
  closeQuietly(a, b);
  return (withMany - withOne) / IDLE_STREAMS;
}

async function memoryFigures(): Promise<
  { session: number; perStream: number; theirPerStream: number }
> {
  const config = new URL("../../deno.json", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      config,
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      "--memory-probe",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (out.code !== 0) throw new Error(`memory probe failed with exit code ${out.code}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

if (import.meta.main && Deno.args.includes("--memory-probe")) {
  if (gc === undefined) throw new Error("run the memory probe with --v8-flags=--expose-gc");
  const mine = await probeOurs();
  const theirPerStream = await probeTheirs();
  console.log(JSON.stringify({ ...mine, theirPerStream }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

export const muxBench: BenchModule = {
  section: "Multiplexer",
  notes: "Go baseline: github.com/hashicorp/yamux v0.1.2 client and server in one Go " +
    "process (tests/support/go/yamuxpeer -bench, default 256 KiB windows, keepalive off), " +
    "the same 64 KiB writes for 1 s on 1 or 16 streams; Go runs the two ends on all cores " +
    "(and, for the one-thread rows, with GOMAXPROCS=1), core/mux runs both ends on one " +
    "JavaScript thread. The raw-TCP row is Deno's own loopback TCP (no multiplexer) against " +
    "Go yamux on one thread: what core/mux cannot exceed in this runtime.",
  async run(): Promise<Figure[]> {
    // Interleaved rounds, median of each: the machine's load drifts.
    const runs = {
      raw: [] as number[],
      one: [] as number[],
      sixteen: [] as number[],
      libOne: [] as number[],
      libSixteen: [] as number[],
      goOne: [] as number[],
      goSixteen: [] as number[],
      goOneThreadOne: [] as number[],
      goOneThreadSixteen: [] as number[],
    };
    const goBinary = goCommand() === null ? null : await buildGoPeer("yamuxpeer");
    if (goBinary === null) {
      console.error("!!! mux bench: no Go toolchain; the Go hashicorp/yamux baseline is left out");
    }
    for (let round = 0; round < ROUNDS; round++) {
      runs.raw.push(await rawTcp());
      runs.one.push(await ours(1));
      runs.sixteen.push(await ours(16));
      runs.libOne.push(await theirs(1));
      runs.libSixteen.push(await theirs(16));
      if (goBinary !== null) {
        runs.goOne.push(await goYamux(goBinary, 1));
        runs.goSixteen.push(await goYamux(goBinary, 16));
        runs.goOneThreadOne.push(await goYamux(goBinary, 1, true));
        runs.goOneThreadSixteen.push(await goYamux(goBinary, 16, true));
      }
    }
    const [raw, one, sixteen, libOne, libSixteen] = [
      runs.raw,
      runs.one,
      runs.sixteen,
      runs.libOne,
      runs.libSixteen,
    ]
      .map(median);
    const goFigures = goBinary === null ? [] : [
      figure(
        "core/mux throughput, 1 stream (ours/Go)",
        one,
        "MB/s",
        "Go hashicorp/yamux ⇄ itself, 1 stream",
        median(runs.goOne),
      ),
      figure(
        "core/mux throughput, 16 streams (ours/Go)",
        sixteen,
        "MB/s",
        "Go hashicorp/yamux ⇄ itself, 16 streams",
        median(runs.goSixteen),
      ),
      figure(
        "core/mux throughput, 1 stream (ours/Go, one thread each)",
        one,
        "MB/s",
        "Go hashicorp/yamux ⇄ itself, GOMAXPROCS=1, 1 stream",
        median(runs.goOneThreadOne),
        { target: "≥ 0.8× Go yamux" },
      ),
      figure(
        "core/mux throughput, 16 streams (ours/Go, one thread each)",
        sixteen,
        "MB/s",
        "Go hashicorp/yamux ⇄ itself, GOMAXPROCS=1, 16 streams",
        median(runs.goOneThreadSixteen),
        { target: "≥ 0.8× Go yamux" },
      ),
      figure(
        "raw loopback TCP, Deno (the floor of core/mux against Go)",
        raw,
        "MB/s",
        "Go hashicorp/yamux ⇄ itself, GOMAXPROCS=1, 1 stream",
        median(runs.goOneThreadOne),
      ),
    ];
    const mem = await memoryFigures();
    const target = ">= 0.7x raw TCP";
    return [
      figure("core/mux throughput, 1 stream, loopback TCP", one, "MB/s", "raw loopback TCP", raw, {
        target,
      }),
      figure(
        "core/mux throughput, 16 streams, loopback TCP",
        sixteen,
        "MB/s",
        "raw loopback TCP",
        raw,
        { target },
      ),
      figure("core/mux throughput, 1 stream", one, "MB/s", "@libp2p/yamux, 1 stream", libOne),
      figure(
        "core/mux throughput, 16 streams",
        sixteen,
        "MB/s",
        "@libp2p/yamux, 16 streams",
        libSixteen,
      ),
      ...goFigures,
      figure(
        `core/mux heap per idle stream (both ends, ${IDLE_STREAMS} streams)`,
        mem.perStream,
        "bytes",
        "@libp2p/yamux per idle stream",
        mem.theirPerStream,
        { lowerIsBetter: true },
      ),
      figure(
        "core/mux heap per idle stream (both ends)",
        mem.perStream,
        "bytes",
        "idle session pair with one stream",
        mem.session,
        { lowerIsBetter: true },
      ),
    ];
  },
};
