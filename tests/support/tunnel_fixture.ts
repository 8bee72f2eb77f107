/**
 * A real reverse tunnel on loopback: the relay's controller-only listener
 * with a TunnelSlot, and the controller's TunnelClient dialling it.
 */
import type { Duplex } from "node:stream";
import { createLogger, type Logger } from "../../core/log.ts";
import { certPem, type RevocationList } from "../../core/pki/mod.ts";
import { type PolicyDocument, RelayPolicy } from "../../core/relay_policy.ts";
import { type RevocationFeed, TunnelClient } from "../../controller/relay/tunnel_client.ts";
import { listenForController } from "../../relay/controller_listener.ts";
import { TunnelSlot } from "../../relay/tunnel.ts";
import type { BackendTransport } from "../../relay/transport.ts";
import { nodeToWeb } from "../../relay/host/web_node.ts";
import type { Fleet, IssuedLeaf } from "./pki_fixture.ts";
import { until, WAIT_MS, within } from "./wait.ts";

export interface TunnelFixture {
  slot: TunnelSlot;
  client: TunnelClient;
  policy: RelayPolicy;
  /** The certificate the controller's TunnelClient presents. */
  controllerLeaf: IssuedLeaf;
  port: number;
  logs: string[];
  /** Stops and restarts the relay's listener on the same port. */
  restartRelay(): Promise<void>;
  transport: BackendTransport;
}

/** A relay's controller-only listener on loopback, as the relay program builds it. */
export function testControllerListener(
  fleet: Fleet,
  relayLeaf: IssuedLeaf,
  opts: {
    policy: RelayPolicy;
    log: Logger;
    onController: (socket: import("node:tls").TLSSocket) => void;
    port?: number;
    legacyControllerPins?: ReadonlySet<string>;
  },
) {
  return listenForController({
    listen: { hostname: "127.0.0.1", port: opts.port ?? 0 },
    certPem: relayLeaf.chainPem,
    keyPem: relayLeaf.keyPem,
    fleetCaPem: certPem(fleet.pki.fleet.cert),
    trust: fleet.trust,
    revoked: opts.policy.revoked,
    legacyControllerPins: opts.legacyControllerPins,
    log: opts.log,
    onController: opts.onController,
  });
}

export async function startTunnel(
  accept: (c: Duplex) => void,
  fleet: Fleet,
  relayLeaf: IssuedLeaf,
  opts: {
    controllerLeaf?: IssuedLeaf;
    egressAllow?: string[];
    /** Serials the fixture's policy revokes (read at each push; mutate to change it). */
    revokedSerials?: string[];
    /** A policy source instead of the fixture's counter (e.g. controller/relay/policy_source.ts). */
    policySource?: { document(): PolicyDocument; catchUp(relayRevision: number): boolean };
    /** The controller's revocations: its dials check them and a revoked relay is cut off. */
    revocations?: RevocationFeed & { list: RevocationList };
    backoff?: { initialMs: number; maxMs: number; stableMs: number };
    /** The controller takes plain HTTP/2 substreams here (TunnelClientOptions.acceptPlain). */
    acceptPlain?: (c: Duplex) => void;
  } = {},
): Promise<TunnelFixture> {
  const logs: string[] = [];
  const log: Logger = createLogger("tunnel", { sink: (l) => logs.push(l), level: "debug" });
  const policy = new RelayPolicy();
  const slot = new TunnelSlot(policy, log);
  const listen = (port: number) =>
    testControllerListener(fleet, relayLeaf, {
      policy,
      log,
      port,
      onController: (socket) => slot.attach(nodeToWeb(socket)),
    });
  let listener = await within(listen(0), WAIT_MS, "the relay's controller listener");
  const port = listener.port;
  const ctl = opts.controllerLeaf ?? await fleet.issue({ kind: "controller-client" });
  let revision = 0;
  const client = new TunnelClient({
    target: { host: "127.0.0.1", port, serverName: "127.0.0.1" },
    identity: {
      certPem: ctl.chainPem,
      keyPem: ctl.keyPem,
      caPem: fleet.rootPem + certPem(fleet.pki.fleet.cert),
      trust: fleet.trust,
      revoked: opts.revocations?.list,
    },
    accept,
    acceptPlain: opts.acceptPlain,
    policy: opts.policySource ? () => opts.policySource!.document() : () => ({
      v: 1,
      revision: ++revision,
      revoked_serials: [...(opts.revokedSerials ?? [])],
      egress_allow: opts.egressAllow ?? [],
    }),
    catchUp: opts.policySource ? (n) => opts.policySource!.catchUp(n) : undefined,
    revocations: opts.revocations,
    log,
    backoff: opts.backoff ?? { initialMs: 200, maxMs: 2000, stableMs: 5000 },
  });
  client.start();
  await within(client.whenUp(), WAIT_MS, "the controller's tunnel to come up");
  await until(() => slot.connected, WAIT_MS, "the relay to accept the tunnel");
  const transport: BackendTransport = {
    name: slot.name,
    get inProcess() {
      return slot.inProcess;
    },
    dial: () => slot.dial(),
    onChange: (fn) => slot.onChange(fn),
    async close() {
      await within(client.stop(), WAIT_MS, "the controller's TunnelClient.stop()");
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
      await within(listener.close(), WAIT_MS, "the relay's controller listener to close");
    },
  };
  return {
    slot,
    client,
    policy,
    controllerLeaf: ctl,
    port,
    logs,
    transport,
    async restartRelay() {
      await within(listener.close(), WAIT_MS, "the relay's controller listener to close");
      await within(slot.close(), WAIT_MS, "the relay's tunnel slot to close");
      listener = await within(listen(port), WAIT_MS, "the relay's listener to listen again");
    },
  };
}
