/**
 * Data-plane rendering shared by controller and agent: field validation,
 * AmneziaWG obfuscation, interface/peer configs, UAPI requests, `wg show
 * dump` parsing, Xray VLESS+REALITY configs, the network-policy rule set and
 * cascade helpers. Pure functions over web standards only.
 */
export * from "./errors.ts";
export * from "./ip.ts";
export * from "./validate.ts";
export * from "./obfuscation.ts";
export * from "./awg_config.ts";
export * from "./uapi.ts";
export * from "./dump.ts";
export * from "./xray.ts";
export * from "./netpolicy.ts";
export * from "./cascade.ts";
