/**
 * Which stream ids the peer has already used, in bounded memory.
 *
 * A yamux peer allocates its ids in increasing order, but need not put the
 * SYNs on the wire in that order: hashicorp/yamux takes the id under a lock
 * and sends the SYN after releasing it, so concurrent `OpenStream` calls can
 * produce `…, 143, 145, 195, 147, …`. An id is therefore new when it is above
 * the highest one seen, or when it is one of the ids skipped below it that has
 * not turned up yet (a "gap").
 *
 * Memory: the highest id plus at most `maxGaps` gaps. When a jump would leave
 * more gaps than that, the oldest (lowest) gaps are forgotten and count as
 * used from then on: a late SYN for one of them is refused like the reuse of a
 * closed id, and a non-SYN frame for one is dropped like a late frame for a
 * stream that has ended. The work per SYN is bounded by `maxGaps` as well.
 */
export class PeerIds {
  /** Highest id the peer has used (its first id minus 2 before any). */
  #highest: number;
  /** Skipped ids below #highest not yet used; insertion order is ascending. */
  #gaps = new Set<number>();

  /**
   * @param firstId the peer's first id: 1 when it is the client, 2 when server
   * @param maxGaps how many skipped ids are remembered (>= 0)
   */
  constructor(firstId: 1 | 2, readonly maxGaps: number) {
    this.#highest = firstId - 2;
  }

  /** Highest id the peer has opened, or 0 / -1 before its first SYN. */
  get highest(): number {
    return this.#highest;
  }

  /** Skipped ids currently remembered. */
  get gapCount(): number {
    return this.#gaps.size;
  }

  /**
   * Records a SYN for `id` (of the peer's parity). True when the id was never
   * used and is now taken; false when it was used before (or its gap was
   * forgotten), in which case nothing changes.
   */
  claim(id: number): boolean {
    if (id <= this.#highest) return this.#gaps.delete(id);
    const firstGap = this.#highest + 2;
    // Only the newest maxGaps of the ids skipped by this jump can be kept.
    const keepFrom = Math.max(firstGap, id - 2 * this.maxGaps);
    if (keepFrom > firstGap || (id - keepFrom) / 2 >= this.maxGaps) this.#gaps.clear();
    for (let gap = keepFrom; gap < id; gap += 2) this.#gaps.add(gap);
    // Bounded: at most as many as were just added.
    for (const oldest of this.#gaps) {
      if (this.#gaps.size <= this.maxGaps) break;
      this.#gaps.delete(oldest);
    }
    this.#highest = id;
    return true;
  }

  /** True when the peer has not opened `id` (of its parity) yet. */
  neverOpened(id: number): boolean {
    return id > this.#highest || this.#gaps.has(id);
  }
}
