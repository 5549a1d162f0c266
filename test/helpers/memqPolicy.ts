/**
 * The float64 reference of Mem-Q's action choice (MATH §10), for tests (it was
 * lib/policy/memq.ts's MemQPolicy; the library's agents act through lib/policy/klImprove.ts's
 * improvePolicy, the native kernel). For the admissible actions a_1..a_K of a state s, read
 * Q̂(s, a_j) by the kernel-weighted value with the void case (§3) at keys enc(s ⊕ a_j), then
 * π(a | s) ∝ μ(a | s) exp(Q̂(s, a)/α) (§5) with μ the LLM prior (uniform when there is none).
 * Sample while training, argmax (the first on ties) when evaluating. Cold start is the void case:
 * λ ≈ 0, π ≈ μ. `act` computes π in float64 (klImproveRow); `actBatch` through the library's
 * native improvePolicy, so tests can hold one against the other.
 */
import { improvePolicy, klImproveRow } from '../../lib/policy/klImprove';
import { stateActionText } from '../../lib/policy/memq';
import { Mulberry32 } from '../../lib/policy/rng';

/** Anything that reads Q̂ for a batch of keys (MemoryIndex, EpisodicMemory). */
export interface ValueReader {
  estimate(
    queries: Float32Array,
    m: number,
    opts?: { voidWeight?: number; voidValue?: number },
  ): Promise<{ value: Float32Array; confidence: Float32Array }>;
}

/** Text → keys (n × d Float32Array), e.g. a frozen sentence encoder. */
export type KeyEncoder = (texts: string[]) => Float32Array | Promise<Float32Array>;

export type ActMode = 'sample' | 'argmax';

export interface MemQOptions {
  /** KL temperature α ≥ 0. */
  alpha: number;
  /** Top-M cases per read. */
  m: number;
  /** κ∅, the void case's kernel score. */
  voidWeight: number;
  /** q∅, the void case's value (default 0). */
  voidValue?: number;
  /** Default mode (sample). */
  mode?: ActMode;
  /** Seed of the sampling RNG. */
  seed?: number;
}

export interface MemQChoice {
  index: number;
  action: string;
  /** π(a|s) over the admissible actions. */
  policy: Float64Array;
  /** Q̂(s, a) per action. */
  q: Float64Array;
  /** λ(s ⊕ a) per action. */
  confidence: Float64Array;
  /** Soft value V(s) = α log Σ μ exp(Q̂/α). */
  value: number;
}

/** π from Q̂ and μ (§5); μ uniform when absent. */
export function memQPolicy(q: ArrayLike<number>, alpha: number, prior?: ArrayLike<number>): { policy: Float64Array; value: number } {
  const n = q.length;
  const mu = prior ?? new Float64Array(n).fill(1 / n);
  if (mu.length !== n) throw new RangeError(`prior has ${mu.length} entries, expected ${n} (one per action)`);
  const policy = new Float64Array(n);
  const value = klImproveRow(mu, 0, q, 0, n, alpha, policy);
  return { policy, value };
}

/** Sample from π, or take its argmax (the first on ties). */
export function pickAction(policy: ArrayLike<number>, mode: ActMode, rng: Mulberry32): number {
  if (mode === 'argmax') {
    let best = 0;
    for (let i = 1; i < policy.length; i++) if (policy[i] > policy[best]) best = i;
    return best;
  }
  return rng.categorical(policy);
}

export class MemQPolicy {
  private readonly rng: Mulberry32;

  constructor(
    private readonly reader: ValueReader,
    private readonly encode: KeyEncoder,
    readonly options: MemQOptions,
  ) {
    if (!(options.alpha >= 0)) throw new RangeError(`alpha must be >= 0, got ${options.alpha}`);
    if (!(Number.isInteger(options.m) && options.m >= 1)) throw new RangeError(`m must be an integer >= 1, got ${options.m}`);
    if (!(options.voidWeight >= 0)) throw new RangeError(`voidWeight must be >= 0, got ${options.voidWeight}`);
    this.rng = new Mulberry32(options.seed ?? 1);
  }

  /** Q̂ and λ for every admissible action of a state: one encoder call, one batched read. */
  async actionValues(state: string, actions: string[]): Promise<{ q: Float64Array; confidence: Float64Array }> {
    const keys = await this.encode(actions.map((a) => stateActionText(state, a)));
    const est = await this.reader.estimate(keys, this.options.m, {
      voidWeight: this.options.voidWeight,
      voidValue: this.options.voidValue ?? 0,
    });
    return { q: Float64Array.from(est.value), confidence: Float64Array.from(est.confidence) };
  }

  /**
   * Choose actions for many states at once: one encoder call, one batched memory read and one
   * (native) KL-improvement call over the ragged rows (improvePolicy). Policies are float32 here.
   */
  async actBatch(
    items: { state: string; actions: string[]; prior?: ArrayLike<number> }[],
    mode?: ActMode,
  ): Promise<MemQChoice[]> {
    const texts: string[] = [];
    items.forEach((it, r) => {
      if (it.actions.length === 0) throw new RangeError(`actBatch: item ${r} has no admissible actions`);
      if (it.prior && it.prior.length !== it.actions.length) throw new RangeError(`actBatch: item ${r} prior has ${it.prior.length} entries, expected ${it.actions.length}`);
      for (const a of it.actions) texts.push(stateActionText(it.state, a));
    });
    const keys = await this.encode(texts);
    const est = await this.reader.estimate(keys, this.options.m, {
      voidWeight: this.options.voidWeight,
      voidValue: this.options.voidValue ?? 0,
    });
    const imp = improvePolicy(
      items.map((it, r) => {
        const n = it.actions.length;
        const prefix = items.slice(0, r).reduce((k, x) => k + x.actions.length, 0);
        return {
          logPrior: Array.from({ length: n }, (_, a) => {
            const mu = it.prior ? it.prior[a] : 1 / n;
            return mu > 0 ? Math.log(mu) : -Infinity;
          }),
          q: est.value.subarray(prefix, prefix + n),
        };
      }),
      this.options.alpha,
    );
    let off = 0;
    return items.map((it, r) => {
      const n = it.actions.length;
      const policy = Float64Array.from(imp.policy[r]);
      const index = pickAction(policy, mode ?? this.options.mode ?? 'sample', this.rng);
      const choice: MemQChoice = {
        index,
        action: it.actions[index],
        policy,
        q: Float64Array.from(est.value.subarray(off, off + n)),
        confidence: Float64Array.from(est.confidence.subarray(off, off + n)),
        value: imp.value[r],
      };
      off += n;
      return choice;
    });
  }

  /** Choose an action. `prior` is μ(a|s) over `actions` (uniform when absent). */
  async act(state: string, actions: string[], opts: { prior?: ArrayLike<number>; mode?: ActMode } = {}): Promise<MemQChoice> {
    if (actions.length === 0) throw new RangeError('act: no admissible actions');
    const { q, confidence } = await this.actionValues(state, actions);
    const { policy, value } = memQPolicy(q, this.options.alpha, opts.prior);
    const index = pickAction(policy, opts.mode ?? this.options.mode ?? 'sample', this.rng);
    return { index, action: actions[index], policy, q, confidence, value };
  }
}
