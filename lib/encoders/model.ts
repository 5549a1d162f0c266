/**
 * Keys from the policy model's own hidden states (the papers' open question 3): enc(text) is
 * the model's mean-pooled final hidden state of the text's tokens (LlmModel.embedMean),
 * L2-normalised so that the kernels' bandwidths mean the same as for the hashing encoder.
 *
 * With lora 'base' the encoder is frozen (the base weights; results are cached per text). With
 * lora 'current' it reads through the prior's current LoRA adapter, so keys follow Mem-EM's
 * refinement of the prior; such keys are not cached, and keys already stored in memory were
 * computed with the adapter as it was when they were written.
 */
import type { LlmModel } from '../llm/model';
import type { LoraAdapter } from '../llm/lora';
import type { TextTokenizer } from '../llm/tokenizer';
import { pairText, type Encoder } from './types';

export interface ModelEncoderOptions {
  model: LlmModel;
  tokenizer: TextTokenizer;
  /** 'base' (frozen, default) or 'current' (through the adapter `adapter()` returns). */
  lora?: 'base' | 'current';
  /** The current adapter (e.g. () => modelPrior.lora), for lora 'current'. */
  adapter?: () => LoraAdapter | null;
  /** Longest token sequence encoded; longer texts keep their last tokens (default 512). */
  maxTokens?: number;
  /** Texts per native call (default 64). */
  batch?: number;
  maxCacheEntries?: number;
}

export class ModelEncoder implements Encoder {
  readonly dim: number;
  readonly name: string;
  private readonly cache = new Map<string, Float32Array>();

  constructor(private readonly opts: ModelEncoderOptions) {
    const cfg = opts.model.config;
    if (!Number.isInteger(cfg.hidden_size) || cfg.hidden_size < 1) throw new RangeError('ModelEncoder: the model config has no valid hidden_size');
    if (opts.lora !== undefined && opts.lora !== 'base' && opts.lora !== 'current') {
      throw new TypeError(`ModelEncoder: lora must be 'base' or 'current', got ${JSON.stringify(opts.lora)}`);
    }
    if (opts.lora === 'current' && typeof opts.adapter !== 'function') throw new TypeError("ModelEncoder: lora 'current' needs adapter: () => LoraAdapter | null");
    this.dim = cfg.hidden_size;
    this.name = `model-${cfg.hidden_size}-${opts.lora ?? 'base'}`;
  }

  private tokens(text: string): number[] {
    const ids = this.opts.tokenizer.encode(text);
    const max = this.opts.maxTokens ?? 512;
    const t = ids.length > max ? ids.slice(ids.length - max) : ids;
    // An empty text still gets a key: one token (id 0) stands for it.
    return t.length ? t : [0];
  }

  async encode(texts: string[]): Promise<Float32Array> {
    const d = this.dim;
    const out = new Float32Array(texts.length * d);
    const current = this.opts.lora === 'current';
    const lora = current ? (this.opts.adapter!() ?? null) : null;
    const missing: number[] = [];
    texts.forEach((t, i) => {
      const hit = current ? undefined : this.cache.get(t);
      if (hit) out.set(hit, i * d);
      else missing.push(i);
    });
    const batch = this.opts.batch ?? 64;
    for (let k = 0; k < missing.length; k += batch) {
      const idx = missing.slice(k, k + batch);
      const emb = await this.opts.model.embedMean(idx.map((i) => this.tokens(texts[i])), { lora });
      idx.forEach((i, j) => {
        const row = emb.subarray(j * d, (j + 1) * d);
        let n2 = 0;
        for (let c = 0; c < d; c++) n2 += row[c] * row[c];
        const inv = n2 > 0 ? 1 / Math.sqrt(n2) : 0;
        const v = new Float32Array(d);
        for (let c = 0; c < d; c++) v[c] = row[c] * inv;
        out.set(v, i * d);
        if (!current) {
          if (this.cache.size >= (this.opts.maxCacheEntries ?? 50_000)) this.cache.clear();
          this.cache.set(texts[i], v);
        }
      });
    }
    return out;
  }

  async encodePairs(state: string, actions: string[]): Promise<Float32Array> {
    return this.encode(actions.map((a) => pairText(state, a)));
  }
}
