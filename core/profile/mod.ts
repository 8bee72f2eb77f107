/**
 * core/profile: the client-facing formats — the `.pharos` container (§4.5),
 * the decrypted profile payload (§4.6), the `.pharosid` device identity
 * (§4.7), join links (§4.8), the offline single-node QR and the Amnezia
 * `vpn://` export (§6).
 */
export * from "./errors.ts";
export * from "./schema.ts";
export * from "./freshness.ts";
export * from "./container.ts";
export * from "./identity.ts";
export * from "./join_link.ts";
export * from "./base45.ts";
export * from "./compression.ts";
export * from "./offline_qr.ts";
export * from "./amnezia.ts";
export { type Codec, goJson, type WithExtra } from "./fields.ts";
export { isCidr, isHost, isIpv4, isIpv6, joinHostPort, splitHostPort } from "./net_syntax.ts";
