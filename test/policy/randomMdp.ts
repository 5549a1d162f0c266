// Random finite MDPs for the solver tests (not a test file itself).
import { Mulberry32 } from '../../lib/policy/rng';
import type { FiniteMdp } from '../../lib/policy/mdp';

export interface RandomMdpOptions {
  S: number;
  A: number;
  seed: number;
  /** Fraction of prior entries set to zero (each row keeps at least one positive). */
  priorZeros?: number;
  /** Number of terminal states (the last ones). */
  terminals?: number;
  /** Fraction of zero transition entries. */
  sparsity?: number;
}

export function randomMdp(o: RandomMdpOptions): FiniteMdp {
  const { S, A } = o;
  const rng = new Mulberry32(o.seed);
  const P = new Float64Array(S * A * S);
  const R = new Float64Array(S * A);
  const prior = new Float64Array(S * A);
  const terminal = new Uint8Array(S);
  for (let i = 0; i < (o.terminals ?? 0); i++) terminal[S - 1 - i] = 1;
  for (let sa = 0; sa < S * A; sa++) {
    let sum = 0;
    for (let t = 0; t < S; t++) {
      const p = rng.next() < (o.sparsity ?? 0) ? 0 : rng.next() ** 2;
      P[sa * S + t] = p;
      sum += p;
    }
    if (sum === 0) {
      P[sa * S + rng.int(S)] = 1;
      sum = 1;
    }
    for (let t = 0; t < S; t++) P[sa * S + t] /= sum;
    R[sa] = rng.normal();
  }
  for (let s = 0; s < S; s++) {
    let sum = 0;
    for (let a = 0; a < A; a++) {
      const p = rng.next() < (o.priorZeros ?? 0) ? 0 : 0.05 + rng.next();
      prior[s * A + a] = p;
      sum += p;
    }
    if (sum === 0) {
      prior[s * A + rng.int(A)] = 1;
      sum = 1;
    }
    for (let a = 0; a < A; a++) prior[s * A + a] /= sum;
  }
  return { S, A, P, R, prior, terminal };
}

/** Naive soft Bellman operator straight from MATH §6 (no log-space tricks), for moderate α. */
export function naiveSoftBellman(mdp: FiniteMdp, Q: ArrayLike<number>, alpha: number, gamma: number): Float64Array {
  const { S, A, P, R, prior, terminal } = mdp;
  const V = new Float64Array(S);
  for (let s = 0; s < S; s++) {
    if (terminal[s]) continue;
    let z = 0;
    let mx = -Infinity;
    for (let a = 0; a < A; a++) {
      if (prior[s * A + a] > 0) mx = Math.max(mx, Q[s * A + a]);
      z += prior[s * A + a] * Math.exp(Q[s * A + a] / alpha);
    }
    V[s] = alpha > 0 ? alpha * Math.log(z) : mx;
  }
  const TQ = new Float64Array(S * A);
  for (let s = 0; s < S; s++) {
    if (terminal[s]) continue;
    for (let a = 0; a < A; a++) {
      let ev = 0;
      for (let t = 0; t < S; t++) ev += P[(s * A + a) * S + t] * V[t];
      TQ[s * A + a] = R[s * A + a] + gamma * ev;
    }
  }
  return TQ;
}

/** Evaluate a (KL-free) policy by iterating the Bellman expectation operator to convergence. */
export function iterativeEvaluation(mdp: FiniteMdp, pi: ArrayLike<number>, gamma: number): Float64Array {
  const { S, A, P, R, terminal } = mdp;
  let V = new Float64Array(S);
  for (let it = 0; it < 100000; it++) {
    const Vn = new Float64Array(S);
    let diff = 0;
    for (let s = 0; s < S; s++) {
      if (terminal[s]) continue;
      let v = 0;
      for (let a = 0; a < A; a++) {
        let ev = 0;
        for (let t = 0; t < S; t++) ev += P[(s * A + a) * S + t] * V[t];
        v += pi[s * A + a] * (R[s * A + a] + gamma * ev);
      }
      Vn[s] = v;
      diff = Math.max(diff, Math.abs(v - V[s]));
    }
    V = Vn;
    if (diff < 1e-14) break;
  }
  return V;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error('length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
