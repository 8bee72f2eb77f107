/**
 * core/net: the one syntax of IP addresses, host names, CIDR prefixes and
 * `host:port` endpoints that core/connect, core/dataplane, core/profile and
 * core/pki share.
 */
export * from "./address.ts";
export * from "./errors.ts";
