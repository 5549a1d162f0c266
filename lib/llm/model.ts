/**
 * The transformer engine from TypeScript (issue: transformer engine; the C++ reference in
 * native/core/llm): create or load an HF-layout Llama/Qwen2/Qwen3 model, score the K admissible
 * actions of B prompts (log p(action tokens | prompt), prompt K/V shared), token log-probs, and
 * mean-pooled embeddings. Token ids in, typed arrays out; the tokenizer is a separate step.
 */
import { loadNative, type NativeLlmModel, type NativeLoraAdapter } from '../native';
import { tokenArray } from './batch';
import type { LlmConfig } from './config';

export { makeLlmConfig, type LlmConfig, type LlmShape } from './config';

/**
 * Where the engine runs (docs/cuda.md). 'cpu' (the default): the float32 reference engine, the
 * same results on every machine. 'cuda': a device copy of the weights on the GPU; an Error names
 * why when no device is usable (no driver, no device, CUDA not compiled in, the LLM self-test
 * failed) or when the weights do not fit its free memory. 'auto': CUDA when usable, else the CPU,
 * with the reason in `model.device.reason`.
 */
export type LlmDeviceName = 'cpu' | 'cuda' | 'auto';
export const LLM_DEVICES: readonly LlmDeviceName[] = ['cpu', 'cuda', 'auto'];

export interface LlmDeviceOptions {
  device?: LlmDeviceName;
  /**
   * The device copy's precision: 'bf16' (default; bf16 weights and matrix-product inputs, float32
   * accumulation, float32 LoRA masters and optimizer state) or 'fp32' (float32 weights, 3xTF32
   * products). Not used on the CPU.
   */
  precision?: 'bf16' | 'fp32';
}

/** Where a model runs and why. */
export interface LlmDeviceInfo {
  device: 'cpu' | 'cuda';
  /** The device copy's precision; null on the CPU. */
  precision: 'bf16' | 'fp32' | null;
  /** e.g. "cpu: requested", "auto: CUDA not used: no CUDA device", "cuda: NVIDIA H100 ... passed the LLM self-test ...". */
  reason: string;
  description: string;
}

function deviceArgs(opts: unknown): [string | undefined, string | undefined] {
  if (opts === undefined || opts === null) return [undefined, undefined];
  if (typeof opts !== 'object') throw new TypeError('opts must be an object');
  const { device, precision } = opts as LlmDeviceOptions;
  if (device !== undefined && !LLM_DEVICES.includes(device)) {
    throw new TypeError(`opts.device must be 'cpu', 'cuda' or 'auto', got ${JSON.stringify(device)}`);
  }
  if (precision !== undefined && precision !== 'bf16' && precision !== 'fp32') {
    throw new TypeError(`opts.precision must be 'bf16' or 'fp32', got ${JSON.stringify(precision)}`);
  }
  return [device, precision];
}

/**
 * A LoRA adapter as the inference calls take it: lib/llm/lora.ts's LoraAdapter (declared here by
 * its shape, so that this file does not import lora.ts, which imports it).
 */
export interface LlmAdapterHandle {
  /** @internal */
  readonly native: NativeLoraAdapter;
}

/** Options of the inference calls: an optional LoRA adapter (a LoraAdapter) made for this model's config. */
export interface LlmInferenceOptions {
  lora?: LlmAdapterHandle | null;
}

function loraArg(opts: unknown): NativeLoraAdapter | undefined {
  if (opts === undefined || opts === null) return undefined;
  if (typeof opts !== 'object') throw new TypeError('opts must be an object');
  const l = (opts as LlmInferenceOptions).lora;
  if (l === undefined || l === null) return undefined;
  const n = (l as { native?: NativeLoraAdapter }).native;
  if (!n) throw new TypeError('opts.lora must be a LoraAdapter');
  return n;
}

export class LlmModel {
  /** `native`: the addon object (@internal, read by lib/llm/lora.ts). */
  private constructor(/** @internal */ readonly native: NativeLlmModel) {}

  /** A random-init model (normal(0, initStd) weights, unit norms) for tests and tiny priors. */
  static createRandom(config: LlmConfig, opts: { seed?: number; initStd?: number } & LlmDeviceOptions = {}): LlmModel {
    if (config === null || typeof config !== 'object') throw new TypeError('config must be an HF config object');
    const [device, precision] = deviceArgs(opts);
    return new LlmModel(loadNative().llmCreateRandom(JSON.stringify(config), opts.seed ?? 1, opts.initStd ?? 0.02, device, precision));
  }

  /**
   * Loads an HF model directory (config.json + model.safetensors or sharded index), on the CPU
   * unless `opts.device` says otherwise (see LlmDeviceName).
   */
  static async load(dir: string, opts: LlmDeviceOptions = {}): Promise<LlmModel> {
    if (typeof dir !== 'string') throw new TypeError('dir must be a string');
    const [device, precision] = deviceArgs(opts);
    return new LlmModel(await loadNative().llmLoad(dir, device, precision));
  }

  /** Where this model runs (fixed at load/creation; clones and merged copies run there too). */
  get device(): LlmDeviceInfo {
    return this.native.device();
  }

  /** Writes config.json + model.safetensors (float32, or bf16). */
  save(dir: string, opts: { bf16?: boolean } = {}): void {
    this.native.save(dir, opts.bf16 ?? false);
  }

  get config(): LlmConfig {
    return JSON.parse(this.native.config());
  }

  get numParams(): number {
    return this.native.numParams();
  }

  /** The flat token arrays of a scoring call, and each prompt's candidate range (candGroups). */
  private scoringBatch(prompts: number[][], candidates: (readonly number[])[][]) {
    if (!Array.isArray(candidates) || candidates.length !== prompts.length) {
      throw new RangeError(`candidates must hold one array of candidates per prompt (${Array.isArray(prompts) ? prompts.length : '?'})`);
    }
    prompts.forEach((p, i) => {
      if (!Array.isArray(p) || p.length === 0) throw new RangeError(`prompts[${i}] must be a non-empty array of token ids`);
    });
    const p = tokenArray('prompts', prompts);
    const c = tokenArray('candidates', candidates.flat());
    const groups = new Int32Array(prompts.length + 1);
    candidates.forEach((cs, i) => (groups[i + 1] = groups[i] + cs.length));
    return { p, c, groups };
  }

  /**
   * log p(candidate | prompt) summed over each candidate's tokens (or averaged with
   * lengthNormalize), for every candidate of every prompt. Returns one Float32Array per prompt:
   * views of one result buffer (no copies), each the caller's. With `temperature` τ the result is
   * instead the prior log μ over each prompt's candidates, score/τ − logsumexp(score/τ) (MATH §5,
   * §10), computed in the scoring's native job (memq::prior_improve).
   */
  async score(
    prompts: number[][], candidates: (readonly number[])[][],
    opts: { lengthNormalize?: boolean; temperature?: number } & LlmInferenceOptions = {},
  ): Promise<Float32Array[]> {
    const lora = loraArg(opts);
    const { p, c, groups } = this.scoringBatch(prompts, candidates);
    const prior = opts.temperature === undefined ? undefined : { temperature: opts.temperature };
    const scores = await this.native.score(p.tokens, p.offsets, c.tokens, c.offsets, groups, opts.lengthNormalize ?? false, lora, prior);
    return candidates.map((_, i) => scores.subarray(groups[i], groups[i + 1]));
  }

  /**
   * The prior log μ over each prompt's candidates (as `score` with a temperature) and, given Q̂
   * per candidate (one Float32Array per prompt), MATH §5's π and V = α log Σ μ exp(Q̂/α): the
   * scoring, the normalisation and the improvement in one native call (the agent's step).
   */
  async scoreImprove(
    prompts: number[][], candidates: (readonly number[])[][], q: readonly Float32Array[], alpha: number,
    opts: { lengthNormalize?: boolean; temperature?: number } & LlmInferenceOptions = {},
  ): Promise<{ logPrior: Float32Array[]; policy: Float32Array[]; value: Float32Array }> {
    const lora = loraArg(opts);
    const { p, c, groups } = this.scoringBatch(prompts, candidates);
    if (!Array.isArray(q)) throw new TypeError(`q must be an array of Float32Arrays, one per prompt (${prompts.length})`);
    if (q.length !== prompts.length) throw new RangeError(`q must hold one Float32Array per prompt (${prompts.length}), got ${q.length}`);
    const qFlat = new Float32Array(groups[prompts.length]);
    q.forEach((row, i) => {
      if (!(row instanceof Float32Array)) throw new TypeError(`q[${i}] must be a Float32Array of ${candidates[i].length} values (one per candidate)`);
      if (row.length !== candidates[i].length) throw new RangeError(`q[${i}] must be a Float32Array of ${candidates[i].length} values (one per candidate), got ${row.length}`);
      qFlat.set(row, groups[i]);
    });
    if (typeof alpha !== 'number') throw new TypeError(`alpha must be a number, got ${typeof alpha}`);
    const prior = { temperature: opts.temperature ?? 1, q: qFlat, alpha };
    const r = await this.native.score(p.tokens, p.offsets, c.tokens, c.offsets, groups, opts.lengthNormalize ?? false, lora, prior);
    const view = (a: Float32Array) => candidates.map((_, i) => a.subarray(groups[i], groups[i + 1]));
    return { logPrior: view(r.logPrior), policy: view(r.policy), value: r.value };
  }

  /** log p(token_t | tokens_<t) per token of each sequence (the first token of a sequence: 0). */
  async tokenLogprobs(seqs: number[][], opts: LlmInferenceOptions = {}): Promise<Float32Array[]> {
    const lora = loraArg(opts);
    const b = tokenArray('seqs', seqs);
    const out = await this.native.tokenLogprobs(b.tokens, b.offsets, lora);
    return seqs.map((_, i) => out.slice(b.offsets[i], b.offsets[i + 1]));
  }

  /** Mean-pooled final hidden states (after the final norm): an n × hidden_size encoder output. */
  async embedMean(seqs: number[][], opts: LlmInferenceOptions = {}): Promise<Float32Array> {
    const lora = loraArg(opts);
    const b = tokenArray('seqs', seqs);
    return this.native.embedMean(b.tokens, b.offsets, lora);
  }

  /** A deep copy of the weights (as they are when the copy runs, on a worker thread). */
  async clone(): Promise<LlmModel> {
    return new LlmModel(await this.native.clone());
  }

  /**
   * A new model with the adapter folded into its weights (W += scale · B A); this model is
   * unchanged. Its outputs equal this model's with `{ lora: adapter }` up to float rounding.
   */
  async mergeLora(adapter: LlmAdapterHandle): Promise<LlmModel> {
    const n = (adapter as { native?: NativeLoraAdapter } | null)?.native;
    if (!n) throw new TypeError('adapter must be a LoraAdapter');
    return new LlmModel(await this.native.mergeLora(n));
  }
}
