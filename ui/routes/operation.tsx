/** @jsxImportSource preact */
/**
 * A long operation (onboarding a node over SSH, resealing many profiles):
 * its steps, or its "n of m devices resealed", as they happen. The page
 * follows the change feed, so each step appears live.
 */
import type { PageContext } from "./context.ts";
import { field, list, num, type Obj, str, when } from "../lib/fields.ts";
import { Badge, Notice } from "../components/bits.tsx";

/**
 * The latest event of each step, in step order. The run's closing
 * `finished` event (carried on the last step) is shown on its own.
 */
function steps(events: Obj[]): Obj[] {
  const byStep = new Map<string, Obj>();
  for (const e of events) {
    const step = str(e, "step");
    if (step && str(e, "status") !== "finished") byStep.set(step, e);
  }
  return [...byStep.values()].sort((a, b) => Number(a.index ?? 0) - Number(b.index ?? 0));
}

/**
 * A running operation's page asks the live script to refresh once it is
 * connected: events between this render and the feed's hello would be lost.
 */
const running = (op: Obj) => str(op, "status") === "running" ? "" : undefined;

/** A reseal of many profiles: devices done of all, and each device that failed. */
function ResealProgressView({ op, events }: { op: Obj; events: Obj[] }) {
  const last = events.at(-1);
  const total = num(last, "total") ?? 0;
  const done = num(last, "done") ?? 0;
  const failed = num(last, "failed") ?? 0;
  const failures = events.filter((e) => str(e, "status") === "failed");
  const finished = events.find((e) => str(e, "status") === "finished");
  // Kind `profiles.reseal:<user id>` for one user's devices (also before any event).
  const user = str(op, "kind").split(":")[1] ?? "";
  return (
    <section data-refresh-on-connect={running(op)}>
      <h1>
        Reseal of {user ? "one user's" : "all"} profiles <Badge state={str(op, "status")} />
      </h1>
      <p class="muted">
        {user ? `user ${user} · ` : ""}started{" "}
        {when(field(op, "startedAt"))}. This page follows it live.
      </p>
      <p aria-live="polite">
        <progress max={Math.max(total, 1)} value={done} aria-label="Devices done" />{" "}
        <span data-reseal-progress>
          {last
            ? `${done - failed} of ${total} devices resealed${
              failed > 0 ? `, ${failed} failed` : ""
            }`
            : "starting…"}
        </span>
      </p>
      {failures.length > 0 && (
        <>
          <h2>Devices not resealed</h2>
          <ul aria-label="Devices not resealed">
            {failures.map((e) => (
              <li key={str(e, "deviceId")}>
                <Badge state="failed" /> {str(e, "message")}{" "}
                <span class="muted">({str(e, "code")})</span>
              </li>
            ))}
          </ul>
        </>
      )}
      {str(op, "error") && <Notice kind="error">{str(op, "error")}</Notice>}
      {finished && !str(op, "error") && <Notice kind="ok">{str(finished, "message")}</Notice>}
      <p>
        <a href="/profiles">Back to the profiles</a>
      </p>
    </section>
  );
}

/** What the operation does, for its heading ("Onboarding", "Download of the"). */
function operationTitle(kind: string): string {
  if (/onboard/.test(kind)) return "Onboarding";
  if (kind === "geoip.download") return "Download of the";
  return kind || "Operation";
}

export default async function operation(ctx: PageContext) {
  const op = await ctx.api.get<Obj>(`/api/operations/${encodeURIComponent(ctx.params.id)}`);
  const events = list(op, "events");
  if (str(events[0], "kind") === "reseal" || str(op, "kind").startsWith("profiles.reseal")) {
    return { title: "Reseal", body: <ResealProgressView op={op} events={events} /> };
  }
  const status = str(op, "status");
  const first = events[0];
  const nodeId = first && str(first, "kind") === "node" ? str(first, "id") : "";
  const total = Number(field(events.at(-1), "total") ?? 0);
  const done = steps(events).filter((e) => str(e, "status") === "done").length;
  const finished = events.find((e) => str(e, "status") === "finished");
  return {
    title: "Operation",
    body: (
      <section data-refresh-on-connect={running(op)}>
        <h1>
          {operationTitle(str(op, "kind"))} {first ? str(first, "name") : ""}{" "}
          <Badge state={status} />
        </h1>
        <p class="muted">
          {first ? `${str(first, "target")} · ` : ""}started{" "}
          {when(field(op, "startedAt"))}. This page follows it live.
        </p>
        {total > 0 && (
          <p>
            <progress max={total} value={done} aria-label="Steps done" /> {done} of {total}{" "}
            steps done
          </p>
        )}
        <ol class="steps" aria-label="Steps" aria-live="polite">
          {steps(events).map((e) => (
            <li key={str(e, "step")} data-step={str(e, "step")}>
              <Badge state={str(e, "status")} /> <b>{str(e, "step")}</b> {str(e, "message")}{" "}
              <span class="muted">{when(field(e, "time"))}</span>
            </li>
          ))}
        </ol>
        {str(op, "error") && <Notice kind="error">{str(op, "error")}</Notice>}
        {finished && <Notice kind="ok">{str(finished, "message")}</Notice>}
        {nodeId && (
          <p>
            <a href={`/nodes/${encodeURIComponent(nodeId)}`}>Open the node</a>
          </p>
        )}
      </section>
    ),
  };
}
