/** The fuzzer's seeded PRNG (mulberry32): every batch is a pure function of (seed, batch). */
export class FuzzRng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }

  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** One of `items` with probability proportional to its weight. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of items) total += w;
    let u = this.next() * total;
    for (const [w, v] of items) {
      u -= w;
      if (u < 0) return v;
    }
    return items[items.length - 1][1];
  }

  normal(): number {
    const u = Math.max(this.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** A fresh 32-bit seed for a sub-generator. */
  seed(): number {
    return (this.next() * 4294967296) >>> 0;
  }
}

/**
 * The seed of part `part` of batch `batch` of a run with seed `seed` (splitmix-style mixing).
 * Part 0 is the batch; part p > 0 continues a batch whose part p-1 crashed, with fresh calls.
 */
export function batchSeed(seed: number, batch: number, part = 0): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(batch + 1, 0x85ebca77) ^ Math.imul(part, 0xc2b2ae3d)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x7feb352d) >>> 0;
  z = Math.imul(z ^ (z >>> 15), 0x846ca68b) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}
