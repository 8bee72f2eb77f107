/**
 * Who is on the other end of a client connection. A device certificate is
 * optional at the TLS layer; when one is presented it must be a valid,
 * unrevoked Device-CA leaf with the device role, or the connection is
 * closed. The verdict is cached per connection; revocation and expiry are
 * re-checked on every call, so a revoked device is cut off without restart.
 */
import type { TLSSocket } from "node:tls";
import { watchRevocations } from "../core/relay_policy.ts";
import {
  PkiError,
  type RevocationList,
  type TrustStore,
  type VerifiedCertificate,
} from "../core/pki/mod.ts";

export class DeviceAuth {
  #cache = new WeakMap<TLSSocket, Promise<VerifiedCertificate | null>>();

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
    return this.trust.verify(new Uint8Array(peer.raw), {
      expect: "device",
      usage: "clientAuth",
      revoked: this.revoked,
    });
  }
}
