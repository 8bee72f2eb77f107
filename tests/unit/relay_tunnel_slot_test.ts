/**
 * The relay says "controller tunnel up" only once the controller answers on
 * the session; a controller that drops the connection right after TLS (a
 * name mismatch, a refused certificate) is logged as never having come up.
 */
import assert from "node:assert/strict";
import { createLogger } from "../../core/log.ts";
import { memoryDuplexPair, MuxSession } from "../../core/mux/mod.ts";
import { RelayPolicy } from "../../core/relay_policy.ts";
import { TunnelSlot } from "../../relay/tunnel.ts";
import { until } from "../support/wait.ts";

function slotWithLogs() {
  const logs: { msg: string; level: string }[] = [];
  const slot = new TunnelSlot(
    new RelayPolicy(),
    createLogger("relay", { sink: (l) => logs.push(JSON.parse(l)) }),
  );
  return { slot, logs, msgs: () => logs.map((l) => l.msg) };
}

Deno.test("tunnel slot: 'up' is logged once the controller answers, 'down' when it goes", async () => {
  const { slot, msgs } = slotWithLogs();
  const [relayEnd, controllerEnd] = memoryDuplexPair();
  const controller = new MuxSession(controllerEnd, { role: "server", keepAliveIntervalMs: 0 });
  slot.attach(relayEnd, { keepAliveIntervalMs: 0 });
  await until(() => msgs().includes("controller tunnel up"), 10_000, "tunnel up");
  assert.ok(slot.connected);
  await controller.close();
  await until(() => msgs().includes("controller tunnel down"), 10_000, "tunnel down");
  assert.ok(!msgs().includes("controller tunnel closed before it came up"));
  await slot.close();
});

Deno.test("tunnel slot: a controller that hangs up after TLS never counts as up", async () => {
  const { slot, logs, msgs } = slotWithLogs();
  const [relayEnd, controllerEnd] = memoryDuplexPair();
  slot.attach(relayEnd, { keepAliveIntervalMs: 0 });
  // The controller refuses the relay after the handshake: it closes without a word.
  await controllerEnd.writable.close();
  await controllerEnd.readable.cancel();
  await until(
    () => msgs().includes("controller tunnel closed before it came up"),
    10_000,
    "closed-before-up line",
  );
  assert.ok(!msgs().includes("controller tunnel up"));
  assert.ok(!msgs().includes("controller tunnel down"));
  assert.equal(logs.find((l) => l.msg.includes("before it came up"))?.level, "warn");
  assert.ok(!slot.connected);
  await slot.close();
});
