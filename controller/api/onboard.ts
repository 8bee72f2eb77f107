/**
 * POST /api/nodes: node onboarding over SSH (controller/onboarding), as
 * `cox nodes add` runs it, with the controller's own SSH key. The target is
 * checked when the request arrives (a bad one is a 400, no operation); the
 * run then reports each step to the operation and the feed, and ends at once
 * (its SSH connection dropped) when the controller stops. A first contact
 * pins the host key the operator confirmed (`accept_host_key`, as
 * `--accept-host-key`), or the one seen when none is given.
 */
import type { OnboardingProgress } from "../onboarding/events.ts";
import { type NodeOnboarding, onboardNode } from "../onboarding/node.ts";
import { parseSshTarget } from "../ssh/target.ts";
import type { ControllerState } from "../state.ts";
import type { OperationRun } from "./operations.ts";

export interface ApiOnboard {
  host: string;
  name?: string;
  sshPort: number;
  sshUser: string;
  region?: string;
  acceptHostKey?: string;
}

export type OnboardStarter = (actor: string, input: ApiOnboard) => OperationRun;

/**
 * What runs on the host and how its agent is reached, per request, when not
 * the defaults (the dashboard tests onboard a lab host behind a namespace).
 */
export type HostOverrides = (
  input: ApiOnboard,
) => Pick<NodeOnboarding, "setup" | "nodeControlTarget" | "ready">;

export function nodeOnboarding(
  state: Pick<ControllerState, "db" | "keystore" | "pki">,
  overrides?: HostOverrides,
): OnboardStarter {
  return (actor, input) => {
    const host = input.host.includes(":") ? `[${input.host}]` : input.host;
    const target = parseSshTarget(`${input.sshUser}@${host}:${input.sshPort}`);
    return async (emit: (e: OnboardingProgress) => void, _id, signal) => {
      await onboardNode(state, actor, {
        target,
        name: input.name,
        region: input.region,
        credentials: { kind: "key" },
        sudo: target.user !== "root",
        acceptHostKey: input.acceptHostKey,
        onProgress: emit,
        // Messages name the command that resumes it (`cox nodes add user@host:port --name NAME`,
        // safe beside the running controller), as a stop or a failure may need it after a restart.
        signal,
        ...overrides?.(input),
      });
    };
  };
}
