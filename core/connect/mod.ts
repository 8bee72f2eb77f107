/**
 * core/connect: the CONNECT line that opens a control-plane egress stream
 * (CONTRACTS.md §3.5).
 */
export { checkHost, ConnectError, type HostKind, isHostname, isIPv4, isIPv6 } from "./host.ts";
export * from "./line.ts";
