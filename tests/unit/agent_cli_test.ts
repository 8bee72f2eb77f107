/**
 * The agent's command line and settings, and the control link's framing:
 * flag > environment > config file > default, each bad value named with
 * where it came from; `run` without the node's certificates stops with one
 * JSON line and exit 1; bytes survive the JSON link between the main
 * process and the control front.
 */
import assert from "node:assert/strict";
import { runAgentCli } from "../../agent/cli.ts";
import { parseInterval, resolveAgentConfig } from "../../agent/config.ts";
import { decodeMessage, encodeMessage, type IpcMessage, readMessages } from "../../agent/ipc.ts";

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (l: string) => err.push(l) }, out, err };
}

Deno.test("agent settings: precedence, defaults per CONTRACTS §1.1, named mistakes", () => {
  const d = resolveAgentConfig({}, () => undefined, {});
  assert.deepEqual(
    [d.state, d.listen, d.interface, d.awgPort, d.dataplane, d.pollInterval],
    ["/var/lib/pharos-agent", ":8444", "awg0", "443", "auto", "5s"],
  );
  const env = (n: string) =>
    ({ PHAROS_AGENT_LISTEN: "127.0.0.1:9444", PHAROS_AGENT_MTU: "1380" } as Record<string, string>)[
      n
    ];
  const c = resolveAgentConfig({ listen: ":7444" }, env, { listen: ":1", awgPort: "51820" });
  assert.deepEqual([c.listen, c.mtu, c.awgPort], [":7444", "1380", "51820"]);
  const bad: [Record<string, string>, RegExp][] = [
    [{ interface: "../etc" }, /--interface = "\.\.\/etc": expected awg0/],
    [{ interface: "eth0" }, /expected awg0 … awg999/],
    [{ "awg-port": "0" }, /--awg-port/],
    [{ dataplane: "openvpn" }, /--dataplane = "openvpn"/],
    [{ xray: "xray; reboot" }, /--xray/],
    [{ "endpoint-ips": "203.0.113.7,nope", "endpoint-ports": "2000-3000" }, /"nope" is not an IP/],
    [{ "endpoint-ports": "3000-2000", "endpoint-ips": "203.0.113.7" }, /MIN-MAX/],
    [{ "endpoint-ips": "203.0.113.7" }, /go together/],
    [{ "poll-interval": "1h" }, /--poll-interval/],
    [{ "legacy-controller-pins": "xyz" }, /--legacy-controller-pins/],
  ];
  for (const [flags, re] of bad) {
    assert.throws(
      () => resolveAgentConfig(flags, () => undefined, {}),
      (e: Error) => re.test(e.message),
      JSON.stringify(flags),
    );
  }
  assert.equal(parseInterval("250ms"), 250);
  assert.equal(parseInterval("5s"), 5000);
  assert.ok(Number.isNaN(parseInterval("10ms")));
});

Deno.test("agent run: missing certificates stop it with one JSON line naming the files, exit 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pharos-agent-cli-" });
  try {
    const c = capture();
    const code = await runAgentCli(
      ["run", "--state", dir, "--listen", "127.0.0.1:0"],
      c.io,
      () => undefined,
    );
    assert.equal(code, 1);
    assert.equal(c.err.length, 1);
    const line = JSON.parse(c.err[0]);
    assert.equal(line.msg, "agent not started");
    assert.equal(line.code, "empty");
    assert.match(line.error.message, new RegExp(`${dir}/node\\.key.*agent gen-csr`));
    assert.deepEqual(c.out, []);
    // Nothing was created: no identity, no data plane.
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    // A config file key that is not a setting is refused, naming it.
    await Deno.writeTextFile(`${dir}/agent.json`, JSON.stringify({ lisen: ":1" }));
    const k = capture();
    assert.equal(
      await runAgentCli(["run", "--config", `${dir}/agent.json`], k.io, () => undefined),
      1,
    );
    assert.match(k.err[0], /unknown key "lisen"/);
    const h = capture();
    assert.equal(await runAgentCli(["--help"], h.io, () => undefined), 0);
    assert.match(h.out.join(""), /--endpoint-ports MIN-MAX/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("control link: messages with bytes round-trip; split lines are reassembled", async () => {
  const config = new Uint8Array([0, 1, 2, 250, 255]);
  const m: IpcMessage = {
    t: "call",
    id: 7,
    method: "PushConfig",
    req: { protocol: "PROTOCOL_AMNEZIAWG", revision: "3", config },
  };
  const text = encodeMessage(m);
  assert.ok(text.endsWith("\n") && !text.slice(0, -1).includes("\n"));
  const back = decodeMessage(text.trim()) as Extract<IpcMessage, { t: "call" }>;
  assert.deepEqual(back.req.config, config);
  assert.equal(back.req.revision, "3");
  const bytes = new TextEncoder().encode(text + encodeMessage({ t: "shutdown" }));
  const got: IpcMessage[] = [];
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < bytes.length; i += 3) c.enqueue(bytes.subarray(i, i + 3));
      c.close();
    },
  });
  await readMessages(stream, (x) => got.push(x));
  assert.deepEqual(got.map((x) => x.t), ["call", "shutdown"]);
});
