/** @jsxImportSource preact */
/**
 * The parts of the node page that show what the node is seen doing (the
 * API's `observed`: fleet driver health, the reconcile loop's last
 * observation, traffic samples) and its AmneziaWG settings (endpoints,
 * obfuscation). Every state is a word besides its colour.
 */
import type { ComponentChildren } from "preact";
import { bytes, field, list, num, type Obj, str, when } from "../lib/fields.ts";
import { ago, trafficSteps } from "../lib/traffic.ts";
import { Badge, KV, Table } from "./bits.tsx";
import { Sparkline } from "./sparkline.tsx";

const NOT_SEEN = <p class="muted">Not observed yet (the node has not answered the controller).</p>;

function uptime(s: number | null): string {
  if (s === null) return "—";
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A time with how long ago it was. */
function At({ v }: { v: unknown }) {
  return v ? <span>{when(v)} ({ago(v)})</span> : <span>never</span>;
}

export function healthRows(o: Obj | null): [string, ComponentChildren][] {
  if (!o) return [["Health", <Badge key="h" state="unknown" />]];
  return [
    ["Health", <Badge key="h" state={str(o, "health", "unknown")} />],
    ["Last seen", <At key="seen" v={field(o, "last_seen")} />],
    ["Missed polls", String(num(o, "missed_polls") ?? 0)],
    ["Last error", str(o, "last_error", "—")],
  ];
}

export function TrafficCard({ observed }: { observed: Obj | null }) {
  const samples = list(observed, "samples");
  const steps = trafficSteps(samples);
  if (steps.length === 0) {
    return (
      <p class="muted">
        {samples.length === 1
          ? "One sample so far; the chart starts at the next."
          : "No traffic samples yet."}
      </p>
    );
  }
  const last = steps.at(-1)!;
  const rate = (b: number) =>
    last.seconds > 0 ? `${bytes(Math.round(b / last.seconds))}/s` : bytes(b);
  const total = samples.at(-1);
  return (
    <figure class="traffic">
      <Sparkline rx={steps.map((s) => s.rx)} tx={steps.map((s) => s.tx)} />
      <figcaption class="muted">
        <span class="key-rx">rx (solid)</span> {rate(last.rx)},{" "}
        <span class="key-tx">tx (dashed)</span> {rate(last.tx)} over the last{" "}
        {last.seconds < 10 ? last.seconds.toFixed(1) : Math.round(last.seconds)} s; totals rx{" "}
        {bytes(num(total, "rx"))}, tx {bytes(num(total, "tx"))}
      </figcaption>
    </figure>
  );
}

export function DataPlane({ observed }: { observed: Obj | null }) {
  if (!observed || !field(observed, "observed_at")) return NOT_SEEN;
  const dp = field(observed, "dataplane") as Obj | null;
  return (
    <KV
      rows={[
        ["Agent version", <code key="v">{str(observed, "agent_version", "—")}</code>],
        [
          "Data plane",
          dp
            ? (
              <span key="dp">
                {str(dp, "kind", "data plane")}{" "}
                <Badge state={field(dp, "running") ? "up" : "down"} />
              </span>
            )
            : "—",
        ],
        ["Detail", str(dp, "detail", "—")],
        ["Node revision", str(observed, "applied_revision", "—")],
        ["Uptime", uptime(num(observed, "uptime_seconds"))],
        ["Observed", <At key="at" v={field(observed, "observed_at")} />],
      ]}
    />
  );
}

const OBF_ORDER = ["jc", "jmin", "jmax", "s1", "s2", "s3", "s4", "h1", "h2", "h3", "h4"];
const OBF_LABEL: Record<string, string> = {
  jc: "Junk packets (Jc)",
  jmin: "Junk size min (Jmin)",
  jmax: "Junk size max (Jmax)",
  s1: "Init padding (S1)",
  s2: "Response padding (S2)",
  s3: "Cookie padding (S3)",
  s4: "Transport padding (S4)",
  h1: "Init header (H1)",
  h2: "Response header (H2)",
  h3: "Cookie header (H3)",
  h4: "Transport header (H4)",
};

/** The AmneziaWG obfuscation parameters (no keys are in them). */
export function Obfuscation({ value }: { value: unknown }) {
  if (!value || typeof value !== "object") return <p class="muted">Not reported by the API.</p>;
  const o = value as Obj;
  const rows: [string, ComponentChildren][] = OBF_ORDER.filter((k) => k in o).map((k) => [
    OBF_LABEL[k],
    <code key={k}>{str(o, k)}</code>,
  ]);
  for (const k of ["i1", "i2", "i3", "i4", "i5"]) {
    if (str(o, k)) {
      rows.push([`Signature packet ${k.toUpperCase()}`, <code key={k}>{str(o, k)}</code>]);
    }
  }
  return <KV rows={rows} />;
}

/** Ports as the operator writes them: `443` or `2000–60000`. */
function ports(e: Obj): string {
  return str(e, "port_min") === str(e, "port_max")
    ? str(e, "port_min")
    : `${str(e, "port_min")}–${str(e, "port_max")}`;
}

/**
 * The node's endpoint pool and, per entry, what profiles list of it: only
 * the ports the node's agent confirmed it forwards (`endpoints_advertised`).
 */
export function Endpoints({ node }: { node: Obj | null }) {
  const advertised = list(node, "endpoints_advertised");
  const confirmed = str(node, "endpoints_confirmed_at") !== "";
  const inProfiles = (e: Obj): string => {
    const lo = num(e, "port_min") ?? 0, hi = num(e, "port_max") ?? 0;
    const pieces = advertised.filter((a) =>
      str(a, "ip") === str(e, "ip") && (num(a, "port_min") ?? 0) >= lo &&
      (num(a, "port_max") ?? 0) <= hi
    );
    if (pieces.length === 0) {
      return confirmed
        ? "no: the node does not forward these"
        : "not yet: the node has not confirmed";
    }
    const whole = pieces.length === 1 && num(pieces[0], "port_min") === lo &&
      num(pieces[0], "port_max") === hi;
    return whole ? "yes" : `only ${pieces.map(ports).join(", ")}`;
  };
  return (
    <Table
      caption="Public addresses and UDP ports of this node's AmneziaWG listener; profiles list what the node confirmed it forwards"
      rows={list(node, "endpoints")}
      empty="None configured: clients use the listen port only."
      columns={[
        { label: "Address", cell: (e) => <code>{str(e, "ip")}</code> },
        { label: "Ports", cell: ports },
        { label: "In profiles", cell: inProfiles },
      ]}
    />
  );
}

export function Peers({ observed }: { observed: Obj | null }) {
  return (
    <Table
      caption="Peers on this node, their last handshake and traffic, as the node last reported"
      rows={list(observed, "peers")}
      empty={observed ? "No peers reported." : "Not observed yet."}
      columns={[
        {
          label: "Device",
          cell: (p) => {
            const d = str(p, "device_id");
            return d ? <code title={d}>{d.slice(0, 8)}</code> : "—";
          },
        },
        {
          label: "Public key",
          cell: (p) => (
            <code title={str(p, "public_key")}>{str(p, "public_key").slice(0, 12)}…</code>
          ),
        },
        {
          label: "Last handshake",
          cell: (p) => {
            const h = field(p, "last_handshake");
            return h ? <span title={when(h)}>{ago(h)}</span> : "never";
          },
        },
        { label: "rx", cell: (p) => bytes(num(p, "rx_bytes")) },
        { label: "tx", cell: (p) => bytes(num(p, "tx_bytes")) },
      ]}
    />
  );
}
