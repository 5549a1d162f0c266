/**
 * The agents' seeded generator: Mulberry32 (lib/policy/rng.ts: the whole state one uint32, so
 * runs can be saved and resumed exactly) with the two draws agents make over their choices.
 * It lives in lib/policy so that lib/agent and lib/train (Mem-EM's state sampling) share it
 * without one importing the other.
 */
import { Mulberry32 } from './rng';

export class AgentRng extends Mulberry32 {
  /** Index from weights, negative ones ignored (uniform when none is positive, where the base class throws). */
  override categorical(w: ArrayLike<number>): number {
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
