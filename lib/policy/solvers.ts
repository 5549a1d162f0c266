/**
 * Exact solvers for a finite MDP with a prior μ(a|s) (MATH §6), in float64:
 *  - soft value iteration   V(s) ← α log Σ_a μ(a|s) exp((r(s,a) + γ Σ_s' P(s'|s,a) V(s'))/α)
 *  - soft policy iteration  evaluate Q^π exactly (linear solve), improve with §5
 *  - hard value iteration   the α → 0 limit (max over the support of μ)
 * Terminal states absorb with value 0: V = 0, Q(s, ·) = 0, π(·|s) = μ(·|s).
 * These are the exact references the sample-based learners of §7 are checked against.
 */
import { klImproveRow } from './klImprove';
import { solveLinearSystem } from './linalg';
import type { FiniteMdp } from './mdp';

export type SolveMethod = 'spi' | 'svi' | 'vi';

export interface SolveOptions {
  /** Temperature α ≥ 0 (ignored by 'vi', which is α = 0). */
  alpha: number;
  /** Discount γ ∈ [0, 1). */
  gamma: number;
  /** Stop when the sup-norm change (SVI/VI) or soft-Bellman gap (SPI) falls to tol. Default 1e-12. */
  tol?: number;
  /** Iteration cap. Default 100000 (SVI/VI), 1000 (SPI). */
  maxIter?: number;
  /** SPI: called after each exact evaluation with the regularised value V^π. */
  onIteration?: (iteration: number, V: Float64Array, policy: Float64Array) => void;
  /** SPI: starting policy (S·A, rows on the support of μ); μ by default. */
  initialPolicy?: Float64Array;
}

export interface SolveResult {
  /** Soft value V(s) = α log Σ μ exp(Q/α) of the returned Q (max for α = 0). */
  V: Float64Array;
  /** Q(s, a), S·A row-major. */
  Q: Float64Array;
  /** π(a|s) ∝ μ(a|s) exp(Q(s,a)/α), S·A row-major. */
  policy: Float64Array;
  iterations: number;
  /** sup-norm soft Bellman residual ‖T*Q − Q‖∞ of the returned Q. */
  residual: number;
  /** False when maxIter stopped the iteration before the tolerance was met. */
  converged: boolean;
}

/** Q = R + γ P V (terminal rows 0). */
export function backup(mdp: FiniteMdp, V: ArrayLike<number>, gamma: number, out = new Float64Array(mdp.S * mdp.A)): Float64Array {
  const { S, A, P, R, terminal } = mdp;
  for (let s = 0; s < S; s++) {
    for (let a = 0; a < A; a++) {
      const sa = s * A + a;
      if (terminal[s]) {
        out[sa] = 0;
        continue;
      }
      let ev = 0;
      const base = sa * S;
      for (let t = 0; t < S; t++) {
        const p = P[base + t];
        if (p !== 0) ev += p * V[t];
      }
      out[sa] = R[sa] + gamma * ev;
    }
  }
  return out;
}

/** Soft value of each row of Q under μ (§5); fills policy when given. Terminal states: V = 0, π = μ. */
export function softValue(mdp: FiniteMdp, Q: ArrayLike<number>, alpha: number, policy?: Float64Array): Float64Array {
  const { S, A, prior, terminal } = mdp;
  const V = new Float64Array(S);
  for (let s = 0; s < S; s++) {
    if (terminal[s]) {
      V[s] = 0;
      if (policy) for (let a = 0; a < A; a++) policy[s * A + a] = prior[s * A + a];
      continue;
    }
    V[s] = klImproveRow(prior, s * A, Q, s * A, A, alpha, policy, s * A);
  }
  return V;
}

/** ‖T*Q − Q‖∞ with T* the soft optimality operator of §6 (hard max for α = 0). */
export function softBellmanResidual(mdp: FiniteMdp, Q: ArrayLike<number>, alpha: number, gamma: number): number {
  const TQ = backup(mdp, softValue(mdp, Q, alpha), gamma);
  let r = 0;
  for (let i = 0; i < TQ.length; i++) r = Math.max(r, Math.abs(TQ[i] - Q[i]));
  return r;
}

/**
 * Exact KL-regularised evaluation of a policy π (§6):
 *   V^π(s) = Σ_a π(a|s) [Q^π(s,a) − α log(π(a|s)/μ(a|s))],  Q^π = R + γ P V^π,
 * i.e. (I − γ P_π) V^π = r_π − α KL(π‖μ)(s), solved by Gaussian elimination.
 */
export function evaluatePolicy(
  mdp: FiniteMdp,
  policy: ArrayLike<number>,
  alpha: number,
  gamma: number,
): { V: Float64Array; Q: Float64Array } {
  const { S, A, P, R, prior, terminal } = mdp;
  const M = new Float64Array(S * S);
  const b = new Float64Array(S);
  for (let s = 0; s < S; s++) {
    M[s * S + s] = 1;
    if (terminal[s]) continue; // V(s) = 0
    let rhs = 0;
    for (let a = 0; a < A; a++) {
      const sa = s * A + a;
      const pi = policy[sa];
      if (pi <= 0) continue;
      const mu = prior[sa];
      if (!(mu > 0)) throw new Error(`evaluatePolicy: π(${a}|${s}) > 0 where μ = 0 (infinite KL)`);
      rhs += pi * R[sa];
      if (alpha > 0) rhs -= alpha * pi * Math.log(pi / mu);
      const base = sa * S;
      for (let t = 0; t < S; t++) {
        const p = P[base + t];
        if (p !== 0 && !terminal[t]) M[s * S + t] -= gamma * pi * p;
      }
    }
    b[s] = rhs;
  }
  const V = solveLinearSystem(M, b, S);
  return { V, Q: backup(mdp, V, gamma) };
}

/** The largest magnitude the solvers let values reach (float64 overflows at about 1.8e308). */
export const SOLVER_MAX_VALUE = 1e300;

/** A value left the float64 range: the MDP's rewards are too large for its discount (or α too small). */
export class SolverOverflowError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'SolverOverflowError';
  }
}

function checkOptions(mdp: FiniteMdp, opts: SolveOptions): void {
  if (!(opts.gamma >= 0 && opts.gamma < 1)) throw new RangeError(`gamma must be in [0, 1), got ${opts.gamma}`);
  if (!(opts.alpha >= 0)) throw new RangeError(`alpha must be >= 0, got ${opts.alpha}`);
  // |V| ≤ max|R| / (1 − γ) for every soft value (it lies between min Q and max Q): refuse
  // problems whose values cannot be held in float64 before iterating on infinities.
  let rmax = 0;
  for (let i = 0; i < mdp.R.length; i++) rmax = Math.max(rmax, Math.abs(mdp.R[i]));
  const bound = rmax / (1 - opts.gamma);
  if (!(bound <= SOLVER_MAX_VALUE)) {
    throw new SolverOverflowError(
      `overflow: rewards up to |R| = ${rmax.toExponential(3)} with gamma ${opts.gamma} give values up to |R| / (1 − gamma) = ` +
      `${Number.isFinite(bound) ? bound.toExponential(3) : `10^${(Math.log10(rmax) - Math.log10(1 - opts.gamma)).toFixed(1)}`}, ` +
      `beyond the solver's float64 limit of ${SOLVER_MAX_VALUE.toExponential(0)}; rescale the rewards`,
    );
  }
}

function firstNonFinite(x: ArrayLike<number>): number {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return i;
  return -1;
}

function overflowCheck(mdp: FiniteMdp, name: string, x: ArrayLike<number>, alpha: number, iteration: number): void {
  const i = firstNonFinite(x);
  if (i < 0) return;
  const at = name === 'V' ? `V[${i}]` : `${name}[${Math.floor(i / mdp.A)}][${i % mdp.A}]`;
  throw new SolverOverflowError(`overflow in the solver: ${at} = ${x[i]} at iteration ${iteration} (alpha ${alpha}); the values left the float64 range`);
}

function finish(mdp: FiniteMdp, Q: Float64Array, alpha: number, gamma: number, iterations: number, converged: boolean): SolveResult {
  const policy = new Float64Array(mdp.S * mdp.A);
  const V = softValue(mdp, Q, alpha, policy);
  overflowCheck(mdp, 'Q', Q, alpha, iterations);
  overflowCheck(mdp, 'V', V, alpha, iterations);
  overflowCheck(mdp, 'policy', policy, alpha, iterations);
  return { V, Q, policy, iterations, residual: softBellmanResidual(mdp, Q, alpha, gamma), converged };
}

/** Soft value iteration (§6). α = 0 is hard value iteration. */
export function softValueIteration(mdp: FiniteMdp, opts: SolveOptions): SolveResult {
  checkOptions(mdp, opts);
  const { alpha, gamma } = opts;
  const tol = opts.tol ?? 1e-12;
  const maxIter = opts.maxIter ?? 100000;
  let V: Float64Array = new Float64Array(mdp.S);
  const Q = new Float64Array(mdp.S * mdp.A);
  let it = 0;
  let converged = false;
  while (it < maxIter) {
    it++;
    backup(mdp, V, gamma, Q);
    const Vn = softValue(mdp, Q, alpha);
    overflowCheck(mdp, 'V', Vn, alpha, it);
    let diff = 0;
    for (let s = 0; s < mdp.S; s++) diff = Math.max(diff, Math.abs(Vn[s] - V[s]));
    V = Vn;
    // ‖T*Q − Q‖∞ ≤ γ ‖V_new − V_old‖∞ for Q = R + γ P V_new.
    if (gamma * diff <= tol) {
      converged = true;
      break;
    }
  }
  backup(mdp, V, gamma, Q);
  return finish(mdp, Q, alpha, gamma, it, converged);
}

/** Hard value iteration: the α → 0 limit, max over the support of μ. */
export function hardValueIteration(mdp: FiniteMdp, opts: Omit<SolveOptions, 'alpha'> & { alpha?: number }): SolveResult {
  return softValueIteration(mdp, { ...opts, alpha: 0 });
}

/**
 * Soft policy iteration (§6): π_0 = μ (or opts.initialPolicy); evaluate Q^π exactly, improve
 * π' ∝ μ exp(Q^π/α). The regularised value V^π increases monotonically; stop when the
 * soft-Bellman gap ‖softV(Q^π) − V^π‖∞ ≤ tol.
 */
export function softPolicyIteration(mdp: FiniteMdp, opts: SolveOptions): SolveResult {
  checkOptions(mdp, opts);
  const { alpha, gamma } = opts;
  const tol = opts.tol ?? 1e-12;
  const maxIter = opts.maxIter ?? 1000;
  let policy = opts.initialPolicy ? Float64Array.from(opts.initialPolicy) : Float64Array.from(mdp.prior);
  let Q: Float64Array = new Float64Array(mdp.S * mdp.A);
  let it = 0;
  let prevGap = Infinity;
  let converged = false;
  while (it < maxIter) {
    it++;
    overflowCheck(mdp, 'policy', policy, alpha, it);
    const ev = evaluatePolicy(mdp, policy, alpha, gamma);
    overflowCheck(mdp, 'V', ev.V, alpha, it);
    Q = ev.Q;
    if (opts.onIteration) opts.onIteration(it, ev.V, policy);
    const improved = new Float64Array(mdp.S * mdp.A);
    const Vsoft = softValue(mdp, Q, alpha, improved);
    let gap = 0;
    for (let s = 0; s < mdp.S; s++) gap = Math.max(gap, Math.abs(Vsoft[s] - ev.V[s]));
    policy = improved;
    // Stop at the fixed point, or when rounding stops the gap from shrinking any further.
    if (gap <= tol || (gap <= 1e3 * tol && gap >= prevGap)) {
      converged = true;
      break;
    }
    prevGap = gap;
  }
  return finish(mdp, Q, alpha, gamma, it, converged);
}

/** Dispatch by method name ('vi' forces α = 0). */
export function solveMdp(mdp: FiniteMdp, method: SolveMethod, opts: SolveOptions): SolveResult {
  switch (method) {
    case 'spi':
      return softPolicyIteration(mdp, opts);
    case 'svi':
      return softValueIteration(mdp, opts);
    case 'vi':
      return hardValueIteration(mdp, opts);
    default:
      throw new Error(`unknown method '${method as string}' (spi, svi or vi)`);
  }
}
