/**
 * A tiny TCP tool run inside test network namespaces (`ip netns exec NS
 * deno run --allow-net net_probe.ts …`), so tests can prove a path carries
 * TCP and see which source address arrives:
 *
 *   serve PORT [HOST]           echo server; answers a connection's first bytes
 *                               with "from <source ip>\n", then echoes; prints
 *                               "listening PORT" when ready
 *   connect HOST PORT [--socks HOST:PORT --user U --pass P] [--timeout MS]
 *                               connects (directly or through SOCKS5 with
 *                               user/password), sends a token, reads the source
 *                               line and the echo, prints one JSON line {ok, from|error};
 *                               exit 0 on success, 1 otherwise
 *
 * Every read is bounded by the timeout.
 */
const enc = new TextEncoder();
const dec = new TextDecoder();

async function serve(port: number, hostname: string): Promise<void> {
  const listener = Deno.listen({ port, hostname });
  console.log(`listening ${port}`);
  for await (const conn of listener) {
    (async () => {
      try {
        const from = (conn.remoteAddr as Deno.NetAddr).hostname;
        const buf = new Uint8Array(4096);
        for (let i = 0; i < 10_000; i++) {
          const n = await conn.read(buf);
          if (n === null) break;
          // The greeting goes with the first answer: clients speak first (proxies such as
          // VLESS send nothing upstream before the client's first bytes).
          if (i === 0) await conn.write(enc.encode(`from ${from}\n`));
          await conn.write(buf.subarray(0, n));
        }
      } catch { /* client went away */ }
      try {
        conn.close();
      } catch { /* closed */ }
    })();
  }
}

async function readSome(conn: Deno.Conn, want: (s: Uint8Array) => boolean, ms: number) {
  const end = Date.now() + ms;
  let acc = new Uint8Array(0);
  const buf = new Uint8Array(4096);
  while (!want(acc)) {
    const left = end - Date.now();
    if (left <= 0) throw new Error("timed out");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buf),
      new Promise<"late">((r) => timer = setTimeout(() => r("late"), left)),
    ]);
    clearTimeout(timer);
    if (n === "late") throw new Error("timed out");
    if (n === null) throw new Error("connection closed");
    const next = new Uint8Array(acc.length + n);
    next.set(acc);
    next.set(buf.subarray(0, n), acc.length);
    acc = next;
  }
  return acc;
}

async function socks5(
  conn: Deno.Conn,
  host: string,
  port: number,
  user: string,
  pass: string,
  ms: number,
) {
  await conn.write(new Uint8Array([5, 1, 2]));
  const m = await readSome(conn, (a) => a.length >= 2, ms).catch((e) => {
    throw new Error(`socks greeting: ${e.message}`);
  });
  if (m[1] !== 2) throw new Error(`socks: method ${m[1]}`);
  const u = enc.encode(user), p = enc.encode(pass);
  await conn.write(new Uint8Array([1, u.length, ...u, p.length, ...p]));
  const a = await readSome(conn, (x) => x.length >= 2, ms);
  if (a[1] !== 0) throw new Error("socks: authentication refused");
  const ip = host.split(".").map(Number);
  await conn.write(new Uint8Array([5, 1, 0, 1, ...ip, port >> 8, port & 255]));
  const r = await readSome(conn, (x) => x.length >= 10, ms).catch((e) => {
    throw new Error(`socks connect: ${e.message}`);
  });
  if (r[1] !== 0) throw new Error(`socks: connect failed (reply ${r[1]})`);
  return r.subarray(10);
}

async function connect(args: string[]): Promise<number> {
  const [host, portText] = args;
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const ms = Number(opt("--timeout") ?? "5000");
  const socks = opt("--socks");
  let conn: Deno.Conn | undefined;
  // Connecting is bounded too (a dropped SYN would otherwise wait ~2 minutes).
  const deadline = setTimeout(() => {
    console.log(JSON.stringify({ ok: false, error: "timed out" }));
    Deno.exit(1);
  }, ms * 2);
  try {
    let rest = new Uint8Array(0);
    if (socks) {
      const [sh, sp] = socks.split(":");
      conn = await Deno.connect({ hostname: sh, port: Number(sp) });
      rest = await socks5(
        conn,
        host,
        Number(portText),
        opt("--user") ?? "",
        opt("--pass") ?? "",
        ms,
      );
    } else {
      conn = await Deno.connect({ hostname: host, port: Number(portText) });
    }
    const c = conn;
    const token = `ping-${crypto.randomUUID()}`;
    await c.write(enc.encode(token));
    const more = await readSome(c, (a) => dec.decode(a).includes(token), ms).catch((e) => {
      throw new Error(`echo: ${e.message}`);
    });
    const text = dec.decode(rest) + dec.decode(more);
    const from = text.slice(0, text.indexOf("\n")).replace(/^from /, "");
    console.log(JSON.stringify({ ok: true, from }));
    return 0;
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: (e as Error).message }));
    return 1;
  } finally {
    clearTimeout(deadline);
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

const [cmd, ...rest] = Deno.args;
if (cmd === "serve") {
  await serve(Number(rest[0]), rest[1] ?? "0.0.0.0");
} else if (cmd === "connect") {
  Deno.exit(await connect(rest));
} else {
  console.error("usage: net_probe.ts serve PORT [HOST] | connect HOST PORT [...]");
  Deno.exit(2);
}
