/**
 * Who is on the other end of a client connection. A device certificate is
 * optional at the TLS layer; when one is presented it must be a valid,
 * unrevoked Device-CA leaf with the device role, or the connection is
 * closed. The verdict is cached per connection, and a passing one per
 * certificate across connections (bounded, for VERDICT_TTL_MS): a device
 * that reconnects, or an attacker that is made to reconnect
 * (stream_limits.ts CALM_MS), costs no second chain verification. That is
 * safe because TLS has already checked that the peer holds the
 * certificate's key, and the verdict depends only on the certificate's bytes
 * and the fixed trust store; revocation and expiry are re-checked on every
 * call, so a revoked device is cut off without restart.
 */
import type { TLSSocket } from "node:tls";
import { watchRevocations } from "../core/relay_policy.ts";
import {
  PkiError,
  type RevocationList,
  type TrustStore,
  type VerifiedCertificate,
} from "../core/pki/mod.ts";

/** Certificates whose verdict is kept across connections (oldest dropped first). */
const VERDICTS_KEPT = 1024;
/** How long a verdict is kept across connections. */
const VERDICT_TTL_MS = 10 * 60_000;

export class DeviceAuth {
  #cache = new WeakMap<TLSSocket, Promise<VerifiedCertificate | null>>();
  /** Verdicts by certificate (DER, base64), in insertion order. */
  #verdicts = new Map<string, { at: number; verdict: Promise<VerifiedCertificate> }>();

  constructor(private readonly trust: TrustStore, private readonly revoked: RevocationList) {}

  /** True when the certificate with `serial` is revoked now. */
  isRevoked(serial: string): boolean {
    return this.revoked.has(serial);
  }

  /**
   * Calls `fn` whenever a relay policy replaces the revocation list (a
   * push); returns the unsubscribe function. A list changed any other way
   * (the embedded relay shares the controller's) is caught by a sweep.
   */
  watch(fn: () => void): () => void {
    return watchRevocations(this.revoked, fn);
  }

  /** True when the connection presented a client certificate (verified or not). */
  static presentedCertificate(socket: TLSSocket): boolean {
    const peer = socket.getPeerCertificate?.(true);
    return Boolean(peer && peer.raw && peer.raw.length > 0);
  }

  /** The verified device of a connection, null without a certificate; throws PkiError. */
  async identify(socket: TLSSocket): Promise<VerifiedCertificate | null> {
    let verdict = this.#cache.get(socket);
    if (!verdict) {
      verdict = this.#verify(socket);
      this.#cache.set(socket, verdict);
    }
    const device = await verdict;
    if (!device) return null;
    if (this.revoked.has(device.serial)) {
      throw new PkiError(
        "revoked",
        `device certificate (serial ${device.serial}) has been revoked`,
      );
    }
    if (Date.now() > device.leaf.notAfter.getTime()) {
      throw new PkiError("expired", "device certificate has expired; re-enroll the device");
    }
    return device;
  }

  #verify(socket: TLSSocket): Promise<VerifiedCertificate | null> {
    const peer = socket.getPeerCertificate(true);
    if (!peer || !peer.raw || peer.raw.length === 0) return Promise.resolve(null);
    const key = peer.raw.toString("base64");
    const now = Date.now();
    const kept = this.#verdicts.get(key);
    if (kept && now - kept.at < VERDICT_TTL_MS) return kept.verdict;
    const verdict = this.trust.verify(new Uint8Array(peer.raw), {
      expect: "device",
      usage: "clientAuth",
      revoked: this.revoked,
    });
    this.#verdicts.delete(key);
    this.#verdicts.set(key, { at: now, verdict });
    // Only a certificate that passed is kept: one refused now (e.g. not yet
    // valid) is checked afresh on the next connection.
    verdict.catch(() => {
      if (this.#verdicts.get(key)?.verdict === verdict) this.#verdicts.delete(key);
    });
    if (this.#verdicts.size > VERDICTS_KEPT) {
      this.#verdicts.delete(this.#verdicts.keys().next().value!);
    }
    return verdict;
  }
}
