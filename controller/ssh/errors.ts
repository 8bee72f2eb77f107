/**
 * Errors of the SSH layer. Codes: `bad-target`, `bad-argument` (refused
 * before anything is sent), `bad-key`, `bad-fingerprint`, `connect-failed`,
 * `timeout`, `auth-failed`, `host-key-changed`, `host-key-mismatch`,
 * `command-failed`, `sudo-failed`, `output-too-large`, `disconnected`.
 */
import { PharosError } from "../../core/errors.ts";

export class SshError extends PharosError {}
