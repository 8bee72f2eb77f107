/**
 * The reverse of ns_forward.ts: run inside a test network namespace, it
 * listens on a TCP address there and connects each accepted stream to a
 * unix socket (file systems are shared by all namespaces). A client in the
 * namespace thus reaches a listener of the test process (e.g. the embedded
 * relay, bridged to the unix socket by ns_forward.ts in the root namespace)
 * without any link into the host's own namespace. Prints "ready".
 *
 *   deno run --allow-net --allow-read --allow-write tcp_to_unix.ts HOST PORT UNIX_PATH
 */
const [host, port, path] = Deno.args;
const listener = Deno.listen({ hostname: host, port: Number(port) });
console.log("ready");
for await (const conn of listener) {
  (async () => {
    let unix: Deno.UnixConn | undefined;
    try {
      conn.setNoDelay(true);
      unix = await Deno.connect({ transport: "unix", path });
      const u = unix;
      await Promise.all([
        conn.readable.pipeTo(u.writable).catch(() => {}),
        u.readable.pipeTo(conn.writable).catch(() => {}),
      ]);
    } catch { /* target down */ }
    for (const c of [conn, unix]) {
      try {
        c?.close();
      } catch { /* closed */ }
    }
  })();
}
