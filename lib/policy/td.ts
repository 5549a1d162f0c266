/**
 * Two-time-scale learning from samples (MATH §7, Memento-II eq. 14–16).
 *  - fast clock, every step: soft TD  Q(s,a) ← Q(s,a) + η [r + γ V(s') − Q(s,a)],
 *    V(s') = α log Σ μ(a'|s') exp(Q(s',a')/α) (§5; 0 at terminal states);
 *  - policy (fast): π from §5 with the current Q;
 *  - memory (slow), every K steps: the (s, a) pairs touched since the last rewrite are written
 *    to memory, which merges them into its stored values at its own, slower rate β
 *    (Σ η = ∞, Σ η² < ∞, β/η → 0).
 */
import { klImproveRow } from './klImprove';
import { Mulberry32 } from './rng';

/**
 * One soft TD step on the fast clock (MATH §7): δ = r + γ V(s') − Q(s, a) (V(s') = 0 at a terminal
 * state or past the horizon), Q ← Q + η δ. The one implementation, used by the tabular learner
 * below and by MemQAgent's per-step TD target (lib/agent/memq.ts).
 */
export function softTdStep(q: number, reward: number, gamma: number, nextValue: number, eta: number): { q: number; delta: number } {
  const delta = reward + gamma * nextValue - q;
  return { q: q + eta * delta, delta };
}

export interface Transition {
  state: string;
  action: number;
  reward: number;
  next: string;
  /** Number of admissible actions in the next state. */
  nextActions: number;
  /** μ(·|s') over the next state's actions (uniform when absent). */
  nextPrior?: ArrayLike<number>;
  terminal: boolean;
}

export interface SoftTdOptions {
  alpha: number;
  gamma: number;
  /** Fast step size from the pair's update count n = 1, 2, ... Default 1 / n^0.7. */
  eta?: (n: number) => number;
}

/** Tabular soft Q on the fast clock, keyed by a state id and an action index. */
export class SoftTdLearner {
  private readonly table = new Map<string, { q: Float64Array; n: Uint32Array }>();
  readonly alpha: number;
  readonly gamma: number;
  private readonly eta: (n: number) => number;

  constructor(opts: SoftTdOptions) {
    if (!(opts.alpha >= 0)) throw new RangeError(`alpha must be >= 0, got ${opts.alpha}`);
    if (!(opts.gamma >= 0 && opts.gamma < 1)) throw new RangeError(`gamma must be in [0, 1), got ${opts.gamma}`);
    this.alpha = opts.alpha;
    this.gamma = opts.gamma;
    this.eta = opts.eta ?? ((n) => 1 / Math.pow(n, 0.7));
  }

  private row(state: string, nActions: number): { q: Float64Array; n: Uint32Array } {
    let r = this.table.get(state);
    if (!r) {
      r = { q: new Float64Array(nActions), n: new Uint32Array(nActions) };
      this.table.set(state, r);
    } else if (r.q.length !== nActions) {
      throw new RangeError(`state '${state}' had ${r.q.length} actions, now ${nActions}`);
    }
    return r;
  }

  /** Q(s, ·) (a live view; zeros for a new state). */
  q(state: string, nActions: number): Float64Array {
    return this.row(state, nActions).q;
  }

  /** Soft value and π(·|s) of the current Q (§5). */
  policy(state: string, nActions: number, prior?: ArrayLike<number>): { policy: Float64Array; value: number } {
    const q = this.row(state, nActions).q;
    const mu = prior ?? new Float64Array(nActions).fill(1 / nActions);
    const policy = new Float64Array(nActions);
    const value = klImproveRow(mu, 0, q, 0, nActions, this.alpha, policy);
    return { policy, value };
  }

  /** One soft TD update; returns the TD error (before the step). */
  update(t: Transition, nActions: number): number {
    const r = this.row(t.state, nActions);
    const v = t.terminal ? 0 : this.policy(t.next, t.nextActions, t.nextPrior).value;
    const n = ++r.n[t.action];
    const step = softTdStep(r.q[t.action], t.reward, this.gamma, v, this.eta(n));
    r.q[t.action] = step.q;
    return step.delta;
  }

  states(): string[] {
    return [...this.table.keys()];
  }
}

/** The slow side: something that merges (state, action, value) triples into memory. */
export interface SlowMemoryWriter {
  rewrite(batch: { states: string[]; actions: number[]; values: Float64Array; tdErrors: Float64Array }): Promise<void>;
}

export interface TwoTimeScaleOptions extends SoftTdOptions {
  /** Memory rewrite period in steps (the slow clock). */
  K: number;
  /** Seed for the behaviour policy. */
  seed?: number;
  /**
   * Exploration: act from (1 − ε) π + ε μ. Soft TD is off-policy (the target uses the soft value,
   * not the action taken), so any behaviour with the support of μ converges; ε > 0 keeps
   * actions whose Q is far below the best visited. Default 0.
   */
  epsilon?: number;
}

export class TwoTimeScaleLearner {
  readonly fast: SoftTdLearner;
  readonly K: number;
  readonly epsilon: number;
  private readonly rng: Mulberry32;
  private steps = 0;
  private rewrites = 0;
  private readonly touched = new Map<string, { state: string; action: number; nActions: number; tdError: number }>();

  constructor(
    private readonly memory: SlowMemoryWriter,
    opts: TwoTimeScaleOptions,
  ) {
    if (!(Number.isInteger(opts.K) && opts.K >= 1)) throw new RangeError(`K must be an integer >= 1, got ${opts.K}`);
    this.fast = new SoftTdLearner(opts);
    this.K = opts.K;
    this.epsilon = opts.epsilon ?? 0;
    if (!(this.epsilon >= 0 && this.epsilon <= 1)) throw new RangeError(`epsilon must be in [0, 1], got ${this.epsilon}`);
    this.rng = new Mulberry32(opts.seed ?? 1);
  }

  /** Sample an action from the fast policy π ∝ μ exp(Q/α), mixed with μ by ε. */
  act(state: string, nActions: number, prior?: ArrayLike<number>): number {
    const pi = this.fast.policy(state, nActions, prior).policy;
    if (this.epsilon > 0) {
      for (let a = 0; a < nActions; a++) pi[a] = (1 - this.epsilon) * pi[a] + this.epsilon * (prior ? prior[a] : 1 / nActions);
    }
    return this.rng.categorical(pi);
  }

  /** Fast update now; a memory rewrite every K steps. */
  async observe(t: Transition, nActions: number): Promise<number> {
    const delta = this.fast.update(t, nActions);
    this.touched.set(`${t.state}\u0000${t.action}`, { state: t.state, action: t.action, nActions, tdError: Math.abs(delta) });
    if (++this.steps % this.K === 0) await this.flush();
    return delta;
  }

  /** Write the pairs touched since the last rewrite into memory (one batch). */
  async flush(): Promise<void> {
    if (this.touched.size === 0) return;
    const entries = [...this.touched.values()];
    this.touched.clear();
    const values = new Float64Array(entries.length);
    const tdErrors = new Float64Array(entries.length);
    entries.forEach((e, i) => {
      values[i] = this.fast.q(e.state, e.nActions)[e.action];
      tdErrors[i] = e.tdError;
    });
    this.rewrites++;
    await this.memory.rewrite({ states: entries.map((e) => e.state), actions: entries.map((e) => e.action), values, tdErrors });
  }

  get stepCount(): number {
    return this.steps;
  }

  get rewriteCount(): number {
    return this.rewrites;
  }
}
