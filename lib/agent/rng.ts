/** A seeded PRNG whose whole state is one uint32, so runs can be saved and resumed exactly. */
export class AgentRng {
  state: number;
  constructor(seed: number) {
    this.state = (Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ 0x6d2b79f5) >>> 0;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Index from non-negative weights (uniform when they sum to 0). */
  categorical(w: ArrayLike<number>): number {
    let total = 0;
    for (let i = 0; i < w.length; i++) total += w[i] > 0 ? w[i] : 0;
    if (!(total > 0)) return this.int(w.length);
    let u = this.next() * total;
    let last = 0;
    for (let i = 0; i < w.length; i++) {
      if (!(w[i] > 0)) continue;
      last = i;
      if (u < w[i]) return i;
      u -= w[i];
    }
    return last;
  }
  /** Argmax with ties broken uniformly at random (so a flat prior does not always pick action 0). */
  argmax(v: ArrayLike<number>, tol = 0): number {
    let best = -Infinity;
    for (let i = 0; i < v.length; i++) if (v[i] > best) best = v[i];
    const ties: number[] = [];
    for (let i = 0; i < v.length; i++) if (v[i] >= best - tol) ties.push(i);
    return ties.length === 1 ? ties[0] : ties[this.int(ties.length)];
  }
}
