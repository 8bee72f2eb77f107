/**
 * Accounts (issue 13): users and passwords, enrollment tickets, device
 * claims, sessions, account keys, per-device peers and sealed profiles,
 * device revocation — and the AccountSync gRPC service on top.
 *
 * For the CLI and the admin API:
 * - `Accounts.open({ db, keystore, pki, devices, relay })`
 * - `accounts.createUser(actor, email, role)`
 * - `accounts.setPassword(actor, email, password)`     (`cox users passwd`)
 * - `accounts.createTicket(email, { actor, ttlMs })`   (`cox tickets create`) → `{ url, … }`
 * - `accounts.revokeDevice(deviceId, actor, reason)`   (`cox devices revoke`)
 * - `accounts.setDeviceStatus(deviceId, "disabled" | "active", actor)`
 * - `accounts.listDevices(emailOrUserId?)`             (`cox devices list`)
 * - `accounts.nodeKeyObserved(nodeId, awgPublicKey)`   (fleet driver, on GetStatus)
 * - `accounts.reprovisionAll()` after nodes are added or removed
 * - `accounts.reprovision(userId)` after a node change
 * - `accountSyncService(accounts, log)` → `[definition, implementation]` for the gRPC server
 */
export {
  Accounts,
  ACCOUNTS_ACTOR,
  type AccountsOptions,
  type ClaimRequest,
  type ClaimResult,
  type CreatedTicket,
  type DeviceCaller,
  type DeviceSummary,
  type ProfileResult,
  type RelayEndpoint,
} from "./accounts.ts";
export { AccountError, INVALID_CREDENTIALS, SESSION_REFUSED, TICKET_REFUSED } from "./errors.ts";
export {
  ACCOUNT_SYNC_SERVICE,
  accountSyncService,
  EXIT_HEADER,
  KEY_CHALLENGE_HEADER,
  KEY_PROOF_HEADER,
  SESSION_HEADER,
  WG_PUBLIC_KEY_HEADER,
} from "./grpc_service.ts";
export { MIN_PASSWORD_LENGTH } from "./passwords.ts";
export { PROFILE_TTL_MS, pskLabel, wgKeyLabel } from "./provisioning.ts";
export { SESSION_TTL_MS } from "./sessions.ts";
export { TICKET_TTL_MS } from "./tickets.ts";
export { relayEndpoint } from "./relay_endpoint.ts";
