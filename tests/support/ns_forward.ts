/**
 * Run inside a test network namespace: accepts on a unix socket (the file
 * system is shared by all namespaces) and connects each accepted stream to
 * a TCP address inside the namespace. The test process, in the root
 * namespace, reaches the agent's NodeControl port this way without any
 * link into the host's own namespace. Prints "ready" when listening.
 *
 *   deno run --allow-net --allow-read --allow-write ns_forward.ts UNIX_PATH HOST PORT
 */
const [path, host, port] = Deno.args;
await Deno.remove(path).catch(() => {});
const listener = Deno.listen({ transport: "unix", path });
console.log("ready");
for await (const conn of listener) {
  (async () => {
    let tcp: Deno.TcpConn | undefined;
    try {
      tcp = await Deno.connect({ hostname: host, port: Number(port) });
      tcp.setNoDelay(true);
      const t = tcp;
      // Both directions to their end (each end's FIN passed on as a half-close).
      await Promise.all([
        conn.readable.pipeTo(t.writable).catch(() => {}),
        t.readable.pipeTo(conn.writable).catch(() => {}),
      ]);
    } catch { /* target down */ }
    for (const c of [conn, tcp]) {
      try {
        c?.close();
      } catch { /* closed */ }
    }
  })();
}
