/** A small seeded PRNG for tests (mulberry32) with gaussian samples. */
export class TestRng {
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
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  normal(): number {
    const u = Math.max(this.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  /** n*d gaussian floats scaled by 1/sqrt(d) (rows of norm about 1). */
  keys(n: number, d: number): Float32Array {
    const a = new Float32Array(n * d);
    const s = 1 / Math.sqrt(d);
    for (let i = 0; i < a.length; i++) a[i] = this.normal() * s;
    return a;
  }
}

/** A fresh seed per run unless MEMQ_TEST_SEED pins it; printed by the tests that use it. */
export function testSeed(): number {
  const pinned = process.env.MEMQ_TEST_SEED;
  return pinned ? Number(pinned) : (Date.now() ^ (process.pid << 8)) >>> 0;
}
