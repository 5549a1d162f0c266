/**
 * MemQAgent (MATH §10, with §3-§5 and §7-§8): Q̂(s, a) read from episodic memory at keys
 * enc(s ⊕ a) with the void case, combined with the prior μ(a|s) by the native KL improvement
 * π ∝ μ exp(Q̂/α); sample while training, argmax when evaluating. Fast clock: a soft-TD target
 * per step, r + γ V(s') with V from §5 (computed when acting in s', so it costs nothing extra).
 * Slow clock: at the end of each episode, write one case per step with the chosen target
 * (Monte-Carlo return G_t, the TD target, or their mean) through the memory's write policy and
 * near-duplicate merge rule (§8).
 */
import * as fs from 'fs';
import * as path from 'path';
import { EpisodicMemory } from '../memory/episodic';
import type { MergeRule, WritePolicy } from '../memory/types';
import type { TrustOptions } from '../memory/trust';
import type { KernelSettings } from '../policy/kernels';
import { chooseAction, stateActionText } from '../policy/memq';
import { signWrite, writerKeyOf } from '../memory/provenance';
import { discountedReturns } from '../policy/returns';
import type { BandwidthRule } from '../policy/bandwidth';
import { improvePolicy } from '../policy/klImprove';
import { softTdStep } from '../policy/td';
import { encodePairBatch, encodePairs, type Encoder } from '../encoders/types';
import type { Prior } from '../llm/prior';
import type { EStepSource, MemEm } from '../train/memEm';
import { AgentRng } from '../policy/agentRng';
import type { Agent, EpisodeRecord, Mode, StepContext } from './types';
import { stepRows } from './stepRows';

export interface MemQAgentOptions {
  encoder: Encoder;
  prior: Prior;
  /** KL temperature α (MATH §5). */
  alpha: number;
  /** Top-M cases per read. */
  m: number;
  /** κ∅, the void case's kernel score (MATH §3). */
  voidWeight: number;
  /** q∅, the void case's value. */
  voidValue: number;
  gamma: number;
  kernel: KernelSettings;
  /** Gaussian bandwidth rule re-applied after every episode's write (MATH §9); 'fixed' keeps kernel.bandwidth. */
  bandwidth: BandwidthRule;
  policy: WritePolicy;
  merge?: MergeRule;
  /** Fast-clock step size η of the TD target. */
  tdRate: number;
  /** What a step's case stores: the Monte-Carlo return, the soft-TD target, or their mean. */
  target: 'mc' | 'td' | 'mix';
  seed: number;
  /** Trust policy of the memory's reads and writes (docs/trust.md); absent: none (native fast path). */
  trust?: TrustOptions;
}

export const MEMQ_DEFAULTS = {
  alpha: 0.1,
  m: 16,
  voidWeight: 0.02,
  voidValue: 0,
  gamma: 0.95,
  kernel: { kernel: 'gaussian', bandwidth: 0.4 } as KernelSettings,
  bandwidth: { rule: 'fixed' } as BandwidthRule,
  policy: { kind: 'replay', capacity: 50_000 } as WritePolicy,
  merge: { epsilon: 0.05, rate: 0.5 } as MergeRule,
  tdRate: 0.5,
  target: 'mc' as const,
};

interface Pending {
  step: number;
  q: number;
  reward: number;
}

export class MemQAgent implements Agent {
  readonly name = 'memq';
  readonly memory: EpisodicMemory;
  private rng: AgentRng;
  private tdTargets = new Map<number, number>();
  private tdErrors = new Map<number, number>();
  private pending: Pending | null = null;
  private lastChoice: { q: number; value: number; confidence: number } | null = null;
  private confSum = 0;
  private confCount = 0;
  /** Mem-EM (MATH §11), when the prior is a model and it is switched on: refines the prior's LoRA. */
  em: MemEm | null = null;
  /** True once useMemory gave this agent a memory it shares with others (lib/scale/shared.ts). */
  private sharedMemory = false;

  constructor(readonly opts: MemQAgentOptions) {
    this.memory = new EpisodicMemory({ dim: opts.encoder.dim, kernel: opts.kernel, policy: opts.policy, merge: opts.merge, trust: opts.trust });
    this.rng = new AgentRng(opts.seed);
    this.#writerKey = writerKeyOf(opts.trust?.authenticate);
  }

  /** Authenticated provenance (trust.authenticate): the agent signs its own writes. */
  #writerKey: Buffer | null;

  /**
   * Use `memory` (a SharedMemory's replica: writes go to the shared log) instead of the agent's
   * own. Its bandwidth must stay fixed (a per-actor kernel change would fork the replicas), and
   * a resumed checkpoint keeps it instead of loading the saved copy.
   */
  useMemory(memory: EpisodicMemory): void {
    if (this.opts.bandwidth.rule !== 'fixed') throw new RangeError(`a shared memory needs a fixed bandwidth (memq.bandwidthRule 'fixed'), got '${this.opts.bandwidth.rule}'`);
    (this as { memory: EpisodicMemory }).memory = memory;
    this.sharedMemory = true;
  }

  get alpha(): number {
    return this.opts.alpha;
  }

  /** Q̂ and its confidence λ for keys of (state, action) pairs: one batched read with the void case. */
  private async estimateKeys(keys: Float32Array, n: number): Promise<{ value: Float32Array; confidence: Float32Array }> {
    return this.memory.size
      ? this.memory.estimateAuto(keys, this.opts.m, { voidWeight: this.opts.voidWeight, voidValue: this.opts.voidValue })
      : { value: new Float32Array(n).fill(this.opts.voidValue), confidence: new Float32Array(n) };
  }

  /** Q̂(s, a) and its confidence λ over the admissible actions (one encoder call, one batched read). */
  async estimate(state: string, actions: string[]): Promise<{ value: Float32Array; confidence: Float32Array }> {
    return this.estimateKeys(await encodePairs(this.opts.encoder, state, actions), actions.length);
  }

  /** Q̂ over the admissible actions of many states in one batched read (the E-step of Mem-EM). */
  async estimateQMany(items: { state: string; actions: string[] }[]): Promise<Float32Array[]> {
    const d = this.opts.encoder.dim;
    const parts = await Promise.all(items.map((it) => encodePairs(this.opts.encoder, it.state, it.actions)));
    const n = items.reduce((k, it) => k + it.actions.length, 0);
    const keys = new Float32Array(n * d);
    let o = 0;
    for (const p of parts) {
      keys.set(p, o * d);
      o += p.length / d;
    }
    const { value } = await this.estimateKeys(keys, n);
    let k = 0;
    return items.map((it) => value.slice(k, (k += it.actions.length)));
  }

  /**
   * Q̂, λ and π over the admissible actions of a state. A prior that fuses its scoring with §5
   * (`Prior.improve`: the model prior, one native call) gets Q̂ from the memory read first;
   * otherwise the memory read and the prior run concurrently, then π and V(s) from §5
   * (improvePolicy, the native kernel; the prior's Float32Array goes in as it is).
   */
  async evaluate(state: string, actions: string[]) {
    const prior = this.opts.prior;
    if (prior.improve && actions.length > 0) {
      const est = await this.estimate(state, actions);
      const r = await prior.improve(state, actions, est.value, this.opts.alpha);
      return { q: est.value, confidence: est.confidence, policy: r.policy, value: r.value };
    }
    const [est, logPrior] = await Promise.all([this.estimate(state, actions), prior.logPrior(state, actions)]);
    const { policy, value } = improvePolicy([{ logPrior, q: est.value }], this.opts.alpha);
    return { q: est.value, confidence: est.confidence, policy: policy[0], value: value[0] };
  }

  async act(ctx: StepContext, mode: Mode): Promise<number> {
    const e = await this.evaluate(ctx.state, ctx.admissible);
    // The fast clock for the previous step: its TD target uses V(s') of this state (MATH §7).
    if (mode === 'train' && this.pending) this.finishTd(this.pending, e.value);
    const idx = chooseAction(e.policy, mode, this.rng);
    this.lastChoice = { q: e.q[idx], value: e.value, confidence: e.confidence[idx] };
    if (mode === 'train') {
      // meanConfidence is a training statistic: evaluation games leave it alone (and an
      // evaluation resumed from its per-game records, not replayed, cannot shift it)
      this.confSum += e.confidence[idx];
      this.confCount++;
    }
    return idx;
  }

  private finishTd(p: Pending, nextValue: number): void {
    const { q, delta } = softTdStep(p.q, p.reward, this.opts.gamma, nextValue, this.opts.tdRate);
    this.tdTargets.set(p.step, q);
    this.tdErrors.set(p.step, Math.abs(delta));
    this.pending = null;
  }

  async observe(ctx: StepContext, _actionIndex: number, reward: number, next: StepContext | null): Promise<void> {
    if (!this.lastChoice) return;
    const p = { step: ctx.step, q: this.lastChoice.q, reward };
    if (next === null) this.finishTd(p, 0); // terminal (or truncated: no bootstrap beyond the horizon)
    else this.pending = p;
  }

  async endEpisode(ep: EpisodeRecord): Promise<void> {
    this.pending = null;
    if (ep.steps.length === 0) return;
    const G = discountedReturns(ep.steps.map((s) => s.reward), this.opts.gamma);
    const keys = await encodePairBatch(this.opts.encoder, ep.steps);
    const T = ep.steps.length;
    const values = new Float64Array(T);
    const tdError = new Float64Array(T);
    for (let t = 0; t < T; t++) {
      const td = this.tdTargets.get(t);
      values[t] = this.opts.target === 'mc' || td === undefined ? G[t] : this.opts.target === 'td' ? td : 0.5 * (G[t] + td);
      tdError[t] = this.tdErrors.get(t) ?? Math.abs(G[t]);
    }
    this.tdTargets.clear();
    this.tdErrors.clear();
    const rows = stepRows(ep);
    const mac = this.#writerKey ? signWrite(this.#writerKey, keys, values, rows.source as string) : undefined;
    await this.memory.writeRows(keys, values, { ...rows, time: Date.now(), tdError }, mac ? { mac } : undefined);
    if (this.opts.kernel.kernel === 'gaussian' && this.opts.bandwidth.rule !== 'fixed' && this.memory.size > 1) {
      this.memory.setBandwidth(this.opts.bandwidth);
    }
  }

  /**
   * Mem-EM on the slow clock (the runner runs a round after endEpisode, every K training
   * episodes): its state, and what its E-step reads from this agent (Q̂ over many states' actions
   * from memory just written, and α). Mem-EM does not see the agent itself.
   */
  memEm(): { em: MemEm; source: EStepSource } | null {
    if (!this.em) return null;
    return { em: this.em, source: { alpha: this.opts.alpha, estimateQMany: (items) => this.estimateQMany(items) } };
  }

  events(): Record<string, unknown>[] {
    return this.em ? (this.em.drainEvents() as unknown as Record<string, unknown>[]) : [];
  }

  memorySize(): number {
    return this.memory.size;
  }

  rngState(): number {
    return this.rng.state;
  }

  setRngState(state: number): void {
    this.rng.state = state >>> 0;
  }

  stats(): Record<string, number> {
    const s = { meanConfidence: this.confCount ? this.confSum / this.confCount : 0, bandwidth: Number(this.memory.kernel.bandwidth ?? NaN) };
    this.confSum = 0;
    this.confCount = 0;
    return s;
  }

  async save(dir: string): Promise<void> {
    fs.mkdirSync(dir, { recursive: true });
    this.memory.save(path.join(dir, 'memory'));
    fs.writeFileSync(path.join(dir, 'agent.json'), JSON.stringify({ name: this.name, rng: this.rng.state }));
    if (this.em) await this.em.save(path.join(dir, 'em'));
  }

  async load(dir: string): Promise<void> {
    if (!this.sharedMemory) (this as { memory: EpisodicMemory }).memory = EpisodicMemory.load(path.join(dir, 'memory'), { trust: this.opts.trust });
    const st = JSON.parse(fs.readFileSync(path.join(dir, 'agent.json'), 'utf8'));
    this.rng.state = st.rng >>> 0;
    if (this.em) {
      const emDir = path.join(dir, 'em');
      if (!fs.existsSync(path.join(emDir, 'em.json'))) throw new Error(`${dir}: the checkpoint has no Mem-EM state (em/em.json) but the run uses Mem-EM`);
      await this.em.load(emDir);
    }
  }
}
