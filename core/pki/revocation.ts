/**
 * Revoked certificate serials. Verifiers hold a reference to one list; the
 * controller replaces its contents when it pushes a new list, so revocation
 * takes effect on the next handshake without restarting anything.
 */
export class RevocationList {
  #serials = new Set<string>();

  constructor(serials: Iterable<string> = []) {
    this.replace(serials);
  }

  /** Canonical serial form: lowercase hex, no leading zeros, no separators. */
  static normalize(serial: string): string {
    return serial.toLowerCase().replace(/[^0-9a-f]/g, "").replace(/^0+(?=.)/, "");
  }

  has(serial: string): boolean {
    return this.#serials.has(RevocationList.normalize(serial));
  }

  add(serial: string): void {
    this.#serials.add(RevocationList.normalize(serial));
  }

  /** Swaps the whole list atomically (as a pushed list does). */
  replace(serials: Iterable<string>): void {
    const next = new Set<string>();
    for (const s of serials) next.add(RevocationList.normalize(s));
    this.#serials = next;
  }

  get size(): number {
    return this.#serials.size;
  }

  toArray(): string[] {
    return [...this.#serials].sort();
  }
}
