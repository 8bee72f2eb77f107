/**
 * The fleet's figures on the controller's /metrics (the admin API's
 * prom-client registry): node health as the fleet driver sees it, the
 * driver's gRPC worker restarts, and the reconcile loop's
 * passes, heals and sweep time. Read when scraped, never polled.
 */
import client from "prom-client";
import type { FleetDriver } from "./fleet/driver.ts";
import type { Reconciler } from "./reconcile/reconciler.ts";

export function registerFleetMetrics(
  registry: client.Registry,
  parts: { fleet: FleetDriver; reconciler: Reconciler },
): void {
  const { fleet, reconciler } = parts;
  const gauge = (name: string, help: string, value: () => number) =>
    new client.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(value());
      },
    });
  new client.Gauge({
    name: "pharos_fleet_nodes",
    help: "Driven nodes by health as the fleet driver sees them",
    labelNames: ["health"] as const,
    registers: [registry],
    collect() {
      const counts: Record<string, number> = { healthy: 0, unreachable: 0, unknown: 0 };
      for (const id of fleet.nodeIds()) {
        const h = fleet.status(id)?.health ?? "unknown";
        counts[h] = (counts[h] ?? 0) + 1;
      }
      for (const [health, n] of Object.entries(counts)) this.set({ health }, n);
    },
  });
  gauge(
    "pharos_fleet_worker_crashes",
    "Times the fleet driver's gRPC worker died and was restarted",
    () => fleet.workerStats.crashes,
  );
  const stats = () => reconciler.stats();
  gauge(
    "pharos_reconcile_passes",
    "Reconcile passes run (sweeps and nudges)",
    () => stats().passes,
  );
  gauge("pharos_reconcile_sweeps", "Full reconcile sweeps run", () => stats().sweeps);
  gauge(
    "pharos_reconcile_heal_steps",
    "Reconcile steps that changed a node since start",
    () => stats().heals,
  );
  gauge("pharos_reconcile_node_errors", "Nodes that failed in a pass", () => stats().errors);
  gauge(
    "pharos_reconcile_last_sweep_seconds",
    "Duration of the last full sweep",
    () => (stats().lastSweep?.durationMs ?? 0) / 1000,
  );
  gauge(
    "pharos_reconcile_last_sweep_nodes",
    "Nodes in the last full sweep",
    () => stats().lastSweep?.nodes ?? 0,
  );
}
