/**
 * Prometheus metrics (prom-client) served at /metrics. The registry is the
 * app's own (not prom-client's global one), so several apps in one process
 * (tests) do not clash; fleet parts add their own metrics to `registry`.
 * Gauges of stored state (nodes by state, relays by status, admins,
 * tokens) are read from the database when scraped.
 */
import client from "prom-client";
import type { Db } from "../db/sqlite.ts";

export interface ApiMetrics {
  registry: client.Registry;
  requests: client.Histogram<"method" | "route" | "status">;
  logins: client.Counter<"outcome">;
  feedSubscribers: client.Gauge;
  feedEvents: client.Counter<"type">;
}

function countBy(db: Db, sql: string): { k: string; n: number }[] {
  try {
    return db.prepare(sql).all() as { k: string; n: number }[];
  } catch {
    return []; // a table another part adds later is simply not counted yet
  }
}

export function createMetrics(db: Db, feedSize: () => number): ApiMetrics {
  const registry = new client.Registry();
  registry.setDefaultLabels({ service: "pharos-controller" });
  const requests = new client.Histogram({
    name: "pharos_api_request_duration_seconds",
    help: "Admin API request latency by route template and status",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const logins = new client.Counter({
    name: "pharos_admin_logins_total",
    help: "Admin sign-in attempts by outcome",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  const feedSubscribers = new client.Gauge({
    name: "pharos_feed_subscribers",
    help: "Open /api/events subscriptions",
    registers: [registry],
    collect() {
      this.set(feedSize());
    },
  });
  const feedEvents = new client.Counter({
    name: "pharos_feed_events_total",
    help: "Events published on the change feed by type",
    labelNames: ["type"] as const,
    registers: [registry],
  });
  new client.Gauge({
    name: "pharos_nodes",
    help: "Nodes by state",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of ["pending", "active", "unreachable", "disabled"]) this.set({ state: s }, 0);
      for (const r of countBy(db, "SELECT status AS k, COUNT(*) AS n FROM nodes GROUP BY status")) {
        this.set({ state: r.k }, r.n);
      }
    },
  });
  new client.Gauge({
    name: "pharos_relays",
    help: "Relays by status",
    labelNames: ["status"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (
        const r of countBy(db, "SELECT status AS k, COUNT(*) AS n FROM relays GROUP BY status")
      ) {
        this.set({ status: r.k }, r.n);
      }
    },
  });
  new client.Gauge({
    name: "pharos_devices",
    help: "Devices by status",
    labelNames: ["status"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (
        const r of countBy(db, "SELECT status AS k, COUNT(*) AS n FROM devices GROUP BY status")
      ) {
        this.set({ status: r.k }, r.n);
      }
    },
  });
  new client.Gauge({
    name: "pharos_api_tokens",
    help: "Live (unrevoked) API tokens by scope",
    labelNames: ["scope"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (
        const r of countBy(
          db,
          "SELECT scope AS k, COUNT(*) AS n FROM api_tokens WHERE revoked_at IS NULL GROUP BY scope",
        )
      ) {
        this.set({ scope: r.k }, r.n);
      }
    },
  });
  // Counts of rows other parts write (tables they add later are simply not counted yet).
  const tableGauges: [string, string, string, string][] = [
    [
      "pharos_node_peers",
      "Peers the nodes must serve, by protocol",
      "protocol",
      "SELECT protocol AS k, COUNT(*) AS n FROM node_peers GROUP BY protocol",
    ],
    [
      "pharos_alerts_open",
      "Open alerts by severity",
      "severity",
      "SELECT severity AS k, COUNT(*) AS n FROM alerts WHERE resolved_at IS NULL GROUP BY severity",
    ],
    [
      "pharos_enrolments",
      "Enrollment tickets by state (used = a device enrolled)",
      "state",
      "SELECT CASE WHEN used_at IS NULL THEN 'open' ELSE 'used' END AS k, COUNT(*) AS n FROM enrollment_tickets GROUP BY k",
    ],
    [
      "pharos_reconcile_heals",
      "Heals recorded by the reconcile sweep, by node",
      "node",
      "SELECT node_id AS k, COUNT(*) AS n FROM reconcile_heals GROUP BY node_id",
    ],
  ];
  for (const [name, help, label, sql] of tableGauges) {
    new client.Gauge({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        this.reset();
        for (const r of countBy(db, sql)) this.set({ [label]: r.k }, r.n);
      },
    });
  }
  return { registry, requests, logins, feedSubscribers, feedEvents };
}
