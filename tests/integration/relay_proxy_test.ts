// deno-lint-ignore-file no-explicit-any
/**
 * The relay forwards any gRPC call without its schema, over each transport:
 * four call kinds, statuses and trailers, metadata rules, device checks.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import { deviceFingerprint } from "../../core/pki/mod.ts";
import { embeddedTransport } from "../../relay/transport.ts";
import { type Fleet, type IssuedLeaf, makeFleet } from "../support/pki_fixture.ts";
import { startTunnel } from "../support/tunnel_fixture.ts";
import {
  CALL_DEADLINE_MS,
  deadline,
  type Harness,
  relayHarness,
  unary,
} from "../support/relay_harness.ts";
import { WAIT_MS, within } from "../support/wait.ts";

const transports = {
  embedded: (_a: unknown, _f: Fleet, _l: IssuedLeaf, acceptInProcess: (c: any) => void) =>
    Promise.resolve(embeddedTransport(acceptInProcess)),
  tunnel: async (accept: (c: any) => void, fleet: Fleet, relayLeaf: IssuedLeaf) =>
    (await startTunnel(accept, fleet, relayLeaf)).transport,
};

/** EchoRequest {text, count, fail_after, fail_code} in protobuf wire form. */
function echoRequest(text: string, count: number, failAfter: number, failCode: number): Uint8Array {
  const t = new TextEncoder().encode(text);
  return new Uint8Array([0x0a, t.length, ...t, 0x10, count, 0x18, failAfter, 0x20, failCode]);
}

/** One call with a plain HTTP/2 client: every length-prefixed message and the trailers. */
async function rawCall(
  h: Harness,
  path: string,
  body: Uint8Array,
  extraHeaders: http2.OutgoingHttpHeaders = {},
) {
  const client = http2.connect(`https://localhost:${h.relay.port}`, {
    ca: h.fleet.rootPem,
    key: h.device.keyPem,
    cert: h.device.chainPem,
  });
  try {
    const req = client.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-timeout": `${CALL_DEADLINE_MS}m`,
      ...extraHeaders,
    });
    const frame = new Uint8Array(5 + body.length);
    new DataView(frame.buffer).setUint32(1, body.length);
    frame.set(body, 5);
    req.end(frame);
    const chunks: Uint8Array[] = [];
    let status = 0;
    let trailers: Record<string, unknown> = {};
    req.on("response", (hd) => (status = Number(hd[":status"])));
    req.on("data", (d: Uint8Array) => chunks.push(d));
    req.on("trailers", (t) => (trailers = t));
    await within(
      new Promise((resolve) => req.on("close", resolve)),
      CALL_DEADLINE_MS + WAIT_MS,
      `the raw call to ${path} to close`,
    );
    const all = new Uint8Array(Buffer.concat(chunks));
    const messages: Uint8Array[] = [];
    for (let off = 0; off + 5 <= all.length;) {
      const len = new DataView(all.buffer, all.byteOffset + off).getUint32(1);
      messages.push(all.subarray(off + 5, off + 5 + len));
      off += 5 + len;
    }
    return { status, trailers, messages };
  } finally {
    client.close();
  }
}

/** Every message and the status of a streaming call (started with a deadline). */
function collect(call: any): Promise<{ items: any[]; status: grpc.StatusObject }> {
  const items: any[] = [];
  return within(
    new Promise((resolve) => {
      call.on("data", (m: any) => items.push(m));
      call.on("error", () => {});
      call.on("status", (status: grpc.StatusObject) => resolve({ items, status }));
    }),
    CALL_DEADLINE_MS + WAIT_MS,
    "a streaming call's messages and status",
  );
}

for (const [name, transport] of Object.entries(transports)) {
  const withHarness = (title: string, fn: (h: Harness) => Promise<void>) =>
    Deno.test({
      name: `relay (${name}): ${title}`,
      sanitizeOps: false,
      sanitizeResources: false,
      fn: async () => {
        const h = await relayHarness(transport);
        try {
          await fn(h);
        } finally {
          await h.close();
        }
      },
    });

  withHarness(
    "unary call with metadata rules, trailers and the injected fingerprint",
    async (h) => {
      const md = new grpc.Metadata();
      md.set("x-pharos-device-fp", "sha256:" + "0".repeat(64));
      md.set("X-Pharos-Evil", "1");
      md.set("pharos-session", "tok");
      md.set("x-other", "kept");
      const { res, trailers } = await unary(h.client(), "Unary", { text: "hi" }, md);
      assert.equal(res.text, "hi");
      assert.equal(res.metadata["x-pharos-device-fp"], await deviceFingerprint(h.device.cert));
      assert.equal(res.metadata["x-pharos-evil"], undefined);
      assert.equal(res.metadata["pharos-session"], "tok");
      assert.equal(res.metadata["x-other"], "kept");
      assert.equal(Object.keys(res.metadata).filter((k) => k.startsWith("x-pharos-")).length, 1);
      assert.equal(trailers["x-echo-trailer"], "done");
      const line = h.logs.map((l) => JSON.parse(l)).find((l) => l.msg === "call");
      assert.equal(line.method, "/pharos.test.v1.Echo/Unary");
      assert.equal(line.status, 0);
      assert.match(line.device, /^sha256:[0-9a-f]{12}$/);
      assert.ok(!JSON.stringify(h.logs).includes("tok"), "metadata values are never logged");
    },
  );

  withHarness(
    "the controller sees its own service name as :authority, never the client's",
    async (h) => {
      const raw = await rawCall(h, "/pharos.test.v1.Echo/Unary", echoRequest("a", 0, 0, 0), {
        ":authority": "evil.example",
      });
      assert.equal(raw.trailers["grpc-status"], "0");
      assert.equal(raw.trailers["x-echo-authority"], "coxswain-grpc");
      assert.equal(raw.messages.length, 1);
    },
  );

  withHarness("error statuses, messages and trailers pass through", async (h) => {
    await assert.rejects(unary(h.client(), "Unary", { text: "nope", fail_code: 9 }), (e: any) => {
      assert.equal(e.code, 9);
      assert.equal(e.details, "echo failure: nope");
      assert.equal(e.metadata.get("x-echo-trailer")[0], "failed");
      return true;
    });
  });

  withHarness("server streaming, client streaming and bidi", async (h) => {
    const c = h.client();
    const ss = await collect(c.ServerStream({ text: "s", count: 50 }, deadline()));
    assert.equal(ss.status.code, 0);
    assert.deepEqual(ss.items.map((m) => m.seq), [...Array(50).keys()]);
    assert.equal(ss.status.metadata.get("x-echo-trailer")[0], "sent-50");

    const cs = await within(
      new Promise<any>((resolve, reject) => {
        const call = c.ClientStream(
          deadline(),
          (err: any, res: any) => (err ? reject(err) : resolve(res)),
        );
        for (const t of ["a", "b", "c"]) call.write({ text: t });
        call.end();
      }),
      CALL_DEADLINE_MS + WAIT_MS,
      "the client-streaming call's answer",
    );
    assert.equal(cs.text, "a,b,c");

    const bidi = c.Bidi(deadline());
    const got = collect(bidi);
    const blob = new Uint8Array(256 * 1024).map((_, i) => (i * 31 + 7) & 0xff);
    for (let i = 0; i < 20; i++) bidi.write({ text: `m${i}`, blob: Buffer.from(blob) });
    bidi.end();
    const b = await got;
    assert.equal(b.status.code, 0);
    assert.equal(b.items.length, 20);
    assert.equal(b.items[19].text, "M19");
    assert.deepEqual(new Uint8Array(b.items[7].blob), blob);
  });

  withHarness(
    "a failure in the middle of a stream keeps its status and the messages before it",
    async (h) => {
      // grpc-js hands over a non-OK status as soon as it arrives and may drop
      // messages the application has not read yet; so grpc-js checks the
      // status and order, and a plain HTTP/2 client checks the bytes.
      const r = await collect(
        h.client().ServerStream(
          { text: "boom", count: 10, fail_after: 4, fail_code: 10 },
          deadline(),
        ),
      );
      assert.deepEqual(r.items.map((m) => m.seq), [...Array(r.items.length).keys()]);
      assert.equal(r.status.code, 10);
      assert.equal(r.status.details, "echo failure: boom");

      const raw = await rawCall(
        h,
        "/pharos.test.v1.Echo/ServerStream",
        echoRequest("boom", 10, 4, 10),
      );
      assert.equal(raw.status, 200);
      assert.equal(raw.messages.length, 4, "all four messages precede the error status");
      assert.equal(raw.trailers["grpc-status"], "10");
    },
  );

  withHarness(
    "the controller connection dying mid-stream ends the call UNAVAILABLE, then calls recover",
    async (h) => {
      const r = await collect(
        h.client().ServerStream({ text: "x", count: 100, drop_after: 5 }, deadline()),
      );
      assert.ok(r.items.length < 100, `${r.items.length} items`);
      assert.equal(r.status.code, grpc.status.UNAVAILABLE);
      assert.match(r.status.details, /connection to the controller was lost/);
      const { res } = await unary(h.client(), "Unary", { text: "again" });
      assert.equal(res.text, "again");
    },
  );

  withHarness("without a device certificate only ClaimEnrollment passes", async (h) => {
    const anon = h.client(null);
    await assert.rejects(unary(anon, "Unary", { text: "x" }), (e: any) => {
      assert.equal(e.code, grpc.status.UNAUTHENTICATED);
      assert.equal(e.details, "relay: /pharos.test.v1.Echo/Unary requires a device certificate");
      return true;
    });
    // The claim itself goes through, with spoofed metadata stripped.
    const claimClient = new grpc.Client(
      `localhost:${h.relay.port}`,
      grpc.credentials.createSsl(Buffer.from(h.fleet.rootPem)),
    );
    const call = (path: string) =>
      within(
        new Promise<any>((resolve, reject) => {
          const md = new grpc.Metadata();
          md.set("x-pharos-device-fp", "sha256:" + "1".repeat(64));
          claimClient.makeUnaryRequest(
            path,
            (x: Buffer) => x,
            (x: Buffer) => x,
            Buffer.from([0x0a, 0x03, 0x74, 0x6f, 0x6b]), // field 1 "tok"
            md,
            deadline(),
            (err, res) => (err ? reject(err) : resolve(res)),
          );
        }),
        CALL_DEADLINE_MS + WAIT_MS,
        `the claim call to ${path}`,
      );
    const res: Buffer = await call("/pharos.account.v1.AccountSync/ClaimEnrollment");
    const text = new TextDecoder().decode(res);
    assert.ok(text.includes("claimed:tok"));
    assert.ok(
      !text.includes("x-pharos-device-fp"),
      "no fingerprint reaches the backend on a cert-less claim",
    );
    await assert.rejects(
      call("/pharos.account.v1.AccountSync/ClaimEnrollmentX"),
      (e: any) => e.code === grpc.status.UNAUTHENTICATED,
    );
    await assert.rejects(
      call("/pharos.account.v1.AccountSync/Authenticate"),
      (e: any) => e.code === grpc.status.UNAUTHENTICATED,
    );
    claimClient.close();
  });

  withHarness("foreign, revoked and wrong-role client certificates are refused", async (h) => {
    const other = await makeFleet();
    const foreign = await other.issue({ kind: "device", name: "intruder" });
    const refused = (reason: RegExp) => (e: any) => {
      assert.equal(e.code, grpc.status.UNAUTHENTICATED);
      assert.match(e.details, /^relay: device certificate refused: /);
      assert.match(e.details, reason);
      return true;
    };
    const before = h.backend.connections.length;
    await assert.rejects(
      unary(h.client(foreign), "Unary", { text: "x" }),
      refused(/not issued by this fleet/),
    );
    // A relay certificate is not a device, whatever it chains to.
    await assert.rejects(
      unary(h.client(h.relayLeaf), "Unary", { text: "x" }),
      refused(/relay certificate was presented/),
    );

    // Revocation takes effect on a live relay, without restart.
    const c = h.client();
    await unary(c, "Unary", { text: "before" });
    h.revoked.add(h.device.cert.serialNumber);
    await assert.rejects(unary(c, "Unary", { text: "after" }), (e: any) => {
      assert.equal(e.code, grpc.status.UNAUTHENTICATED);
      assert.match(e.details, /revoked/);
      return true;
    });
    await assert.rejects(
      unary(h.client(), "Unary", { text: "new connection" }),
      refused(/revoked/),
    );
    assert.ok(
      h.backend.connections.length <= before + 1,
      "refused calls open no controller connections",
    );
  });
}

Deno.test({
  name: "relay: messages over the cap are refused at their header, both ways",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const h = await relayHarness(transports.embedded, { maxMessageBytes: 64 * 1024 });
    try {
      const big = Buffer.alloc(100 * 1024, 7);
      await assert.rejects(unary(h.client(), "Unary", { text: "up", blob: big }), (e: any) => {
        assert.equal(e.code, grpc.status.RESOURCE_EXHAUSTED);
        assert.match(e.details, /exceeds the relay limit/);
        return true;
      });
      // Small request, large answer (the bidi echo returns the blob).
      const bidi = h.client().Bidi(deadline());
      const got = collect(bidi);
      bidi.write({ text: "down", blob: Buffer.alloc(40 * 1024, 1), count: 2 });
      bidi.end();
      const r = await got;
      assert.equal(r.status.code, grpc.status.RESOURCE_EXHAUSTED);
    } finally {
      await h.close();
    }
  },
});

Deno.test({
  name: "relay: the client listener advertises its stream and header limits",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { STREAM_WINDOW } = await import("../../relay/backend.ts");
    const { CLIENT_MAX_HEADER_BYTES, CLIENT_MAX_STREAMS } = await import(
      "../../relay/client_listener.ts"
    );
    const h = await relayHarness(transports.embedded);
    const client = http2.connect(`https://localhost:${h.relay.port}`, { ca: h.fleet.rootPem });
    client.on("error", () => {});
    try {
      await within(
        new Promise((r) => client.once("remoteSettings", r)),
        WAIT_MS,
        "the relay's HTTP/2 settings",
      );
      assert.equal(client.remoteSettings.maxConcurrentStreams, CLIENT_MAX_STREAMS);
      assert.equal(client.remoteSettings.maxHeaderListSize, CLIENT_MAX_HEADER_BYTES);
      assert.equal(client.remoteSettings.initialWindowSize, STREAM_WINDOW);
    } finally {
      client.destroy();
      await h.close();
    }
  },
});

Deno.test({
  name: "relay: a client that never finishes its TLS handshake is disconnected",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const h = await relayHarness(transports.embedded, { handshakeTimeoutMs: 300 });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.relay.port });
    try {
      const started = Date.now();
      // Send nothing; the relay must close the connection, so the read ends.
      const buf = new Uint8Array(16);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        conn.read(buf).catch(() => null),
        new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), 5000))),
      ]);
      clearTimeout(timer);
      assert.notEqual(n, "timeout", "the relay kept a silent connection open");
      assert.ok(Date.now() - started >= 250);
    } finally {
      conn.close();
      await h.close();
    }
  },
});
