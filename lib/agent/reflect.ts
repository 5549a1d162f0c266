/**
 * ReflectAgent: the Stateful Reflective Decision Process of Memento-II (docs/math.md §4–§7,
 * §13). Its decision is a *retrieval action*: which past case to reflect on, or the void case
 * c∅ ("act from the prior's own knowledge"); the action then comes from the case-conditioned
 * kernel p(a | s, c). So π_M(a | s) = Σ_c π(c | s, M) · p(a | s, c).
 *
 * Per step in state s:
 *   1. retrieve the top-M cases for enc(s) (keys of states, not state–action pairs);
 *   2. the Parzen prior with the void case μ(c | s, M) (§4), κ∅ fixed or from a learned gate;
 *   3. Q(s, c) for each candidate from a kernel memory over (state, case) keys;
 *   4. π(c | s) ∝ μ(c | s) · exp(Q(s, c)/α) and V(s) = α log Σ μ exp(Q/α) (§5, native klImprove);
 *   5. sample c (argmax when evaluating), then a ~ p(a | s, c).
 * Learning (§7): soft TD on Q(s, c) with target r + γ V(s') on the fast clock (written at the
 * end of the episode through the near-duplicate merge rule, whose rate is the TD step size);
 * cases (s_t, a_t, G_t) are written to memory on the slow clock.
 *
 * The case-conditioned kernel without a model is the paper's "naive LLM" limit, which reduces
 * to episodic control: the case's action projected onto the admissible actions (exact match,
 * else the most similar admissible action by the action encoder), mixed with the prior:
 *   p(a | s, c) = (1 − β) δ(a = proj(a_c)) + β μ(a | s),     p(a | s, c∅) = μ(a | s).
 * With conditioning 'prompt', p(a | s, c) is the prior scored on a prompt that carries the
 * retrieved case before the current state (caseConditionedState), for model priors trained on
 * such prompts.
 *
 * When to use memory (Mem-π's question, in SRDP terms the void case's mass): with gate
 * 'learned', κ∅(s) = κ0 · (1 − g(s)) / g(s) with g(s) = σ(θ · f(s)), a logistic gate on the
 * memory's confidence, the distance to the nearest case and the spread of Q over the
 * candidates, trained on whether reflecting on a case did better than acting from the prior.
 */
import * as fs from 'fs';
import * as path from 'path';
import { EpisodicMemory } from '../memory/episodic';
import type { MergeRule } from '../memory/types';
import { parzenPrior } from '../policy/parzen';
import { discountedReturns } from '../policy/returns';
import { Mulberry32 } from '../policy/rng';
import { klImprove } from '../retrieval';
import { pairText, type Encoder } from '../encoders/types';
import type { Prior } from '../llm/prior';
import { AgentRng } from '../policy/agentRng';
import { CASE_RETRIEVAL_DEFAULTS, caseConditionedState, caseMemory } from '../train/caseCorpus';

/** The prompt format shared with `memq model pretrain` (lib/train/caseCorpus.ts). */
export { caseConditionedState };
import type { Agent, EpisodeRecord, Mode, StepContext } from './types';
import { stepRows } from './stepRows';
import { GREEDY_TIE_TOLERANCE } from '../policy/memq';
import type { EStepSource, MemEm } from '../train/memEm';

export interface ReflectOptions {
  /** enc(s): keys of the case memory and the state half of Q's keys. */
  stateEncoder: Encoder;
  /** enc(s_c ⊕ a_c): the case half of Q's keys. */
  caseEncoder: Encoder;
  /** Projects a case's action onto the admissible actions when no exact match exists. */
  actionEncoder: Encoder;
  prior: Prior;
  /** KL temperature α over retrieval actions (§5). */
  alpha: number;
  /** Top-M cases per step. */
  m: number;
  /** κ0: the void case's kernel score (the fixed κ∅, and the gate's midpoint). */
  voidWeight: number;
  gamma: number;
  /** Gaussian bandwidth of the case memory (state keys). */
  bandwidth: number;
  /** Gaussian bandwidth of the Q memory ((state, case) keys). */
  qBandwidth: number;
  /** Q(s, c) for a (state, case) pair with nothing nearby in the Q memory. */
  qInit: number;
  /** Fast-clock TD step size (the merge rate of the Q memory: a constant, 'average' = 1/n, or {power: p} = 1/n^p). */
  tdRate: MergeRule['rate'];
  /** β: the prior's share in p(a | s, c) for a retrieved case. */
  priorMix: number;
  conditioning: 'project' | 'prompt';
  gate: 'fixed' | 'learned';
  gateLr: number;
  /**
   * ε: while training, the retrieval action is drawn from μ(c|s) with probability ε and from
   * π(c|s) otherwise, so every option with prior mass keeps being tried (soft Q-learning's
   * backup is off-policy; a never-tried option's Q would stay wherever it started).
   */
  explore: number;
  /** Case memory capacity (replay). */
  capacity: number;
  /** Write cases on the slow clock (false: memory frozen, e.g. for the exact tabular check). */
  writeCases: boolean;
  seed: number;
}

export const REFLECT_DEFAULTS = {
  alpha: 0.1,
  // m, voidWeight, gamma, bandwidth: the retrieval the case-conditioned pretraining corpus uses
  m: CASE_RETRIEVAL_DEFAULTS.m,
  voidWeight: CASE_RETRIEVAL_DEFAULTS.voidWeight,
  gamma: CASE_RETRIEVAL_DEFAULTS.gamma,
  bandwidth: CASE_RETRIEVAL_DEFAULTS.bandwidth,
  qBandwidth: 0.3,
  qInit: 0,
  tdRate: 0.5 as MergeRule['rate'],
  priorMix: 0.1,
  conditioning: 'project' as 'project' | 'prompt',
  gate: 'fixed' as 'fixed' | 'learned',
  gateLr: 0.1,
  explore: 0.1,
  capacity: 50_000,
};

/** One retrieval decision in a state: candidates, their prior and Q, the policy over them. */
export interface RetrievalChoice {
  /** Case ids of the candidates (−1 is the void case, always last). */
  ids: Int32Array;
  mu: Float64Array;
  q: Float32Array;
  policy: Float32Array;
  /** V(s) = α log Σ μ exp(Q/α). */
  value: number;
  /** Distance from enc(s) to the nearest case (Infinity with an empty memory). */
  nearest: number;
  /** Gate features and output (g = 1 − share of the void case's weight). */
  features: number[];
  gate: number;
  /** Q keys of the candidates, (n + 1) × (dS + dC). */
  qKeys: Float32Array;
}

interface StepTrace {
  qKey: Float32Array;
  q: number;
  reward: number;
  target?: number;
  usedMemory: boolean;
  features: number[];
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

export class ReflectAgent implements Agent {
  readonly name = 'reflect';
  cases: EpisodicMemory;
  qmem: EpisodicMemory;
  private rng: AgentRng;
  private readonly voidVec: Float32Array;
  private readonly dS: number;
  private readonly dC: number;
  private trace: StepTrace[] = [];
  private last: RetrievalChoice | null = null;
  private lastChosen = -1;
  /** Gate weights θ over [1, confidence, nearest distance, Q spread]. */
  theta = [0, 0, 0, 0];
  /** Mem-EM on the prior (MATH §11, a model prior and em.every > 0): its E-step target is π_M. */
  em: MemEm | null = null;
  /** Running mean returns of steps that acted from memory and from the void case (gate labels). */
  private meanMem = { sum: 0, n: 0 };
  private meanVoid = { sum: 0, n: 0 };
  private statsAcc = { memorySteps: 0, steps: 0, nearestSum: 0, nearestN: 0 };
  private evalAcc = { steps: 0, memorySteps: 0, nearestSum: 0, nearestMax: 0, nearestN: 0 };

  constructor(readonly opts: ReflectOptions) {
    this.dS = opts.stateEncoder.dim;
    this.dC = opts.caseEncoder.dim;
    this.cases = caseMemory(this.dS, opts.bandwidth, opts.capacity);
    this.qmem = this.newQMemory();
    this.rng = new AgentRng(opts.seed);
    // The void case's half of a Q key: a fixed random unit vector (no case text encodes to it).
    const r = new Mulberry32(0x5eed ^ this.dC);
    this.voidVec = new Float32Array(this.dC);
    let n2 = 0;
    for (let i = 0; i < this.dC; i++) n2 += (this.voidVec[i] = r.normal()) ** 2;
    for (let i = 0; i < this.dC; i++) this.voidVec[i] /= Math.sqrt(n2);
  }

  private newQMemory(): EpisodicMemory {
    return new EpisodicMemory({
      dim: this.dS + this.dC,
      kernel: { kernel: 'gaussian', bandwidth: this.opts.qBandwidth },
      policy: { kind: 'replay', capacity: 4 * this.opts.capacity },
      merge: { epsilon: 1e-4, rate: this.opts.tdRate },
    });
  }

  /** κ∅(s) from the gate: κ0 (fixed), or κ0 · (1 − g)/g with g = σ(θ · f). */
  private voidWeightFor(features: number[]): { kappa: number; gate: number } {
    if (this.opts.gate === 'fixed') return { kappa: this.opts.voidWeight, gate: NaN };
    let z = 0;
    for (let i = 0; i < features.length; i++) z += this.theta[i] * features[i];
    const g = Math.min(1 - 1e-6, Math.max(1e-6, sigmoid(z)));
    return { kappa: (this.opts.voidWeight * (1 - g)) / g, gate: g };
  }

  /** The retrieval decision's quantities in state s (reads only; no learning). */
  async retrieve(state: string): Promise<RetrievalChoice> {
    const xs = await this.opts.stateEncoder.encode([state]);
    const m = this.opts.m;
    let ids: Int32Array = new Int32Array(0);
    let kern: Float32Array = new Float32Array(0);
    let nearest = Infinity;
    if (this.cases.size > 0) {
      const hits = await this.cases.searchAuto(xs, m);
      ids = hits.ids;
      kern = hits.kernel;
      if (hits.ids[0] >= 0) nearest = Math.sqrt(Math.max(0, hits.dist2[0]));
    }
    const caseIds: number[] = [];
    for (let j = 0; j < ids.length; j++) if (ids[j] >= 0) caseIds.push(ids[j]);
    const n = caseIds.length;
    // Q keys: [enc(s) · √½ ; enc(s_c ⊕ a_c) · √½] for each case, the void vector for c∅.
    const d = this.dS + this.dC;
    const qKeys = new Float32Array((n + 1) * d);
    const h = Math.SQRT1_2;
    const caseTexts = caseIds.map((id) => {
      const c = this.cases.getCase(id)!;
      return pairText(c.state, c.action);
    });
    const caseVecs = n ? await this.opts.caseEncoder.encode(caseTexts) : new Float32Array(0);
    for (let i = 0; i <= n; i++) {
      for (let k = 0; k < this.dS; k++) qKeys[i * d + k] = xs[k] * h;
      const src = i < n ? caseVecs.subarray(i * this.dC, (i + 1) * this.dC) : this.voidVec;
      for (let k = 0; k < this.dC; k++) qKeys[i * d + this.dS + k] = src[k] * h;
    }
    let q: Float32Array;
    if (this.qmem.size > 0) {
      // A tiny void weight: Q falls back to qInit where no (state, case) pair is near.
      q = (await this.qmem.estimateAuto(qKeys, 4, { voidWeight: 1e-6, voidValue: this.opts.qInit })).value;
    } else {
      q = new Float32Array(n + 1).fill(this.opts.qInit);
    }
    let sumK = 0;
    for (let j = 0; j < ids.length; j++) if (ids[j] >= 0) sumK += kern[j];
    let qmin = Infinity;
    let qmax = -Infinity;
    for (let i = 0; i < n; i++) {
      qmin = Math.min(qmin, q[i]);
      qmax = Math.max(qmax, q[i]);
    }
    const features = [1, sumK / (sumK + this.opts.voidWeight), Number.isFinite(nearest) ? nearest : 2, n ? qmax - qmin : 0];
    const { kappa, gate } = this.voidWeightFor(features);
    const prior = parzenPrior(ids, kern, kappa);
    const mu = new Float64Array(n + 1);
    mu.set(prior.caseProbs);
    mu[n] = prior.voidProb;
    const logPrior = Float32Array.from(mu, (p) => (p > 0 ? Math.log(p) : -Infinity));
    const { policy, value } = klImprove({ logPrior, q, rows: 1, cols: n + 1, alpha: this.opts.alpha });
    return { ids: Int32Array.from([...caseIds, -1]), mu, q, policy, value: value[0], nearest, features, gate, qKeys };
  }

  /** The prompt p(a | s, c) scores: the state, or with conditioning 'prompt' the state carrying case c. */
  private promptFor(state: string, caseId: number): string {
    return caseId >= 0 && this.opts.conditioning === 'prompt' ? caseConditionedState(state, this.caseOf(caseId)) : state;
  }

  /** p(a | s, c) over the admissible actions for candidate i of a retrieval choice. */
  async actionKernel(state: string, actions: string[], caseId: number): Promise<Float64Array> {
    const mu = normalizedMu(await this.opts.prior.logPrior(this.promptFor(state, caseId), actions));
    if (caseId < 0 || this.opts.conditioning === 'prompt') return mu;
    const j = await this.project(this.caseOf(caseId).action, actions);
    const beta = this.opts.priorMix;
    const p = mu.map((x) => beta * x);
    p[j] += 1 - beta;
    return p;
  }

  private caseOf(id: number): { state: string; action: string; value: number } {
    const c = this.cases.getCase(id);
    if (!c) throw new Error(`reflect: case ${id} is not in memory`);
    return c;
  }

  /** The admissible action a case's action maps to: exact match, else the most similar by the action encoder. */
  async project(action: string, actions: string[]): Promise<number> {
    const exact = actions.indexOf(action);
    if (exact >= 0) return exact;
    const d = this.opts.actionEncoder.dim;
    const v = await this.opts.actionEncoder.encode([action, ...actions]);
    let best = 0;
    let bestDot = -Infinity;
    for (let i = 0; i < actions.length; i++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += v[k] * v[(i + 1) * d + k];
      if (dot > bestDot) {
        bestDot = dot;
        best = i;
      }
    }
    return best;
  }

  /**
   * π_M(a | s) = Σ_c π(c | s, M) p(a | s, c) over each state's admissible actions: the agent's
   * marginal action policy with memory as it stands (reads only: no learning, no RNG draw). The
   * E-step target of Mem-EM on this agent's prior.
   */
  async actionPolicyMany(items: { state: string; actions: string[] }[]): Promise<Float64Array[]> {
    const choices: RetrievalChoice[] = [];
    for (const it of items) choices.push(await this.retrieve(it.state));
    const out = items.map((it) => new Float64Array(it.actions.length));
    // Every prompt the policy puts mass on is scored in one batched prior call: with 'prompt'
    // one per (state, candidate), with 'project' only the void prompt of each state.
    const prompt = this.opts.conditioning === 'prompt';
    const reqs: { state: string; actions: string[]; k: number; i: number }[] = [];
    items.forEach((it, k) => {
      if (!prompt) return void reqs.push({ state: it.state, actions: it.actions, k, i: -1 });
      choices[k].ids.forEach((id, i) => {
        if (choices[k].policy[i] > 0) reqs.push({ state: this.promptFor(it.state, id), actions: it.actions, k, i });
      });
    });
    const lps = await logPriorMany(this.opts.prior, reqs);
    const beta = this.opts.priorMix;
    for (let r = 0; r < reqs.length; r++) {
      const { k, i } = reqs[r];
      const mu = normalizedMu(lps[r]);
      const pi = out[k];
      if (prompt) {
        for (let a = 0; a < pi.length; a++) pi[a] += choices[k].policy[i] * mu[a];
        continue;
      }
      // project: p(a | s, c) = (1 − β) δ(a = proj(a_c)) + β μ(a | s), p(a | s, c∅) = μ(a | s)
      const c = choices[k];
      let onMu = 0;
      for (let j = 0; j < c.ids.length; j++) {
        const w = c.policy[j];
        if (!(w > 0)) continue;
        if (c.ids[j] < 0) {
          onMu += w;
          continue;
        }
        onMu += beta * w;
        pi[await this.project(this.caseOf(c.ids[j]).action, items[k].actions)] += (1 - beta) * w;
      }
      for (let a = 0; a < pi.length; a++) pi[a] += onMu * mu[a];
    }
    return out;
  }

  /** Mem-EM on this agent's prior (runner's slow clock): the E-step target is π_M (actionPolicyMany). */
  memEm(): { em: MemEm; source: EStepSource } | null {
    if (!this.em) return null;
    return { em: this.em, source: { actionPolicyMany: (items) => this.actionPolicyMany(items) } };
  }

  events(): Record<string, unknown>[] {
    return this.em ? (this.em.drainEvents() as unknown as Record<string, unknown>[]) : [];
  }

  async act(ctx: StepContext, mode: Mode): Promise<number> {
    const r = await this.retrieve(ctx.state);
    // Fast clock of the previous step: its TD target uses V(s') of this state (§7).
    if (mode === 'train' && this.trace.length && this.trace[this.trace.length - 1].target === undefined) {
      const p = this.trace[this.trace.length - 1];
      p.target = p.reward + this.opts.gamma * r.value;
    }
    const i = mode === 'eval' ? this.rng.argmax(r.policy, GREEDY_TIE_TOLERANCE) : this.rng.next() < this.opts.explore ? this.rng.categorical(r.mu) : this.rng.categorical(r.policy);
    const caseId = r.ids[i];
    const p = await this.actionKernel(ctx.state, ctx.admissible, caseId);
    const a = mode === 'train' ? this.rng.categorical(p) : this.rng.argmax(p, 1e-9);
    this.last = r;
    this.lastChosen = i;
    const acc = mode === 'train' ? this.statsAcc : this.evalAcc;
    acc.steps++;
    if (caseId >= 0) acc.memorySteps++;
    if (Number.isFinite(r.nearest)) {
      acc.nearestSum += r.nearest;
      acc.nearestN++;
      if (mode === 'eval') this.evalAcc.nearestMax = Math.max(this.evalAcc.nearestMax, r.nearest);
    }
    return a;
  }

  async observe(_ctx: StepContext, _actionIndex: number, reward: number, next: StepContext | null): Promise<void> {
    const r = this.last;
    if (!r) return;
    const d = this.dS + this.dC;
    const i = this.lastChosen;
    this.trace.push({
      qKey: r.qKeys.slice(i * d, (i + 1) * d),
      q: r.q[i],
      reward,
      usedMemory: r.ids[i] >= 0,
      features: r.features,
      ...(next === null ? { target: reward } : {}),
    });
    this.last = null;
  }

  async endEpisode(ep: EpisodeRecord): Promise<void> {
    const trace = this.trace;
    this.trace = [];
    if (ep.steps.length === 0) return;
    const G = discountedReturns(ep.steps.map((s) => s.reward), this.opts.gamma);
    // Fast clock: soft-TD targets of the retrieval actions taken (demonstrations have none).
    if (ep.source === 'train' && trace.length) {
      const cases = trace.map((t) => ({ key: t.qKey, value: t.target ?? t.reward + this.opts.gamma * t.q }));
      await this.qmem.write(cases);
      if (this.opts.gate === 'learned') this.trainGate(trace, G);
    }
    // Slow clock: the episode's steps become cases.
    if (this.opts.writeCases) {
      const keys = await this.opts.stateEncoder.encode(ep.steps.map((s) => s.state));
      await this.cases.writeRows(keys, G, { ...stepRows(ep), time: Date.now() });
    }
  }

  /** One pass of logistic regression: did reflecting on a case beat acting from the prior? */
  private trainGate(trace: StepTrace[], G: ArrayLike<number>): void {
    trace.forEach((t, k) => {
      const acc = t.usedMemory ? this.meanMem : this.meanVoid;
      acc.sum += G[k] ?? 0;
      acc.n++;
    });
    const mMem = this.meanMem.n ? this.meanMem.sum / this.meanMem.n : 0;
    const mVoid = this.meanVoid.n ? this.meanVoid.sum / this.meanVoid.n : 0;
    trace.forEach((t, k) => {
      const g = G[k] ?? 0;
      // helped: memory did better than the void case does on average, or the void case did worse than memory does
      const y = t.usedMemory ? (g > mVoid ? 1 : 0) : g < mMem ? 1 : 0;
      let z = 0;
      for (let i = 0; i < t.features.length; i++) z += this.theta[i] * t.features[i];
      const err = y - sigmoid(z);
      for (let i = 0; i < t.features.length; i++) this.theta[i] += this.opts.gateLr * err * t.features[i];
    });
  }

  memorySize(): number {
    return this.cases.size;
  }

  rngState(): number {
    return this.rng.state;
  }

  setRngState(state: number): void {
    this.rng.state = state >>> 0;
  }

  stats(): Record<string, number> {
    const a = this.statsAcc;
    const s: Record<string, number> = {
      memoryShare: a.steps ? a.memorySteps / a.steps : 0,
      meanNearest: a.nearestN ? a.nearestSum / a.nearestN : NaN,
      qMemory: this.qmem.size,
    };
    if (this.opts.gate === 'learned') s.gateBias = this.theta[0];
    this.statsAcc = { memorySteps: 0, steps: 0, nearestSum: 0, nearestN: 0 };
    return s;
  }

  /**
   * Reflection statistics of the evaluation steps since the last call: the share of steps that
   * acted from a retrieved case and the empirical coverage radius ε(M) (§13): the largest and the
   * mean distance from an evaluation state to its nearest case.
   */
  evalStats(): Record<string, number> {
    const a = this.evalAcc;
    const s = {
      memoryShare: a.steps ? a.memorySteps / a.steps : 0,
      coverageRadius: a.nearestN ? a.nearestMax : NaN,
      meanNearest: a.nearestN ? a.nearestSum / a.nearestN : NaN,
    };
    this.evalAcc = { steps: 0, memorySteps: 0, nearestSum: 0, nearestMax: 0, nearestN: 0 };
    return s;
  }

  async save(dir: string): Promise<void> {
    fs.mkdirSync(dir, { recursive: true });
    this.cases.save(path.join(dir, 'cases'));
    this.qmem.save(path.join(dir, 'q'));
    fs.writeFileSync(
      path.join(dir, 'agent.json'),
      JSON.stringify({ name: this.name, rng: this.rng.state, theta: this.theta, meanMem: this.meanMem, meanVoid: this.meanVoid }),
    );
    if (this.em) await this.em.save(path.join(dir, 'em'));
  }

  async load(dir: string): Promise<void> {
    this.cases = EpisodicMemory.load(path.join(dir, 'cases'));
    this.qmem = EpisodicMemory.load(path.join(dir, 'q'));
    const st = JSON.parse(fs.readFileSync(path.join(dir, 'agent.json'), 'utf8'));
    this.rng.state = st.rng >>> 0;
    this.theta = st.theta;
    this.meanMem = st.meanMem;
    this.meanVoid = st.meanVoid;
    if (this.em) {
      const emDir = path.join(dir, 'em');
      if (!fs.existsSync(path.join(emDir, 'em.json'))) throw new Error(`${dir}: the checkpoint has no Mem-EM state (em/em.json) but the run uses Mem-EM`);
      await this.em.load(emDir);
    }
  }
}

/** μ over the admissible actions from log μ, normalised in float64 (uniform when all mass is 0). */
function normalizedMu(lp: ArrayLike<number>): Float64Array {
  const mu = Float64Array.from(lp, (x) => Math.exp(x));
  let z = 0;
  for (const x of mu) z += x;
  for (let i = 0; i < mu.length; i++) mu[i] = z > 0 ? mu[i] / z : 1 / mu.length;
  return mu;
}

/** log μ for many (prompt, actions) pairs: one batched call when the prior has logPriorMany. */
function logPriorMany(prior: Prior, items: { state: string; actions: string[] }[]): Promise<ArrayLike<number>[]> {
  if (prior.logPriorMany) return prior.logPriorMany(items);
  return Promise.all(items.map((it) => prior.logPrior(it.state, it.actions)));
}
