/**
 * SSH onboarding of nodes and remote relays (DESIGN §4 "Node onboarding
 * over SSH"): see engine.ts for the steps, events.ts for the progress
 * stream, setup.ts for what runs on the host.
 */
export * from "./errors.ts";
export * from "./events.ts";
export { type EngineResult, type SshCredentials } from "./engine.ts";
export { NODE_SETUP, RELAY_SETUP, type RemoteSetup } from "./setup.ts";
export { type ReadyWait } from "./node_control.ts";
export { NODE_CERT_FILES, type NodeOnboarding, onboardNode } from "./node.ts";
export { onboardRelay, type RelayOnboarding } from "./relay.ts";
export { type RelayTunnelTarget, relayTunnelTargets } from "../service/relays.ts";
export { diffRelayTargets, type RelayTargetChange, watchRelayTargets } from "./relay_targets.ts";
