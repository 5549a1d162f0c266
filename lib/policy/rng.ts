/**
 * Mulberry32: a small seeded pseudo-random generator (32-bit state) with the few draws the
 * policy, memory and statistics code need. Deterministic across platforms: the same seed gives
 * the same stream, and the whole state is one uint32 (checkpoints save and restore it).
 * Not the environments' generator (EnvRng, lib/envs/rng.ts: sfc32), nor the agents' (AgentRng,
 * lib/policy/agentRng.ts, which extends this one).
 */
export class Mulberry32 {
  /** The whole generator state (one uint32): save it and assign it back to resume the stream. */
  state: number;

  constructor(seed = 1) {
    // Mix the seed so that nearby seeds give unrelated streams.
    this.state = (Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ 0x6d2b79f5) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = this.next();
    while (u <= 0) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Index drawn from unnormalised non-negative weights w[off .. off+n). */
  categorical(w: ArrayLike<number>, off = 0, n = w.length - off): number {
    let total = 0;
    for (let i = 0; i < n; i++) total += w[off + i];
    if (!(total > 0)) throw new Error('Mulberry32.categorical: weights sum to zero');
    let u = this.next() * total;
    let last = -1;
    for (let i = 0; i < n; i++) {
      const wi = w[off + i];
      if (wi <= 0) continue;
      last = i;
      if (u < wi) return i;
      u -= wi;
    }
    return last; // rounding: fall back to the last positive weight
  }
}
