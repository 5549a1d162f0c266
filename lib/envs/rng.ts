/**
 * Small, fast, seeded pseudo-random generator shared by the procedural environments.
 *
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, 128-bit state), seeded from a
 * 32-bit integer through splitmix32 so that nearby seeds give unrelated streams. Everything an
 * environment generates must come from one of these, never from Math.random, so that a seed
 * always reproduces the same game.
 */

/** splitmix32 step: a good 32-bit mixer, used to expand a seed into generator state. */
function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** FNV-1a 32-bit hash of a string: stable across runs and platforms (used to derive seeds and partitions). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // Final avalanche so that strings differing only in their last character spread well mod small n.
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Combine a seed with further integers / strings into one 32-bit seed (order matters). */
export function deriveSeed(seed: number, ...parts: (number | string)[]): number {
  let h = splitmix32(seed >>> 0 ^ hashString(String(Math.floor(seed / 4294967296))));
  for (const p of parts) {
    const v = typeof p === 'number' ? splitmix32(p >>> 0) : hashString(p);
    h = splitmix32((h ^ v) >>> 0);
  }
  return h >>> 0;
}

/** The environments' generator (sfc32); the learning side uses Mulberry32 / AgentRng (lib/policy). */
export class EnvRng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new TypeError(`EnvRng: seed must be a finite number, got ${seed}`);
    // Fold seeds outside 32 bits (e.g. 2**40 + 3) instead of silently truncating them to the same state.
    const lo = seed >>> 0;
    const hi = Math.floor(Math.abs(seed) / 4294967296) >>> 0;
    let s = lo ^ Math.imul(hi, 0x9e3779b1);
    this.a = s = splitmix32(s);
    this.b = s = splitmix32(s);
    this.c = s = splitmix32(s);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.nextUint32(); // warm up
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform float in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). n must be a positive integer. */
  int(n: number): number {
    if (!(n > 0) || !Number.isInteger(n)) throw new RangeError(`EnvRng.int: n must be a positive integer, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** Uniformly chosen element; throws on an empty array. */
  pick<T>(a: readonly T[]): T {
    if (a.length === 0) throw new RangeError('EnvRng.pick: empty array');
    return a[this.int(a.length)];
  }

  /** Index drawn with probability proportional to weights[i] (weights >= 0, sum > 0). */
  weighted(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    if (!(total > 0)) throw new RangeError('EnvRng.weighted: weights must sum to a positive number');
    let r = this.next() * total;
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i];
      if (r < 0) return i;
    }
    return weights.length - 1;
  }

  /** Fisher-Yates shuffle in place; returns the same array. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }
}
