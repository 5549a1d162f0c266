/**
 * The llama.cpp prior (`memq run --prior gguf:FILE`): μ(a | s) from a GGUF model scored by
 * llama.cpp through the optional package node-llama-cpp, with ModelPrior's conventions (the same
 * prompt, end token, length normalisation, temperature, normalisation over the admissible set;
 * TokenizedPrior), the prompt evaluated once and shared by the K candidates (each candidate is
 * appended to the prompt's KV cache, read, and erased).
 *
 * Tokens: a GGUF written by `memq model export` carries the model directory's tokenizer.json
 * verbatim (memq.tokenizer.json), so the ids are exactly the memq engine's; any other GGUF is
 * tokenized by llama.cpp's own tokenizer (its tokenizer.ggml.* vocabulary).
 *
 * Mem-EM needs the memq engine (LoRA gradients through the network: llama.cpp has no backward);
 * for Mem-EM import the GGUF (`memq model import`) and use --prior model:DIR, then export the
 * trained adapter merged into the weights (`memq model export DIR --lora ADAPTER`).
 */
import { ggufString, readGguf } from './gguf';
import { LlamaCppModel, type LlamaCppModelOptions } from './llamaCpp';
import { TokenizedPrior, type ModelPriorOptions } from './modelPrior';
import { tokenizerFromJson, type TextTokenizer } from './tokenizer';

/** llama.cpp's own tokenizer as a TextTokenizer (GGUF files without memq's tokenizer copy). */
class LlamaCppTokenizer implements TextTokenizer {
  readonly eosToken?: string;
  constructor(private readonly model: any, readonly vocabSize: number) {
    const eos = model.tokens?.eos;
    if (typeof eos === 'number') this.eosToken = model.detokenize([eos], true);
  }
  encode(text: string): number[] {
    if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${typeof text}`);
    return Array.from(this.model.tokenize(text, false) as number[]);
  }
  decode(ids: number[]): string {
    return this.model.detokenize(ids, true);
  }
  tokenToId(token: string): number | undefined {
    const ids = this.model.tokenize(token, true) as number[];
    return ids.length === 1 ? ids[0] : undefined;
  }
}

export interface LlamaCppPriorOptions extends Omit<ModelPriorOptions, 'lora' | 'endToken'>, LlamaCppModelOptions {
  /** Append the tokenizer's end-of-text token to each action (default true, as --prior model:DIR). */
  endToken?: boolean;
}

export class LlamaCppPrior extends TokenizedPrior {
  readonly name = 'gguf';
  constructor(readonly llama: LlamaCppModel, tokenizer: TextTokenizer, opts: ModelPriorOptions = {}) {
    super(tokenizer, opts);
  }

  /** Loads a GGUF file with llama.cpp and its tokenizer (memq's copy, else llama.cpp's). */
  static async load(file: string, opts: LlamaCppPriorOptions = {}): Promise<LlamaCppPrior> {
    const g = readGguf(file);
    const llama = await LlamaCppModel.load(file, opts);
    const tokJson = ggufString(g, 'memq.tokenizer.json');
    let tokenizer: TextTokenizer;
    if (tokJson !== undefined) {
      tokenizer = tokenizerFromJson(tokJson, ggufString(g, 'memq.tokenizer_config.json'), `${file} (memq.tokenizer.json)`);
    } else if (ggufString(g, 'memq.tokenizer') === 'placeholder') {
      await llama.dispose();
      throw new Error(`${file} has no tokenizer (exported from a model directory without tokenizer.json); a prior needs one`);
    } else {
      tokenizer = new LlamaCppTokenizer(llama.model, llama.vocabSize);
    }
    const endToken = opts.endToken !== false && tokenizer.eosToken !== undefined ? tokenizer.tokenToId(tokenizer.eosToken) : undefined;
    return new LlamaCppPrior(llama, tokenizer, {
      lengthNormalize: opts.lengthNormalize ?? true, temperature: opts.temperature, prompt: opts.prompt, endToken,
    });
  }

  protected async scoreMany(prompts: number[][], candidates: (readonly number[])[][]): Promise<Float64Array[]> {
    const out: Float64Array[] = [];
    for (let i = 0; i < prompts.length; i++) out.push(await this.llama.score(prompts[i], candidates[i], this.lengthNormalize));
    return out;
  }

  dispose(): Promise<void> {
    return this.llama.dispose();
  }
}
