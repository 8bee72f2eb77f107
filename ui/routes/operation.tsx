/** @jsxImportSource preact */
/**
 * A long operation (onboarding a node over SSH): its steps as they
 * happen. The page follows the change feed, so each step appears live.
 */
import type { PageContext } from "./context.ts";
import { field, list, type Obj, str, when } from "../lib/fields.ts";
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

export default async function operation(ctx: PageContext) {
  const op = await ctx.api.get<Obj>(`/api/operations/${encodeURIComponent(ctx.params.id)}`);
  const events = list(op, "events");
  const status = str(op, "status");
  const first = events[0];
  const nodeId = first && str(first, "kind") === "node" ? str(first, "id") : "";
  const total = Number(field(events.at(-1), "total") ?? 0);
  const done = steps(events).filter((e) => str(e, "status") === "done").length;
  const finished = events.find((e) => str(e, "status") === "finished");
  return {
    title: "Operation",
    body: (
      <section>
        <h1>
          {/onboard/.test(str(op, "kind")) ? "Onboarding" : str(op, "kind", "Operation")}{" "}
          {first ? str(first, "name") : ""} <Badge state={status} />
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
