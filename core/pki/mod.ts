/**
 * core/pki: the fleet's certificate authority and every certificate check.
 * See the README's PKI section for the hierarchy.
 */
export * from "./errors.ts";
export * from "./pem.ts";
export * from "./keys.ts";
export * from "./csr.ts";
export * from "./issue.ts";
export * from "./roles.ts";
export * from "./verify.ts";
export * from "./revocation.ts";
export * from "./renewal.ts";
export * from "./fingerprint.ts";
export { SubjectAlternativeNameExtension, X509Certificate } from "@peculiar/x509";
export * from "./key_files.ts";
