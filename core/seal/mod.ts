/**
 * core/seal: the end-to-end envelope that keeps the controller from holding
 * a usable user secret — key pairs, passphrase wrapping (§4.4), sealed and
 * signed profile bundles (§4.2–4.3). Web standards and @noble/* / hash-wasm
 * only.
 */
export * from "./errors.ts";
export * from "./random.ts";
export * from "./keys.ts";
export * from "./argon2.ts";
export * from "./passphrase.ts";
export * from "./bundle.ts";
export { isJsonObject, parseBoundedJson } from "./bounded_json.ts";
