/**
 * Mem-EM (MATH §11): memory refines the LLM prior, the prior drives exploration.
 *
 * Every `every` training episodes:
 *  - E-step: for a sample of recently visited states s (with their admissible actions), the
 *    target q(a | s) ∝ p_θ(a | s) · exp(Q̂(s, a) / α), where p_θ is the current prior (base model +
 *    LoRA) and Q̂ the agent's kernel estimate from episodic memory (§3) — exactly the policy the
 *    agent acts with (§5, through the same native kernel: improvePolicy, lib/policy/klImprove.ts).
 *    Alternatives for the weight (§11): normalised exp(Q̂/α) ('expq') or the clipped advantage
 *    max(0, Q̂ − V) with V the soft value ('adv').
 *  - M-step: `steps` LoRA steps (AdamW), with one of two losses:
 *    'mle' (MATH §11 as written): L(θ) = −Σ_(s,a) w(s,a) Σ_t∈tokens(a) log p_θ(a_t | prompt(s), a_<t),
 *      one packed sequence per (s, a) with w(s, a) ≥ minWeight; prompt tokens weight 0. It
 *      maximises E_q log p_θ(a | s) over all strings, so with a small model much of a step moves
 *      mass between admissible and inadmissible continuations rather than among the admissible
 *      actions μ normalises over.
 *    'kl' (default): the exact gradient of mean_s KL(q(·|s) ‖ μ_θ(·|s)) with μ_θ normalised over
 *      the admissible set as the prior computes it (length normalisation and τ included). Since
 *      ∂KL/∂score_a = (μ_a − q_a)/τ and score_a = Σ_t log p_t / L_a, it is the same weighted
 *      cross-entropy with signed per-token weights (q_a − μ_a)/(τ L_a) (LossNorm 'sum'), μ
 *      re-scored before every step.
 *
 * The adapter is the prior's (ModelPrior.lora), updated in place, so the next episode acts with
 * the refined prior. Each M-step reports KL(q ‖ p_θ) over its states before and after, which
 * the M-step should lower. Everything (adapter, AdamW moments, state pool, RNG) is saved with the
 * agent's checkpoint, so an interrupted run resumes to the same result.
 */
import * as fs from 'fs';
import * as path from 'path';
import { LoraAdapter, LoraTrainer } from '../llm/lora';
import type { ModelPrior } from '../llm/modelPrior';
import { Mulberry32 } from '../policy/rng';
import { improvePolicy } from '../policy/klImprove';
import { softmax } from '../policy/logSumExp';
import type { EpisodeRecord } from '../episode/types';

export interface MemEmConfig {
  /** Run an E/M step every K training episodes (0: Mem-EM off). */
  every: number;
  /** LoRA optimizer steps per M-step. */
  steps: number;
  /** States per LoRA step. */
  states: number;
  /** Most recent distinct visited states kept for the E-step. */
  pool: number;
  weight: 'q' | 'expq' | 'adv';
  /** M-step loss: 'kl' (gradient of KL(q ‖ μ_θ) over the admissible set) or 'mle' (weighted MLE, §11). */
  loss: 'kl' | 'mle';
  /** (s, a) pairs whose weight is below this carry too little loss to be worth a sequence. */
  minWeight: number;
  r: number;
  loraAlpha: number;
  targets: string[];
  lr: number;
  weightDecay: number;
  clipNorm: number;
}

export const MEM_EM_DEFAULTS: MemEmConfig = {
  every: 0,
  steps: 4,
  states: 16,
  pool: 4000,
  weight: 'q',
  loss: 'kl',
  minWeight: 0.01,
  r: 8,
  loraAlpha: 16,
  targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  lr: 5e-4,
  weightDecay: 0,
  clipNorm: 1,
};

/**
 * What an agent gives the E-step. Mem-Q (MemQAgent): Q̂(s, ·) over the admissible actions of
 * many states (§3, one batched read) and its α (§5); the target is q ∝ p_θ exp(Q̂/α). An agent
 * whose action policy is not of that form (ReflectAgent: π_M(a | s) = Σ_c π(c | s) p(a | s, c))
 * gives that policy itself: the target is q = π_M(· | s), the agent's own marginal action
 * policy with memory, distilled into the prior (weight 'q' only).
 */
export type EStepSource = QEStepSource | PolicyEStepSource;

export interface QEStepSource {
  estimateQMany(items: { state: string; actions: string[] }[]): Promise<Float32Array[]>;
  readonly alpha: number;
}

export interface PolicyEStepSource {
  /** π(· | s) over each state's admissible actions (non-negative; normalised by the E-step). */
  actionPolicyMany(items: { state: string; actions: string[] }[]): Promise<ArrayLike<number>[]>;
}

export interface MemEmEvent {
  kind: 'em';
  /** Training episodes done when the M-step ran. */
  episode: number;
  round: number;
  states: number;
  pairs: number;
  tokens: number;
  /** Mean over the E-step's states of KL(q ‖ p_θ) before and after the M-step. */
  klBefore: number;
  klAfter: number;
  loss: number;
  gradNorm: number;
  seconds: number;
}

export interface EStepTarget {
  state: string;
  actions: string[];
  /** Training weight per action (0 for dropped ones). */
  weights: Float64Array;
  /** The E-step posterior q(a | s) (for the KL diagnostics). */
  q: Float64Array;
  /** log μ_θ(a | s) at the E-step's θ. */
  logPrior: Float32Array;
}

/** Mean over targets of KL(q ‖ μ) with log μ given per target. */
function meanKl(targets: EStepTarget[], logPriors: ArrayLike<number>[]): number {
  let s = 0;
  targets.forEach((t, i) => (s += klDivergence(t.q, logPriors[i])));
  return targets.length ? s / targets.length : 0;
}

/** KL(q ‖ p) with log p given (terms with q = 0 contribute 0). */
export function klDivergence(q: ArrayLike<number>, logP: ArrayLike<number>): number {
  let kl = 0;
  for (let i = 0; i < q.length; i++) if (q[i] > 0) kl += q[i] * (Math.log(q[i]) - logP[i]);
  return kl;
}

/**
 * The weights of §11 for one state from Q̂, the current log prior and α. The posterior
 * q ∝ p exp(Q̂/α) and the soft value V = α log Σ p exp(Q̂/α) are the agent's π and V (§5,
 * improvePolicy: the native kernel the agent acts with, α = 0 its greedy limit), with π
 * normalised again in float64 — the distribution AgentRng.categorical draws from. Then
 * 'q' → q, 'expq' → softmax(Q̂/α) (α = 0: softmax(Q̂)), 'adv' → max(0, Q̂ − V).
 */
export function emWeights(qhat: ArrayLike<number>, logPrior: ArrayLike<number>, alpha: number, kind: MemEmConfig['weight']): { weights: Float64Array; q: Float64Array } {
  const { policy, value } = improvePolicy([{ logPrior, q: qhat }], alpha);
  return weightsOf(qhat, policy[0], value[0], alpha, kind);
}

/** emWeights from the state's π and V (computed for many states in one kernel call by the E-step). */
function weightsOf(qhat: ArrayLike<number>, policy: ArrayLike<number>, v: number, alpha: number, kind: MemEmConfig['weight']): { weights: Float64Array; q: Float64Array } {
  const n = qhat.length;
  let z = 0;
  for (let i = 0; i < n; i++) z += policy[i];
  const q = new Float64Array(n);
  for (let i = 0; i < n; i++) q[i] = policy[i] / z;
  if (kind === 'q') return { weights: Float64Array.from(q), q };
  if (kind === 'expq') return { weights: softmax(qhat, alpha > 0 ? alpha : 1), q };
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = Math.max(0, qhat[i] - v);
  return { weights: w, q };
}

/** Mem-EM state: the pool of visited states, the adapter on the prior, its trainer. */
export class MemEm {
  private pool = new Map<string, string[]>(); // state text -> admissible actions (insertion order = recency)
  private rng: Mulberry32; // sampleStates draws only int(): the base generator's stream (as AgentRng's)
  private trainer: LoraTrainer;
  private adapter: LoraAdapter;
  private trainEpisodes = 0;
  private round = 0;
  private pending: MemEmEvent[] = [];

  constructor(readonly config: MemEmConfig, readonly prior: ModelPrior, seed: number) {
    validateMemEm(config);
    this.adapter = LoraAdapter.create(prior.model, { r: config.r, alpha: config.loraAlpha, targetModules: config.targets }, seed);
    this.trainer = new LoraTrainer(prior.model, this.adapter, {
      lr: config.lr, weightDecay: config.weightDecay, clipNorm: config.clipNorm, lossNorm: config.loss === 'kl' ? 'sum' : 'weightSum',
    });
    prior.lora = this.adapter;
    this.rng = new Mulberry32(seed ^ 0x5eed);
  }

  get lora(): LoraAdapter {
    return this.adapter;
  }

  /** Remembers an episode's states (demos too); returns true when an E/M step is due. */
  observe(ep: EpisodeRecord): boolean {
    for (const s of ep.steps) {
      if (s.admissible.length < 2) continue;
      this.pool.delete(s.state);
      this.pool.set(s.state, s.admissible);
    }
    while (this.pool.size > this.config.pool) this.pool.delete(this.pool.keys().next().value as string);
    if (ep.source !== 'train') return false;
    this.trainEpisodes++;
    return this.config.every > 0 && this.trainEpisodes % this.config.every === 0;
  }

  /** Samples states from the pool (without replacement while it lasts). */
  sampleStates(n: number): { state: string; actions: string[] }[] {
    const entries = [...this.pool.entries()];
    const out: { state: string; actions: string[] }[] = [];
    for (let i = 0; i < n && entries.length; i++) {
      const j = this.rng.int(entries.length);
      out.push({ state: entries[j][0], actions: entries[j][1] });
      entries[j] = entries[entries.length - 1];
      entries.pop();
    }
    return out;
  }

  /** E-step targets for given states from the agent's memory and the current prior (one batched call each). */
  async eStep(source: EStepSource, states: { state: string; actions: string[] }[]): Promise<EStepTarget[]> {
    if ('actionPolicyMany' in source) return this.policyEStep(source, states);
    const [logPriors, qhats] = await Promise.all([this.prior.logPriorMany(states), source.estimateQMany(states)]);
    const { policy, value } = improvePolicy(states.map((_, i) => ({ logPrior: logPriors[i], q: qhats[i] })), source.alpha);
    return states.map(({ state, actions }, i) => {
      const { weights, q } = weightsOf(qhats[i], policy[i], value[i], source.alpha, this.config.weight);
      for (let a = 0; a < weights.length; a++) if (weights[a] < this.config.minWeight) weights[a] = 0;
      return { state, actions, weights, q, logPrior: logPriors[i] };
    });
  }

  /** E-step targets q = the agent's own action policy (PolicyEStepSource), normalised in float64. */
  private async policyEStep(source: PolicyEStepSource, states: { state: string; actions: string[] }[]): Promise<EStepTarget[]> {
    if (this.config.weight !== 'q') throw new RangeError(`em.weight '${this.config.weight}' needs Q̂ over actions; an agent that gives its action policy (reflect) takes em.weight 'q'`);
    const [logPriors, pols] = await Promise.all([this.prior.logPriorMany(states), source.actionPolicyMany(states)]);
    return states.map(({ state, actions }, i) => {
      const p = pols[i];
      if (p.length !== actions.length) throw new RangeError(`E-step: the action policy of state ${i} has ${p.length} entries for ${actions.length} actions`);
      let z = 0;
      for (let a = 0; a < p.length; a++) {
        if (!(p[a] >= 0 && Number.isFinite(p[a]))) throw new RangeError(`E-step: the action policy of state ${i} has entry ${a} = ${p[a]} (must be finite and >= 0)`);
        z += p[a];
      }
      const q = new Float64Array(p.length);
      for (let a = 0; a < p.length; a++) q[a] = z > 0 ? p[a] / z : 1 / p.length;
      const weights = Float64Array.from(q, (x) => (x < this.config.minWeight ? 0 : x));
      return { state, actions, weights, q, logPrior: logPriors[i] };
    });
  }

  /** The 'mle' loss's sequences: prompt (weight 0) + action tokens (weight w(s, a)), w = 0 dropped. */
  sequences(targets: EStepTarget[]): { seqs: number[][]; weights: number[][] } {
    return this.packed(targets, (t, k) => t.weights[k]);
  }

  /**
   * The 'kl' loss's sequences for μ_θ given as log μ per target (default: re-scored now): every
   * admissible action, per-token weight (q_a − μ_a)/(τ L_a) (or (q_a − μ_a)/τ without length
   * normalisation), over the number of states. Returns the mean KL(q ‖ μ_θ) at that θ too.
   */
  async klSequences(targets: EStepTarget[], logPriors?: Float32Array[]): Promise<{ seqs: number[][]; weights: number[][]; kl: number }> {
    const lp = logPriors ?? (await this.scoreTargets(targets));
    const scale = this.prior.temperature * targets.length;
    const { seqs, weights } = this.packed(targets, (t, k, n, i) => {
      const g = (t.q[k] - Math.exp(lp[i][k])) / (scale * (this.prior.lengthNormalize ? n : 1));
      return Math.abs(g) > 1e-7 ? g : 0;
    });
    return { seqs, weights, kl: meanKl(targets, lp) };
  }

  private packed(targets: EStepTarget[], weight: (t: EStepTarget, k: number, nTokens: number, i: number) => number): { seqs: number[][]; weights: number[][] } {
    const seqs: number[][] = [];
    const weights: number[][] = [];
    targets.forEach((t, i) => {
      const one = this.prior.trainingSequences(t.state, t.actions, (k, n) => weight(t, k, n, i));
      seqs.push(...one.seqs);
      weights.push(...one.weights);
    });
    return { seqs, weights };
  }

  private scoreTargets(targets: EStepTarget[]): Promise<Float32Array[]> {
    return this.prior.logPriorMany(targets.map((t) => ({ state: t.state, actions: t.actions })));
  }

  /** Mean KL(q ‖ μ_θ) over targets at the current θ. */
  async meanKl(targets: EStepTarget[]): Promise<number> {
    return meanKl(targets, await this.scoreTargets(targets));
  }

  /** One E/M round: targets for steps × states sampled states, then `steps` LoRA steps. */
  async run(source: EStepSource, episode: number): Promise<MemEmEvent | null> {
    const t0 = Date.now();
    const states = this.sampleStates(this.config.steps * this.config.states);
    if (!states.length) return null;
    const targets = await this.eStep(source, states);
    // θ has not moved since the E-step scored these states: its log μ serve until the first step
    const klBefore = meanKl(targets, targets.map((t) => t.logPrior));
    let pairs = 0, tokens = 0, loss = 0, gradNorm = 0, taken = 0;
    for (let s = 0; s < this.config.steps; s++) {
      const part = targets.slice(s * this.config.states, (s + 1) * this.config.states);
      if (!part.length) continue;
      let seqs: number[][], weights: number[][], objective = NaN;
      if (this.config.loss === 'kl') ({ seqs, weights, kl: objective } = await this.klSequences(part, taken === 0 ? part.map((t) => t.logPrior) : undefined));
      else ({ seqs, weights } = this.sequences(part));
      if (!seqs.length) continue;
      pairs += seqs.length;
      tokens += seqs.reduce((n, q) => n + q.length, 0);
      await this.trainer.accumulate(seqs, weights);
      const st = await this.trainer.step();
      // the loss reported: the weighted NLL ('mle'), or KL(q ‖ μ_θ) on the step's states before it ('kl')
      loss += this.config.loss === 'kl' ? objective : st.loss;
      gradNorm += st.gradNorm;
      taken++;
    }
    const klAfter = taken ? await this.meanKl(targets) : klBefore;
    const ev: MemEmEvent = {
      kind: 'em', episode, round: ++this.round, states: targets.length, pairs, tokens, klBefore, klAfter,
      loss: taken ? loss / taken : 0, gradNorm: taken ? gradNorm / taken : 0, seconds: (Date.now() - t0) / 1000,
    };
    this.pending.push(ev);
    return ev;
  }

  /** Events since the last call (the runner writes them to metrics.jsonl). */
  drainEvents(): MemEmEvent[] {
    const e = this.pending;
    this.pending = [];
    return e;
  }

  async save(dir: string): Promise<void> {
    fs.mkdirSync(dir, { recursive: true });
    this.adapter.save(path.join(dir, 'adapter'));
    const st = await this.trainer.getState();
    fs.writeFileSync(path.join(dir, 'adam-m.f32'), Buffer.from(st.m.buffer, st.m.byteOffset, st.m.byteLength));
    fs.writeFileSync(path.join(dir, 'adam-v.f32'), Buffer.from(st.v.buffer, st.v.byteOffset, st.v.byteLength));
    fs.writeFileSync(path.join(dir, 'em.json'), JSON.stringify({
      version: 1, t: st.t, rng: this.rng.state, trainEpisodes: this.trainEpisodes, round: this.round, pool: [...this.pool.entries()],
    }));
  }

  async load(dir: string): Promise<void> {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'em.json'), 'utf8'));
    if (meta.version !== 1) throw new Error(`${dir}/em.json: unknown version ${meta.version}`);
    const loaded = await LoraAdapter.load(path.join(dir, 'adapter'), this.prior.model);
    await this.adapter.setParams(loaded.getParams());
    const f32 = (f: string) => {
      const b = fs.readFileSync(path.join(dir, f));
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    };
    await this.trainer.setState({ m: f32('adam-m.f32'), v: f32('adam-v.f32'), t: meta.t });
    this.rng.state = meta.rng >>> 0;
    this.trainEpisodes = meta.trainEpisodes;
    this.round = meta.round;
    this.pool = new Map(meta.pool);
  }
}

export function validateMemEm(c: MemEmConfig): void {
  const int = (name: string, v: unknown, lo: number, hi: number) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`em.${name} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  };
  const num = (name: string, v: unknown, lo: number, hi: number, openLo = false) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (openLo && v === lo)) {
      throw new RangeError(`em.${name} must be a number in ${openLo ? '(' : '['}${lo}, ${hi}], got ${JSON.stringify(v)}`);
    }
  };
  int('every', c.every, 0, 1e7);
  int('steps', c.steps, 1, 1e5);
  int('states', c.states, 1, 1e5);
  int('pool', c.pool, 1, 1e7);
  if (!['q', 'expq', 'adv'].includes(c.weight)) throw new RangeError(`em.weight must be 'q', 'expq' or 'adv', got ${JSON.stringify(c.weight)}`);
  if (!['kl', 'mle'].includes(c.loss)) throw new RangeError(`em.loss must be 'kl' or 'mle', got ${JSON.stringify(c.loss)}`);
  if (c.loss === 'kl' && c.weight !== 'q') throw new RangeError(`em.loss 'kl' fits μ_θ to the E-step posterior q; em.weight '${c.weight}' needs em.loss 'mle'`);
  num('minWeight', c.minWeight, 0, 1);
  int('r', c.r, 1, 4096);
  num('loraAlpha', c.loraAlpha, 0, 1e6, true);
  if (!Array.isArray(c.targets) || c.targets.length === 0 || c.targets.some((t) => typeof t !== 'string')) {
    throw new RangeError('em.targets must be a non-empty array of module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)');
  }
  num('lr', c.lr, 0, 1, true);
  num('weightDecay', c.weightDecay, 0, 1);
  num('clipNorm', c.clipNorm, 0, 1e6);
}
