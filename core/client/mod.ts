/**
 * core/client: the reference client's flow, web standards only — enroll
 * from a join link, log in, sync and open the profile, plan the tunnel.
 * Sockets, files and interfaces are the caller's (see agent/client/).
 */
export * from "./errors.ts";
export * from "./transport.ts";
export * from "./relay_trust.ts";
export * from "./state.ts";
export * from "./enroll.ts";
export * from "./account_key.ts";
export * from "./sync.ts";
export * from "./tunnel.ts";
