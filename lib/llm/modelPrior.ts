/**
 * ModelPrior: μ(a | s) from a language model (MATH §5, §10). Each admissible action is scored
 * as log p(action tokens | prompt(s)) in one batched call that shares the prompt's K/V, then
 * normalised over the admissible set: log μ(a_j | s) = score_j − logsumexp_k score_k.
 *
 * The hot path (one call per agent step): the prompt is tokenised once per call, each action's
 * tokens come from a bounded LRU cache keyed by the action string (admissible sets repeat from
 * step to step), and the engine's scoring job normalises the scores and (given Q̂ and α, `improve`)
 * computes MATH §5's π and V too — one native crossing per step, no copies of the scores.
 */
import { logSumExp } from '../policy/logSumExp';
import type { LlmModel } from './model';
import type { LoraAdapter } from './lora';
import type { Prior, PriorImprovement } from './prior';
import type { TextTokenizer } from './tokenizer';
import { pairPrompt } from '../encoders/pairFormat';

export interface ModelPriorOptions {
  /** Divide each action's log-probability by its token count before normalising. */
  lengthNormalize?: boolean;
  /** How the state becomes the prompt (default: pairPrompt, the state text then the pair separator). */
  prompt?: (state: string) => string;
  /** Temperature τ on the scores before normalising (default 1). */
  temperature?: number;
  /**
   * A token id appended to every action (the tokenizer's end-of-text token), so that an action
   * which is a prefix of another ("go to cabinet 1" / "go to cabinet 10") is not favoured for
   * being shorter: the model must also predict that the action ends. Priors trained by
   * `memq model pretrain` are trained this way.
   */
  endToken?: number;
  /** A LoRA adapter applied while scoring (Mem-EM updates it in place between episodes). */
  lora?: LoraAdapter;
  /**
   * Distinct action strings whose token ids are kept (least recently used evicted first);
   * default ACTION_TOKEN_CACHE_SIZE, 0 turns the cache off.
   */
  actionTokenCache?: number;
}

/**
 * Default size of a prior's action-token cache: distinct action strings. The household games
 * offer a few dozen admissible actions per state and a few thousand distinct ones over a split;
 * an entry is a short array of token ids.
 */
export const ACTION_TOKEN_CACHE_SIZE = 4096;

/**
 * What every language-model prior shares: the prompt and action token ids, the end token, length
 * normalisation and temperature, and log μ(a_j | s) = score_j/τ − logsumexp_k score_k/τ over the
 * admissible set. A subclass supplies `scoreMany`: log p(action tokens | prompt) per candidate,
 * summed or (lengthNormalize) averaged over the candidate's tokens.
 */
export abstract class TokenizedPrior implements Prior {
  abstract readonly name: string;
  /** action string → its token ids (frozen); Map order is recency, oldest first. */
  private readonly actionCache = new Map<string, readonly number[]>();
  private readonly actionCacheSize: number;
  constructor(readonly tokenizer: TextTokenizer, protected readonly opts: ModelPriorOptions = {}) {
    const c = opts.actionTokenCache ?? ACTION_TOKEN_CACHE_SIZE;
    if (!(Number.isInteger(c) && c >= 0)) throw new RangeError(`actionTokenCache must be an integer >= 0 (distinct actions kept), got ${c}`);
    this.actionCacheSize = c;
    const t = opts.temperature ?? 1;
    if (!(t > 0 && Number.isFinite(t))) throw new RangeError(`temperature must be a finite number > 0, got ${t}`);
    const e = opts.endToken;
    if (e !== undefined && !(Number.isInteger(e) && e >= 0 && e < tokenizer.vocabSize)) {
      throw new RangeError(`endToken must be a token id in [0, ${tokenizer.vocabSize}), got ${e}`);
    }
  }

  /** Whether scores are mean (true) or summed (false) token log-probabilities. */
  get lengthNormalize(): boolean {
    return this.opts.lengthNormalize ?? true;
  }

  /** τ: log μ = score/τ − logsumexp. */
  get temperature(): number {
    return this.opts.temperature ?? 1;
  }

  /** The prompt's token ids for a state. */
  promptTokens(state: string): number[] {
    const prompt = this.tokenizer.encode((this.opts.prompt ?? pairPrompt)(state));
    if (prompt.length === 0) throw new RangeError('the prompt of a state must not tokenize to nothing');
    return prompt;
  }

  /**
   * An action's token ids (with the end token when the prior has one), from the cache when the
   * action string was seen recently. The array is shared and frozen: copy it to change it.
   */
  actionTokens(action: string): readonly number[] {
    const hit = this.actionCache.get(action);
    if (hit) {
      // most recently used goes last
      this.actionCache.delete(action);
      this.actionCache.set(action, hit);
      return hit;
    }
    const ids = this.tokenizer.encode(action);
    if (ids.length === 0) throw new RangeError(`action '${action}' tokenizes to nothing`);
    if (this.opts.endToken !== undefined) ids.push(this.opts.endToken);
    const frozen = Object.freeze(ids);
    if (this.actionCacheSize > 0) {
      if (this.actionCache.size >= this.actionCacheSize) this.actionCache.delete(this.actionCache.keys().next().value as string);
      this.actionCache.set(action, frozen);
    }
    return frozen;
  }

  /**
   * log p(candidate tokens | prompt) for every candidate of every prompt (one array per prompt).
   * A Float32Array returned here belongs to the caller, which normalises it in place.
   */
  protected abstract scoreMany(prompts: number[][], candidates: (readonly number[])[][]): Promise<ArrayLike<number>[]>;

  async logPrior(state: string, actions: string[]): Promise<Float32Array> {
    return (await this.logPriorMany([{ state, actions }]))[0];
  }

  /** log μ(· | s) for many states in one batched call (the E-step of Mem-EM). */
  async logPriorMany(items: { state: string; actions: string[] }[]): Promise<Float32Array[]> {
    const live = items.filter((it) => it.actions.length > 0);
    const out = live.length ? await this.normalizedScores(...this.tokenize(live)) : [];
    let k = 0;
    return items.map((it) => (it.actions.length === 0 ? new Float32Array(0) : out[k++]));
  }

  /** The prompt's and each action's token ids for many states (actions from the cache). */
  protected tokenize(items: { state: string; actions: string[] }[]): [number[][], (readonly number[])[][]] {
    return [items.map((it) => this.promptTokens(it.state)), items.map((it) => it.actions.map((a) => this.actionTokens(a)))];
  }

  /**
   * log μ = score/τ − logsumexp(score/τ) over each prompt's candidates. Here in JS for scorers
   * whose scores live in JS (node-llama-cpp's); memq's own engine does it in its native scoring
   * job (ModelPrior).
   */
  protected async normalizedScores(prompts: number[][], candidates: (readonly number[])[][]): Promise<Float32Array[]> {
    const scores = await this.scoreMany(prompts, candidates);
    const tau = this.temperature;
    return scores.map((sc) => {
      const lse = logSumExp(sc, tau);
      // a Float32Array from the scorer (the caller's) is normalised in place; other arrays into a new one
      const out = sc instanceof Float32Array ? sc : new Float32Array(sc.length);
      for (let j = 0; j < sc.length; j++) out[j] = sc[j] / tau - lse;
      return out;
    });
  }
}

/** The prior from memq's own transformer engine (LoRA-trainable: Mem-EM). */
export class ModelPrior extends TokenizedPrior {
  readonly name = 'model';
  /** The adapter scoring uses (null: the base model). */
  lora: LoraAdapter | null;
  constructor(
    readonly model: LlmModel,
    tokenizer: TextTokenizer,
    opts: ModelPriorOptions = {},
  ) {
    super(tokenizer, opts);
    this.lora = opts.lora ?? null;
  }

  /**
   * Training sequences in the prior's format for actions of one state: prompt(s) (tokenized once)
   * then each action's tokens (and end token), with per-token loss weights: `actionWeight(k, n)`
   * on the n tokens of action k (a zero weight drops the action), `promptWeight` on the prompt's
   * tokens (its first token, which has no prediction, always 0).
   */
  trainingSequences(
    state: string, actions: string[], actionWeight: (k: number, nTokens: number) => number, promptWeight = 0,
  ): { seqs: number[][]; weights: number[][] } {
    const p = this.promptTokens(state);
    const pw = p.map((_, i) => (i === 0 ? 0 : promptWeight));
    const seqs: number[][] = [];
    const weights: number[][] = [];
    actions.forEach((action, k) => {
      const a = this.actionTokens(action);
      const w = actionWeight(k, a.length);
      if (w === 0 || Number.isNaN(w)) return;
      seqs.push([...p, ...a]);
      weights.push([...pw, ...a.map(() => w)]);
    });
    return { seqs, weights };
  }

  protected scoreMany(prompts: number[][], candidates: (readonly number[])[][]): Promise<Float32Array[]> {
    return this.model.score(prompts, candidates, { lengthNormalize: this.lengthNormalize, lora: this.lora ?? undefined });
  }

  /** log μ from the engine's scoring job itself (memq::prior_improve without Q̂). */
  protected override normalizedScores(prompts: number[][], candidates: (readonly number[])[][]): Promise<Float32Array[]> {
    return this.model.score(prompts, candidates, {
      lengthNormalize: this.lengthNormalize, lora: this.lora ?? undefined, temperature: this.temperature,
    });
  }

  /**
   * log μ, π and V (MATH §5) over a state's admissible actions given Q̂: the scoring, the
   * normalisation and the improvement in one native call (LlmModel.score with Q̂ and α).
   */
  async improve(state: string, actions: string[], q: Float32Array, alpha: number): Promise<PriorImprovement> {
    if (actions.length === 0) throw new RangeError('improve: a state needs at least one admissible action');
    const [prompts, candidates] = this.tokenize([{ state, actions }]);
    const r = await this.model.scoreImprove(prompts, candidates, [q], alpha, {
      lengthNormalize: this.lengthNormalize, lora: this.lora ?? undefined, temperature: this.temperature,
    });
    return { logPrior: r.logPrior[0], policy: r.policy[0], value: r.value[0] };
  }
}
