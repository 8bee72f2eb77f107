/** @jsxImportSource preact */
/**
 * One node: state and health, revisions, data plane (agent version,
 * running, obfuscation, endpoints), peers with handshake age and rx/tx,
 * the rx/tx sparkline (all from GET /api/nodes/{id}; `observed` is null
 * until the controller has seen the node), onboarding progress and the
 * network-policy island.
 */
import type { PageContext } from "./context.ts";
import { bool, field, num, type Obj, str, when } from "../lib/fields.ts";
import { ruleText } from "../lib/rules.ts";
import { Badge, KV } from "../components/bits.tsx";
import { Island } from "../components/island.tsx";
import {
  DataPlane,
  Endpoints,
  healthRows,
  Obfuscation,
  Peers,
  TrafficCard,
} from "../components/node_observed.tsx";

export default async function node(ctx: PageContext) {
  const id = ctx.params.id;
  const base = `/api/nodes/${encodeURIComponent(id)}`;
  const [n, preview] = await Promise.all([
    ctx.api.get<Obj>(base),
    ctx.api.call("GET", `${base}/policy/preview`),
  ]);
  const observed = (field(n, "observed") ?? null) as Obj | null;
  const onboarding = str(n, "onboarding");
  return {
    title: `Node ${str(n, "name")}`,
    body: (
      <section data-live-observed={str(n, "id")}>
        <h1>
          Node {str(n, "name")} <Badge state={str(n, "status")} />
        </h1>
        <div class="grid">
          <div class="card">
            <h2>Status</h2>
            <KV
              rows={[
                ["Host", <code key="host">{str(n, "host")}</code>],
                ["Region", str(n, "region", "—")],
                ["SSH", `${str(n, "sshUser")}@${str(n, "host")}:${str(n, "sshPort")}`],
                ["Via relay", str(n, "viaRelay", "—")],
                ...healthRows(observed),
                [
                  "Config revision",
                  `${str(n, "appliedRevision")} applied of ${str(n, "desiredRevision")}`,
                ],
                ["Certificate serial", <code key="cert">{str(n, "certSerial", "—")}</code>],
                ["Onboarded", when(field(n, "onboardedAt"))],
                ["Updated", when(field(n, "updatedAt"))],
              ]}
            />
          </div>
          <div class="card">
            <h2>Onboarding</h2>
            {onboarding
              ? (
                <KV
                  rows={[
                    ["State", <Badge key="state" state={onboarding} />],
                    ["Step", str(n, "onboardingStep", "—")],
                    ["Error", str(n, "onboardingError", "—")],
                  ]}
                />
              )
              : <p class="muted">Not onboarded over SSH.</p>}
          </div>
          <div class="card">
            <h2>Traffic</h2>
            <TrafficCard observed={observed} />
          </div>
          <div class="card">
            <h2>Data plane</h2>
            <DataPlane observed={observed} />
            <h3>Obfuscation</h3>
            <Obfuscation value={field(n, "obfuscation")} />
          </div>
        </div>
        <div class="card">
          <h2>Network policy</h2>
          <Island
            name="PolicyEditor"
            id={`policy-${id}`}
            props={{
              nodeId: id,
              forwarding: bool(n, "forwarding"),
              masquerade: bool(n, "masquerade"),
              isolation: bool(n, "isolation"),
              version: num(n, "version") ?? 0,
              preview: preview.ok ? ruleText(preview.body) : "",
              csrf: ctx.csrf,
            }}
          />
        </div>
        <h2>Endpoints</h2>
        <Endpoints node={n} />
        <h2>Peers</h2>
        <Peers observed={observed} />
      </section>
    ),
  };
}
