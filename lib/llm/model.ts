/**
 * The transformer engine from TypeScript (issue: transformer engine; the C++ reference in
 * native/core/llm): create or load an HF-layout Llama/Qwen2/Qwen3 model, score the K admissible
 * actions of B prompts (log p(action tokens | prompt), prompt K/V shared), token log-probs, and
 * mean-pooled embeddings. Token ids in, typed arrays out; the tokenizer is a separate step.
 */
import { loadNative, type NativeLlmModel } from '../native';

/** The fields of an HF config.json the engine reads (others are kept when saving). */
export interface LlmConfig {
  model_type: 'qwen2' | 'llama' | 'qwen3';
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  rms_norm_eps?: number;
  rope_theta?: number;
  tie_word_embeddings?: boolean;
  attention_bias?: boolean;
  max_position_embeddings?: number;
  [k: string]: unknown;
}

function tokenArray(name: string, seqs: unknown): { tokens: Int32Array; offsets: Int32Array } {
  if (!Array.isArray(seqs)) throw new TypeError(`${name} must be an array of token-id arrays`);
  let total = 0;
  seqs.forEach((s, i) => {
    if (!(Array.isArray(s) || s instanceof Int32Array)) throw new TypeError(`${name}[${i}] must be an array of integer token ids`);
    total += s.length;
  });
  const tokens = new Int32Array(total);
  const offsets = new Int32Array(seqs.length + 1);
  let k = 0;
  seqs.forEach((s: ArrayLike<number>, i) => {
    for (let j = 0; j < s.length; j++) {
      const t = s[j];
      if (!Number.isInteger(t) || t < 0 || t > 2147483647) throw new RangeError(`${name}[${i}][${j}] must be a non-negative integer token id, got ${t}`);
      tokens[k++] = t;
    }
    offsets[i + 1] = k;
  });
  return { tokens, offsets };
}

export class LlmModel {
  private constructor(private readonly native: NativeLlmModel) {}

  /** A random-init model (normal(0, initStd) weights, unit norms) for tests and tiny priors. */
  static createRandom(config: LlmConfig, opts: { seed?: number; initStd?: number } = {}): LlmModel {
    if (config === null || typeof config !== 'object') throw new TypeError('config must be an HF config object');
    return new LlmModel(loadNative().llmCreateRandom(JSON.stringify(config), opts.seed ?? 1, opts.initStd ?? 0.02));
  }

  /** Loads an HF model directory (config.json + model.safetensors or sharded index). */
  static async load(dir: string): Promise<LlmModel> {
    if (typeof dir !== 'string') throw new TypeError('dir must be a string');
    return new LlmModel(await loadNative().llmLoad(dir));
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

  /**
   * log p(candidate | prompt) summed over each candidate's tokens (or averaged with
   * lengthNormalize), for every candidate of every prompt. Returns one Float32Array per prompt.
   */
  async score(prompts: number[][], candidates: number[][][], opts: { lengthNormalize?: boolean } = {}): Promise<Float32Array[]> {
    if (!Array.isArray(candidates) || candidates.length !== prompts.length) {
      throw new RangeError(`candidates must hold one array of candidates per prompt (${Array.isArray(prompts) ? prompts.length : '?'})`);
    }
    prompts.forEach((p, i) => {
      if (!Array.isArray(p) || p.length === 0) throw new RangeError(`prompts[${i}] must be a non-empty array of token ids`);
    });
    const p = tokenArray('prompts', prompts);
    const flat = candidates.flat();
    const c = tokenArray('candidates', flat);
    const groups = new Int32Array(prompts.length + 1);
    candidates.forEach((cs, i) => (groups[i + 1] = groups[i] + cs.length));
    const scores = await this.native.score(p.tokens, p.offsets, c.tokens, c.offsets, groups, opts.lengthNormalize ?? false);
    return candidates.map((_, i) => scores.slice(groups[i], groups[i + 1]));
  }

  /** log p(token_t | tokens_<t) per token of each sequence (the first token of a sequence: 0). */
  async tokenLogprobs(seqs: number[][]): Promise<Float32Array[]> {
    const b = tokenArray('seqs', seqs);
    const out = await this.native.tokenLogprobs(b.tokens, b.offsets);
    return seqs.map((_, i) => out.slice(b.offsets[i], b.offsets[i + 1]));
  }

  /** Mean-pooled final hidden states (after the final norm): an n × hidden_size encoder output. */
  async embedMean(seqs: number[][]): Promise<Float32Array> {
    const b = tokenArray('seqs', seqs);
    return this.native.embedMean(b.tokens, b.offsets);
  }
}
